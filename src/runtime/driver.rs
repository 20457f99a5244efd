//! The I/O driver: io_uring with the best setup flags the kernel takes, or epoll.
//!
//! Chosen once per process, before the workers start, and logged. io_uring is refused with
//! EPERM under the default seccomp profiles of containerd 2.0+ and Docker 25+ and by
//! `kernel.io_uring_disabled`, and with ENOSYS on kernels without it; IO_DRIVER=auto then
//! falls back to epoll and says why.
//!
//! The ring's setup flags matter as much as the driver: measured on a 2-core VM, a plain
//! ring lost a third of its throughput on one pinned core. SINGLE_ISSUER + DEFER_TASKRUN
//! (Linux 6.1+) runs completion work only when the worker asks for events, with no
//! interrupting task work; COOP_TASKRUN + TASKRUN_FLAG (5.19+) is the next best. Each worker
//! builds its own ring in its own thread, which is what SINGLE_ISSUER requires.

use std::fmt;
use std::future::Future;
use std::io;

use crate::config::DriverChoice;

/// Ring setup flags, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFlags {
    SingleIssuerDeferTaskrun,
    CoopTaskrun,
    Plain,
}

impl RingFlags {
    fn builder(self) -> io_uring::Builder {
        let mut b = io_uring::IoUring::builder();
        match self {
            RingFlags::SingleIssuerDeferTaskrun => {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            RingFlags::CoopTaskrun => {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }
            RingFlags::Plain => {}
        }
        b
    }
}

/// The driver every worker of this process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoDriver {
    IoUring(RingFlags),
    Epoll,
}

impl IoDriver {
    /// `io_uring` or `epoll`, for logs and the `percore_info` metric.
    pub(crate) fn name(self) -> &'static str {
        match self {
            IoDriver::IoUring(_) => "io_uring",
            IoDriver::Epoll => "epoll",
        }
    }
}

impl fmt::Display for IoDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoDriver::IoUring(RingFlags::SingleIssuerDeferTaskrun) => {
                f.write_str("io_uring (single issuer, deferred task work)")
            }
            IoDriver::IoUring(RingFlags::CoopTaskrun) => f.write_str("io_uring (cooperative task work)"),
            IoDriver::IoUring(RingFlags::Plain) => f.write_str("io_uring"),
            IoDriver::Epoll => f.write_str("epoll"),
        }
    }
}

/// The choice and, when auto fell back to epoll, why.
pub(crate) struct Choice {
    pub(crate) driver: IoDriver,
    pub(crate) fallback_reason: Option<String>,
}

/// Decides the driver for IO_DRIVER. A forced `io_uring` that the kernel refuses is an
/// error: the operator asked for it explicitly.
pub(crate) fn choose(setting: DriverChoice) -> io::Result<Choice> {
    match setting {
        DriverChoice::Epoll => Ok(Choice { driver: IoDriver::Epoll, fallback_reason: None }),
        DriverChoice::IoUring => probe_uring().map(|f| Choice { driver: IoDriver::IoUring(f), fallback_reason: None }),
        DriverChoice::Auto => Ok(match probe_uring() {
            Ok(flags) => Choice { driver: IoDriver::IoUring(flags), fallback_reason: None },
            Err(e) => Choice { driver: IoDriver::Epoll, fallback_reason: Some(e.to_string()) },
        }),
    }
}

/// Creates a small ring with the best flags the kernel accepts and checks that it supports
/// every operation monoio issues.
pub fn probe_uring() -> io::Result<RingFlags> {
    let mut last_err = None;
    for flags in [RingFlags::SingleIssuerDeferTaskrun, RingFlags::CoopTaskrun, RingFlags::Plain] {
        match flags.builder().build(8) {
            Ok(ring) => {
                check_opcodes(&ring)?;
                return Ok(flags);
            }
            // EINVAL: the kernel does not know these flags; try fewer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
            Err(e) => return Err(io::Error::new(e.kind(), format!("io_uring unavailable: {e}"))),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("io_uring unavailable")))
}

fn check_opcodes(ring: &io_uring::IoUring) -> io::Result<()> {
    use io_uring::opcode::*;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring probe refused: {e}")))?;
    let needed = [
        Accept::CODE,
        AsyncCancel::CODE,
        Close::CODE,
        PollAdd::CODE,
        Recv::CODE,
        Send::CODE,
        Write::CODE,
        Writev::CODE,
        Timeout::CODE,
        Read::CODE,
    ];
    match needed.iter().find(|&&op| !probe.is_supported(op)) {
        Some(op) => Err(io::Error::other(format!("io_uring lacks opcode {op}"))),
        None => Ok(()),
    }
}

/// io_uring submission queue size: room for a burst of sends and reads per loop turn.
const RING_ENTRIES: u32 = 1024;

/// Builds this thread's runtime for `driver` and runs `future` on it to completion.
pub(crate) fn block_on<F: Future>(driver: IoDriver, future: F) -> io::Result<F::Output> {
    match driver {
        IoDriver::IoUring(flags) => {
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .uring_builder(flags.builder())
                .with_entries(RING_ENTRIES)
                .enable_timer()
                .build()?;
            Ok(rt.block_on(future))
        }
        IoDriver::Epoll => {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build()?;
            Ok(rt.block_on(future))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_is_always_available() {
        let c = choose(DriverChoice::Epoll).unwrap();
        assert_eq!(c.driver, IoDriver::Epoll);
        assert_eq!(block_on(c.driver, async { 7 }).unwrap(), 7);
    }

    #[test]
    fn auto_picks_something_that_runs() {
        let c = choose(DriverChoice::Auto).unwrap();
        if let Some(why) = &c.fallback_reason {
            eprintln!("io_uring unavailable here: {why}");
        }
        let slept = block_on(c.driver, async {
            monoio::time::sleep(std::time::Duration::from_millis(5)).await;
            true
        });
        assert!(slept.unwrap());
    }
}
