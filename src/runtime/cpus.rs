//! How many workers, on which CPUs, pinned or not.
//!
//! In a Guaranteed-QoS pod under the static CPU manager the process's affinity mask is the
//! set of exclusive cores it was granted, and the CFS quota equals their count. Elsewhere
//! (a laptop, a Burstable pod) the mask is every online CPU and the quota, if any, is the
//! real limit: running more workers than the quota allows only makes them take turns. So
//! WORKERS=auto is the mask's size capped by the quota rounded up, and PIN_WORKERS=auto pins
//! only when the mask is a strict subset of the online CPUs, i.e. when someone chose the CPUs.
//!
//! The file reading goes through a root directory so tests can point it at fixtures; the
//! arithmetic ([`plan`], `quota_cpus`) is pure.

use std::fs;
use std::io;
use std::path::Path;

use super::cgroup::{controller_dirs, Hierarchy};
use crate::config::{Toggle, Workers};

/// The decision: which CPU each worker runs on, and whether it is pinned there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CpuPlan {
    /// CPU for worker i (its pin target when pinned).
    pub(crate) cpus: Vec<usize>,
    pub(crate) pinned: bool,
    /// The cgroup quota in CPUs, when one applies.
    pub(crate) quota: Option<f64>,
}

impl CpuPlan {
    pub(crate) fn workers(&self) -> usize {
        self.cpus.len()
    }

    /// `2 workers on CPUs 0,1, pinned` — the start-up log's wording.
    pub(crate) fn describe(&self) -> String {
        let list: Vec<String> = self.cpus.iter().map(|c| c.to_string()).collect();
        let n = self.cpus.len();
        format!(
            "{n} worker{} on CPU{} {}, {}",
            if n == 1 { "" } else { "s" },
            if n == 1 { "" } else { "s" },
            list.join(","),
            if self.pinned { "pinned" } else { "not pinned" }
        )
    }
}

/// What the machine says, gathered once before any thread is pinned.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    /// CPUs of the process's affinity mask, ascending.
    pub(crate) mask: Vec<usize>,
    pub(crate) online: usize,
    /// CPU quota of the cgroup, in CPUs (quota / period), if limited.
    pub(crate) quota: Option<f64>,
}

impl Machine {
    /// Reads the affinity mask, the online CPUs and the cgroup quota of this process.
    pub(crate) fn probe() -> io::Result<Machine> {
        Machine::probe_at(Path::new("/"), affinity_mask()?)
    }

    /// Reads online CPUs and the quota under `root` (normally `/`).
    pub(crate) fn probe_at(root: &Path, mask: Vec<usize>) -> io::Result<Machine> {
        let online = fs::read_to_string(root.join("sys/devices/system/cpu/online"))
            .ok()
            .and_then(|s| parse_cpu_list(s.trim()))
            .map(|l| l.len())
            .unwrap_or_else(|| mask.len());
        Ok(Machine { quota: cgroup_quota(root), online, mask })
    }
}

/// The CPUs this process may run on (sched_getaffinity).
pub fn affinity_mask() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most sizeof(set) bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

/// Decides the workers' CPUs from the settings and the machine. Pure.
pub(crate) fn plan(workers: Workers, pin: Toggle, machine: &Machine) -> CpuPlan {
    let mask = if machine.mask.is_empty() { vec![0] } else { machine.mask.clone() };
    let count = match workers {
        Workers::Count(n) => n,
        Workers::Auto => match machine.quota {
            Some(q) => mask.len().min(q.ceil().max(1.0) as usize),
            None => mask.len(),
        },
    };
    let pinned = match pin {
        Toggle::On => true,
        Toggle::Off => false,
        Toggle::Auto => mask.len() < machine.online,
    };
    CpuPlan { cpus: (0..count).map(|i| mask[i % mask.len()]).collect(), pinned, quota: machine.quota }
}

/// Parses `0-3,6,8-9` (the kernel's CPU list format).
pub(crate) fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The quota in CPUs of the cgroup this process is in: the tightest limit on the way from
/// its own cgroup up to the root (a parent's limit binds its children too).
pub(crate) fn cgroup_quota(root: &Path) -> Option<f64> {
    // cgroup v1 mounts the cpu controller as cpu,cpuacct or cpu.
    controller_dirs(root, "cpu", &["cpu,cpuacct", "cpu", "cpuacct,cpu"])
        .into_iter()
        .filter_map(|(hierarchy, dir)| {
            let read = |f: &str| fs::read_to_string(dir.join(f)).ok();
            match hierarchy {
                Hierarchy::V2 => quota_v2(&read("cpu.max")?),
                Hierarchy::V1 => quota_v1(&read("cpu.cfs_quota_us")?, &read("cpu.cfs_period_us")?),
            }
        })
        .reduce(f64::min)
}

/// Which cgroup hierarchy a directory belongs to.
/// cgroup v2 `cpu.max`: `max 100000` (no limit) or `QUOTA PERIOD`.
pub(crate) fn quota_v2(cpu_max: &str) -> Option<f64> {
    let mut f = cpu_max.split_whitespace();
    let (quota, period) = (f.next()?, f.next().unwrap_or("100000"));
    quota_cpus(quota.parse().ok()?, period.parse().ok()?)
}

/// cgroup v1: `cpu.cfs_quota_us` (-1 = no limit) and `cpu.cfs_period_us`.
pub(crate) fn quota_v1(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.trim().parse().ok()?;
    quota_cpus(u64::try_from(quota).ok()?, period.trim().parse().ok()?)
}

fn quota_cpus(quota: u64, period: u64) -> Option<f64> {
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cgroup::fixture;

    fn machine(mask: &[usize], online: usize, quota: Option<f64>) -> Machine {
        Machine { mask: mask.to_vec(), online, quota }
    }

    #[test]
    fn auto_workers_follow_the_mask_capped_by_the_quota_rounded_up() {
        let p = plan(Workers::Auto, Toggle::Auto, &machine(&[0, 1, 2, 3, 4, 5, 6, 7], 8, None));
        assert_eq!((p.workers(), p.pinned), (8, false));
        let p = plan(Workers::Auto, Toggle::Auto, &machine(&[0, 1, 2, 3, 4, 5, 6, 7], 8, Some(2.5)));
        assert_eq!(p.cpus, vec![0, 1, 2]);
        let p = plan(Workers::Auto, Toggle::Auto, &machine(&[0, 1, 2, 3], 4, Some(0.1)));
        assert_eq!(p.cpus, vec![0], "a tiny quota still gets one worker");
        let p = plan(Workers::Auto, Toggle::Auto, &machine(&[2, 3, 6, 7], 8, Some(4.0)));
        assert_eq!((p.cpus.clone(), p.pinned), (vec![2, 3, 6, 7], true));
        assert_eq!(p.describe(), "4 workers on CPUs 2,3,6,7, pinned");
    }

    #[test]
    fn explicit_settings_win() {
        let m = machine(&[0, 1], 2, Some(1.0));
        let p = plan(Workers::Count(3), Toggle::On, &m);
        assert_eq!((p.cpus, p.pinned), (vec![0, 1, 0], true));
        let p = plan(Workers::Auto, Toggle::Off, &machine(&[4, 5], 8, None));
        assert_eq!((p.cpus.clone(), p.pinned), (vec![4, 5], false));
        assert_eq!(p.describe(), "2 workers on CPUs 4,5, not pinned");
        assert_eq!(plan(Workers::Count(1), Toggle::Auto, &m).describe(), "1 worker on CPU 0, not pinned");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(vec![0, 1, 2, 3, 6, 8, 9]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }

    #[test]
    fn quota_arithmetic() {
        assert_eq!(quota_v2("max 100000\n"), None);
        assert_eq!(quota_v2("200000 100000\n"), Some(2.0));
        assert_eq!(quota_v2("150000 100000"), Some(1.5));
        assert_eq!(quota_v2("50000 100000"), Some(0.5));
        assert_eq!(quota_v1("-1\n", "100000\n"), None);
        assert_eq!(quota_v1("300000\n", "100000\n"), Some(3.0));
        assert_eq!(quota_v2("garbage"), None);
    }

    #[test]
    fn cgroup_v2_in_a_namespace() {
        let root = fixture(&[
            ("proc/self/cgroup", "0::/\n"),
            ("sys/fs/cgroup/cpu.max", "200000 100000\n"),
            ("sys/devices/system/cpu/online", "0-7\n"),
        ]);
        let m = Machine::probe_at(&root, (0..8).collect()).unwrap();
        assert_eq!((m.online, m.quota), (8, Some(2.0)));
        assert_eq!(plan(Workers::Auto, Toggle::Auto, &m).cpus, vec![0, 1]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn cgroup_v2_nested_takes_the_tightest_ancestor() {
        let root = fixture(&[
            ("proc/self/cgroup", "0::/kubepods/pod1/ctr\n"),
            ("sys/fs/cgroup/kubepods/cpu.max", "max 100000\n"),
            ("sys/fs/cgroup/kubepods/pod1/cpu.max", "150000 100000\n"),
            ("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "400000 100000\n"),
        ]);
        assert_eq!(cgroup_quota(&root), Some(1.5));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn cgroup_v1() {
        let root = fixture(&[
            ("proc/self/cgroup", "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"),
            ("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n"),
            ("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(cgroup_quota(&root), Some(3.0));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn no_cgroup_files_means_no_quota() {
        let root = fixture(&[("proc/self/cgroup", "0::/user.slice\n")]);
        assert_eq!(cgroup_quota(&root), None);
        let m = Machine::probe_at(&root, vec![0, 1]).unwrap();
        assert_eq!(m.online, 2, "without the online file the mask is all we know");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_real_machine_is_readable() {
        let m = Machine::probe().unwrap();
        assert!(!m.mask.is_empty());
        assert!(m.online >= m.mask.len());
    }
}
