//! The standard `process_*` families, read from /proc/self at scrape time (Linux only, as
//! percore is).

use std::fs;

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Process {
    pub(crate) resident_bytes: u64,
    pub(crate) virtual_bytes: u64,
    pub(crate) cpu_seconds: f64,
    pub(crate) open_fds: u64,
    pub(crate) max_fds: u64,
    pub(crate) start_time_seconds: f64,
}

impl Process {
    pub(crate) fn read() -> Process {
        // SAFETY: sysconf has no preconditions.
        let (tick, page) =
            unsafe { (libc::sysconf(libc::_SC_CLK_TCK) as f64, libc::sysconf(libc::_SC_PAGESIZE) as u64) };
        let mut p = Process::default();
        if let Ok(stat) = fs::read_to_string("/proc/self/stat") {
            // Fields after the command name, which may itself hold spaces and parentheses.
            let f: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            p.cpu_seconds = (num(11) + num(12)) as f64 / tick;
            p.virtual_bytes = num(20);
            p.resident_bytes = num(21) * page;
            let boot = fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok()));
            p.start_time_seconds = boot.unwrap_or(0) as f64 + num(19) as f64 / tick;
        }
        p.open_fds = fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            p.max_fds = lim.rlim_cur;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let p = super::Process::read();
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        assert!(p.open_fds >= 3 && p.max_fds >= p.open_fds, "{p:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds > now - 3600.0 && p.start_time_seconds <= now + 1.0, "{p:?}");
    }
}
