//! SIGTERM and SIGINT → the drain.
//!
//! The signals are blocked in the main thread before any worker is spawned, so every thread
//! inherits the mask and none is ever interrupted; the main thread alone takes them, with
//! `sigtimedwait`, between checks on its workers. No async signal handler, no self-pipe.

use std::io;
use std::time::Duration;

pub(crate) struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGTERM and SIGINT for this thread and every thread it spawns from now on.
    pub(crate) fn block() -> io::Result<Signals> {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the calls
        // only read and write that set and this thread's signal mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(Signals { set })
        }
    }

    /// Waits up to `timeout` for SIGTERM or SIGINT and names the one that came.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<&'static str> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: the set was initialised in `block`; siginfo may be null.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        match sig {
            libc::SIGTERM => Some("SIGTERM"),
            libc::SIGINT => Some("SIGINT"),
            _ => None,
        }
    }
}
