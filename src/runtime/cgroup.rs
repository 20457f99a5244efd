//! The cgroup directories whose limits bind this process, in the v2 tree and in a v1
//! controller's tree: the one walk that both the CPU quota ([`super::cpus`]) and the memory
//! limit ([`super::memory`]) read their files from. Read through a root path, so tests can
//! point it at fixture files.

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hierarchy {
    /// The unified tree: `0::/kubepods/pod…/container`.
    V2,
    /// A v1 controller's own tree: `4:memory:/docker/…`.
    V1,
}

/// The cgroup directories whose limits bind this process for `controller`: its own cgroup
/// and every ancestor, in the v2 tree and in the v1 tree of that controller (mounted under
/// one of `v1_mounts`). Limits of a kind are combined by taking the tightest.
pub(crate) fn controller_dirs(root: &Path, controller: &str, v1_mounts: &[&str]) -> Vec<(Hierarchy, PathBuf)> {
    let Ok(membership) = fs::read_to_string(root.join("proc/self/cgroup")) else { return Vec::new() };
    let mut dirs = Vec::new();
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
        if controllers.is_empty() {
            dirs.extend(ancestors(&root.join("sys/fs/cgroup"), path).into_iter().map(|d| (Hierarchy::V2, d)));
        } else if controllers.split(',').any(|c| c == controller) {
            for mount in v1_mounts {
                let base = root.join("sys/fs/cgroup").join(mount);
                dirs.extend(ancestors(&base, path).into_iter().map(|d| (Hierarchy::V1, d)));
            }
        }
    }
    dirs
}

/// `base/a/b/c`, `base/a/b`, `base/a`, `base` — existing directories only. Inside a cgroup
/// namespace the path is `/` and only `base` itself exists, which is right.
fn ancestors(base: &Path, cgroup_path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut dir = base.join(cgroup_path.trim_start_matches('/'));
    loop {
        if dir.is_dir() {
            dirs.push(dir.clone());
        }
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            break;
        }
    }
    dirs
}

/// Builds a fake root holding `files` (/proc/self/cgroup, cgroup files, /proc/meminfo) for
/// the tests of [`super::cpus`] and [`super::memory`].
#[cfg(test)]
pub(crate) fn fixture(files: &[(&str, &str)]) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let root =
        std::env::temp_dir().join(format!("percore-root-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = fs::remove_dir_all(&root);
    for (path, content) in files {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    root
}
