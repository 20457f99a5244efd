//! The scheduling policy of the database threads (DB_THREAD_SCHED).
//!
//! A pool thread sleeps most of the time and wakes for every reply a store sends: on
//! Postgres, once per statement as the server flushes each Sync. Under CFS/EEVDF a thread
//! that has slept has little runtime to its name, so each of those wake-ups preempts
//! whatever runs on its CPU — a worker in the middle of a request, or the very Postgres
//! backend (on the same machine) that is still producing the rest of the pipeline. Both
//! sides then pay a switch per statement, and the backend is torn out of its work.
//!
//! SCHED_BATCH keeps the thread's fair share but forgoes wake-up preemption: it runs on an
//! idle CPU at once, and on a busy one when the running thread blocks or its slice ends. So
//! a pool thread reads the replies that came meanwhile in one go, and workers and backends
//! keep their CPU. No privilege is needed (it is not a real-time policy). Measured in
//! perf/README.md (2026-12-03, second entry): /queries 1.75x, /updates 1.60x req/s at
//! 0.35–0.40x CPU per request.

use std::io;

use crate::config::DbThreadSched;

/// Puts the calling thread under `policy`.
pub(crate) fn apply(policy: DbThreadSched) -> io::Result<()> {
    let policy = match policy {
        DbThreadSched::Batch => libc::SCHED_BATCH,
        DbThreadSched::Normal => return Ok(()),
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy as the kernel reports it for the calling thread.
    fn current() -> i32 {
        // SAFETY: pid 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    /// The policy a new thread reports after `apply(policy)`.
    fn in_a_thread(policy: DbThreadSched) -> i32 {
        std::thread::spawn(move || {
            apply(policy).unwrap();
            current()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn batch_is_applied_to_the_calling_thread_only() {
        assert_eq!(in_a_thread(DbThreadSched::Batch), libc::SCHED_BATCH);
        assert_eq!(current(), libc::SCHED_OTHER);
    }

    #[test]
    fn normal_leaves_the_thread_alone() {
        assert_eq!(in_a_thread(DbThreadSched::Normal), libc::SCHED_OTHER);
    }
}
