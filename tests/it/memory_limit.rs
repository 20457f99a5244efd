//! Under the manifest's memory limit, in a real cgroup: many connections sending bodies of
//! MAX_BODY_BYTES at once ask for more memory than the pod has. The server must keep
//! serving — shedding what does not fit with 503 — and never be killed for memory.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{drivers, Client, Server};

/// The memory limit of the Deployment in k8s/base, in bytes.
fn manifest_memory_limit() -> u64 {
    let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/base/deployment.yaml")).unwrap();
    let after_limits = yaml.split("limits:").nth(1).expect("the Deployment has limits");
    let value = after_limits.lines().find_map(|l| l.trim().strip_prefix("memory:")).expect("a memory limit").trim();
    let (n, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len()));
    let n: u64 = n.parse().unwrap();
    n * match unit {
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "" => 1,
        other => panic!("unit {other}"),
    }
}

/// A memory cgroup of our own, under the one this test runs in (v1 or v2).
struct Cgroup {
    dir: PathBuf,
    version: u8,
}

impl Cgroup {
    fn create(limit: u64) -> Result<Cgroup, String> {
        let membership = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let name = format!("percore-memtest-{}", std::process::id());
        for line in membership.lines() {
            let mut f = line.splitn(3, ':');
            let (_, controllers, path) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let (base, version) = if controllers.split(',').any(|c| c == "memory") {
                (PathBuf::from("/sys/fs/cgroup/memory"), 1)
            } else if controllers.is_empty()
                && std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|c| c.contains("memory"))
            {
                (PathBuf::from("/sys/fs/cgroup"), 2)
            } else {
                continue;
            };
            let dir = base.join(path.trim_start_matches('/')).join(&name);
            std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            let cg = Cgroup { dir, version };
            let file = if version == 1 { "memory.limit_in_bytes" } else { "memory.max" };
            std::fs::write(cg.dir.join(file), limit.to_string()).map_err(|e| format!("{file}: {e}"))?;
            if version == 2 {
                let _ = std::fs::write(cg.dir.join("memory.swap.max"), "0");
            }
            return Ok(cg);
        }
        Err("no memory cgroup controller".to_owned())
    }

    /// Times the kernel's OOM killer ran in this cgroup.
    fn oom_kills(&self) -> u64 {
        let file = if self.version == 1 { "memory.oom_control" } else { "memory.events" };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    fn peak(&self) -> u64 {
        let file = if self.version == 1 { "memory.max_usage_in_bytes" } else { "memory.peak" };
        std::fs::read_to_string(self.dir.join(file)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }

    /// Starts the child inside this cgroup (before exec, so all its memory is charged here).
    fn enter_on_spawn(&self, cmd: &mut std::process::Command) {
        let procs = CString::new(self.dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: only async-signal-safe calls (open, write, close, getpid) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut digits = [0u8; 20];
                let mut pid = libc::getpid() as u32;
                let mut at = digits.len();
                loop {
                    at -= 1;
                    digits[at] = b'0' + (pid % 10) as u8;
                    pid /= 10;
                    if pid == 0 {
                        break;
                    }
                }
                let n = libc::write(fd, digits[at..].as_ptr().cast(), digits.len() - at);
                libc::close(fd);
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const BODY: usize = 1 << 20;

/// A POST /api/v1/users whose 1 MiB body is valid JSON with a name far too long: 400 once
/// read whole, so the test sees which requests were served and which were shed.
fn big_request() -> (Vec<u8>, Vec<u8>) {
    let head = format!(
        "POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
    );
    let frame = r#"{"name":"","email":"a@example.com"}"#;
    let name = "n".repeat(BODY - frame.len());
    let body = format!(r#"{{"name":"{name}","email":"a@example.com"}}"#);
    assert_eq!(body.len(), BODY);
    (head.into_bytes(), body.into_bytes())
}

#[test]
fn large_bodies_on_many_connections_under_the_memory_limit_are_shed_not_killed() {
    let limit = manifest_memory_limit();
    let connections = (2 * limit as usize / BODY).min(600);
    for driver in drivers() {
        let cgroup = match Cgroup::create(limit) {
            Ok(cg) => cg,
            Err(e) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must be able to make a memory cgroup: {e}");
                eprintln!("\n*** cannot make a memory cgroup here ({e}): memory-limit test SKIPPED ***\n");
                return;
            }
        };
        // The read timeout is long: the bodies are held open on purpose while the others arrive.
        let env = [("WORKERS", "2"), ("SERVER_READ_TIMEOUT", "120s")];
        let s = Server::start_with(driver, &env, |cmd| cgroup.enter_on_spawn(cmd));
        s.wait_ready();
        assert!(
            s.logs().contains(&format!("request bodies may hold {} MiB at once (half the cgroup's", (limit / 2) >> 20)),
            "MAX_BODY_MEMORY=auto follows the cgroup limit:\n{}",
            s.logs()
        );
        let (head, body) = big_request();
        // Every connection sends its head and all of its body but the last bytes, so every
        // body the server accepted is held in memory at the same time.
        let mut clients: Vec<Client> = (0..connections)
            .map(|_| {
                let mut c = s.connect();
                c.stream.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                let _ = c.try_send(&head) && c.try_send(&body[..BODY - 16]);
                c
            })
            .collect();
        let (mut served, mut shed) = (0, 0);
        for c in &mut clients {
            let _ = c.try_send(&body[BODY - 16..]);
            let r = c.response().expect("every request is answered: served or shed, never dropped");
            match r.status {
                400 => served += 1,
                503 => {
                    assert_eq!(r.header("retry-after"), Some("1"));
                    assert!(r.json()["message"].to_string().contains("MAX_BODY_MEMORY"), "{}", r.text());
                    shed += 1;
                }
                other => panic!("unexpected {other}: {}", r.text()),
            }
        }
        drop(clients);
        assert_eq!(cgroup.oom_kills(), 0, "the OOM killer ran ({driver})");
        assert_eq!(s.get("/health").status, 200, "still serving ({driver})");
        assert!(served > 0 && shed > 0, "{served} served, {shed} shed: the budget must both admit and shed");
        eprintln!(
            "{driver}: {connections} × 1 MiB bodies under a {} MiB limit: {served} served, {shed} shed with 503, peak {} MiB, no OOM kill",
            limit >> 20,
            cgroup.peak() >> 20
        );
        drop(s);
    }
}
