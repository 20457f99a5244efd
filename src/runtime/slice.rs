//! The time slice the worker threads ask of the kernel (WORKER_SLICE).
//!
//! Linux's fair scheduler (EEVDF, 6.6 and later) gives every thread a virtual deadline one
//! slice after it becomes eligible, and from 6.12 a thread may ask for its own slice
//! (`sched_setattr`'s `sched_runtime`, 0.1–100 ms, no privilege). A thread with a shorter
//! slice has the earlier deadline when it wakes, so it preempts a thread with a longer one
//! at once instead of waiting out that thread's slice. Its share of the CPU is unchanged:
//! it only runs sooner, in shorter turns.
//!
//! A worker is that kind of thread: it sleeps in the ring, wakes for a completion, answers
//! in microseconds and sleeps again. Where another process shares its CPU (a batch job, a
//! noisy pod on an oversubscribed node), every wake-up otherwise waits behind the
//! neighbour's slice (1.4 ms on 2 CPUs, more on bigger machines), and a request that needs
//! several wake-ups waits several times. Measured in perf/README.md (2026-12-06, late):
//! beside a busy loop on one CPU, /db's p99.9 at half load 0.68x over 20 rounds, and lower
//! at half load without one; but 2–4% more server CPU at saturation, and a longer tail
//! just below capacity, where the worker also preempts a local Postgres. Hence opt-in
//! (WORKER_SLICE=off by default): for shared nodes, where the neighbour is the common case.
//!
//! On kernels before 6.12 the request is accepted and ignored, or refused; either way the
//! worker runs as before, and the start-up log says so.

use std::io;
use std::time::Duration;

use crate::config::{SLICE_LONGEST as LONGEST, SLICE_SHORTEST as SHORTEST};

/// `struct sched_attr` (include/uapi/linux/sched/types.h), as `sched_setattr` takes it.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    /// For SCHED_OTHER and SCHED_BATCH: the slice, in nanoseconds.
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// What became of the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel reports the slice asked for.
    Applied,
    /// The kernel took the call but keeps its own slice (before 6.12), or the thread runs
    /// under a real-time policy, where a slice means nothing and is not asked for.
    Ignored,
}

/// Asks the kernel for a `slice` for the calling thread, which keeps its policy (SCHED_OTHER
/// or SCHED_BATCH) and nice value.
pub fn apply(slice: Duration) -> io::Result<Outcome> {
    let nanos = slice.clamp(SHORTEST, LONGEST).as_nanos() as u64;
    let mut attr = get()?;
    if !matches!(attr.policy as i32, libc::SCHED_OTHER | libc::SCHED_BATCH) {
        return Ok(Outcome::Ignored);
    }
    attr.size = size_of::<SchedAttr>() as u32;
    // Only reset-on-fork is kept: the utilisation clamps are left as they are when their
    // flags are absent.
    attr.flags &= SCHED_FLAG_RESET_ON_FORK;
    attr.runtime = nanos;
    // SAFETY: pid 0 is the calling thread; `attr` is a whole sched_attr that outlives the
    // call, and its size field says how much the kernel may read.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if current()? == Duration::from_nanos(nanos) { Outcome::Applied } else { Outcome::Ignored })
}

/// The calling thread's slice as the kernel reports it (zero where it reports none).
pub fn current() -> io::Result<Duration> {
    get().map(|attr| Duration::from_nanos(attr.runtime))
}

const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;

fn get() -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = size_of::<SchedAttr>() as u32;
    // SAFETY: pid 0 is the calling thread; the kernel writes at most `size` bytes into
    // `attr`, which is that large.
    if unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut SchedAttr, size, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_a_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().unwrap()
    }

    /// Linux 6.12 or later, where a thread can ask for its own slice.
    fn kernel_takes_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (6, 12)
    }

    #[test]
    fn the_slice_asked_for_is_the_calling_threads_and_only_its() {
        let before = current().unwrap();
        let (outcome, after) = in_a_thread(|| (apply(Duration::from_micros(250)).unwrap(), current().unwrap()));
        if kernel_takes_slices() {
            assert_eq!(outcome, Outcome::Applied);
            assert_eq!(after, Duration::from_micros(250));
        } else {
            assert_eq!(outcome, Outcome::Ignored);
        }
        assert_eq!(current().unwrap(), before, "the test's own thread keeps its slice");
    }

    #[test]
    fn a_slice_outside_the_kernels_bounds_is_clamped_not_refused() {
        if !kernel_takes_slices() {
            return;
        }
        let (short, long) = in_a_thread(|| {
            apply(Duration::from_micros(1)).unwrap();
            let short = current().unwrap();
            apply(Duration::from_secs(1)).unwrap();
            (short, current().unwrap())
        });
        assert_eq!((short, long), (SHORTEST, LONGEST));
    }

    #[test]
    fn asking_for_a_slice_keeps_the_nice_value_and_the_policy() {
        let (nice, policy) = in_a_thread(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: raises the calling thread's own nice value and puts it under
            // SCHED_BATCH, neither of which needs a privilege; `param` outlives the call.
            unsafe {
                assert_eq!(libc::setpriority(libc::PRIO_PROCESS, 0, 5), 0);
                assert_eq!(libc::sched_setscheduler(0, libc::SCHED_BATCH, &param), 0);
            }
            apply(Duration::from_micros(100)).unwrap();
            let attr = get().unwrap();
            (attr.nice, attr.policy as i32)
        });
        assert_eq!((nice, policy), (5, libc::SCHED_BATCH));
    }
}
