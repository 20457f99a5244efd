//! How much memory this process may use, from where Kubernetes and systemd say it: the
//! cgroup memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`, the tightest from the
//! process's cgroup up to the root), else the machine's RAM. MAX_BODY_MEMORY=auto is sized
//! from it. Read through a root path so tests can point it at fixture files.

use std::fs;
use std::path::Path;

use super::cgroup::{controller_dirs, Hierarchy};

/// Where the auto budget came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Cgroup(u64),
    Ram(u64),
    Unknown,
}

/// MAX_BODY_MEMORY=auto: half the cgroup limit, else a quarter of RAM, else 256 MiB — and
/// never less than one body of `max_body` bytes.
pub(crate) fn auto_body_memory(root: &Path, max_body: usize) -> (usize, Source) {
    let (budget, source) = match (cgroup_limit(root), ram(root)) {
        (Some(limit), _) => (limit / 2, Source::Cgroup(limit)),
        (None, Some(ram)) => (ram / 4, Source::Ram(ram)),
        (None, None) => (256 << 20, Source::Unknown),
    };
    (usize::try_from(budget).unwrap_or(usize::MAX).max(max_body), source)
}

/// The tightest memory limit of this process's cgroup and its ancestors, if any is set.
pub(crate) fn cgroup_limit(root: &Path) -> Option<u64> {
    controller_dirs(root, "memory", &["memory"])
        .into_iter()
        .filter_map(|(hierarchy, dir)| {
            let file = match hierarchy {
                Hierarchy::V2 => "memory.max",
                Hierarchy::V1 => "memory.limit_in_bytes",
            };
            parse_limit(&fs::read_to_string(dir.join(file)).ok()?)
        })
        .min()
}

/// `max` or a byte count; v1 writes "no limit" as a number near 2⁶³.
fn parse_limit(s: &str) -> Option<u64> {
    let n: u64 = s.trim().parse().ok()?;
    (n < 1 << 60).then_some(n)
}

/// MemTotal from /proc/meminfo, in bytes.
fn ram(root: &Path) -> Option<u64> {
    let meminfo = fs::read_to_string(root.join("proc/meminfo")).ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cgroup::fixture;

    const MIB: u64 = 1 << 20;

    #[test]
    fn cgroup_v2_limit_halved() {
        let root = fixture(&[
            ("proc/self/cgroup", "0::/kubepods/pod1/ctr\n"),
            ("sys/fs/cgroup/kubepods/pod1/memory.max", "268435456\n"),
            ("sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n"),
            ("proc/meminfo", "MemTotal:       16384000 kB\n"),
        ]);
        assert_eq!(cgroup_limit(&root), Some(256 * MIB));
        assert_eq!(auto_body_memory(&root, 1 << 20), (128 << 20, Source::Cgroup(256 * MIB)));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn cgroup_v1_unlimited_falls_back_to_a_quarter_of_ram() {
        let root = fixture(&[
            ("proc/self/cgroup", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"),
            ("sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n"),
            ("proc/meminfo", "MemTotal:        4194304 kB\nMemFree: 1 kB\n"),
        ]);
        assert_eq!(cgroup_limit(&root), None);
        assert_eq!(auto_body_memory(&root, 1 << 20), (1 << 30, Source::Ram(4 << 30)));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn cgroup_v1_limit_and_a_floor_of_one_body() {
        let root = fixture(&[
            ("proc/self/cgroup", "4:memory:/docker/abc\n"),
            ("sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "1048576\n"),
        ]);
        assert_eq!(auto_body_memory(&root, 4 << 20), (4 << 20, Source::Cgroup(MIB)), "at least one body");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn nothing_known() {
        let root = fixture(&[("proc/self/cgroup", "0::/\n")]);
        assert_eq!(auto_body_memory(&root, 1 << 20), (256 << 20, Source::Unknown));
        fs::remove_dir_all(root).unwrap();
    }
}
