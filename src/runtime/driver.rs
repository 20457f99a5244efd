//! The I/O driver: io_uring with the best setup flags the kernel takes, or epoll.
//!
//! Chosen once per process, before the workers start, and logged. io_uring is refused with
//! EPERM under the default seccomp profiles of containerd 2.0+ and Docker 25+ and by
//! `kernel.io_uring_disabled`, and with ENOSYS on kernels without it; IO_DRIVER=auto then
//! falls back to epoll and says why.
//!
//! The ring's setup flags matter as much as the driver: measured on a 2-core VM, a plain
//! ring lost a third of its throughput on one pinned core. COOP_TASKRUN + TASKRUN_FLAG
//! (Linux 5.19+) runs the kernel's completion work when the worker next enters the kernel
//! instead of interrupting it.
//!
//! Not DEFER_TASKRUN, though it measured the same on a quiet server: with it the kernel runs
//! deferred completion work only inside a wait for events, and at most 20 items a wait
//! (IO_LOCAL_TW_DEFAULT_MAX, Linux 6.13+) when the waiter asks for one event, which is what
//! monoio's park asks for. Every operation the kernel had to park on readiness (an accept on
//! an empty backlog, a read before the request came) finishes through that work. A worker
//! busy with thousands of connections waits a few hundred times a second, so past a few
//! thousand such completions a second they queued in the kernel: a new connection sat in the
//! accept backlog for the whole of a 10 s run at twice capacity (perf/README.md, 2026-12-07,
//! the pinned layout). `one_wait_delivers_every_ready_completion` below holds that line.

use std::fmt;
use std::future::Future;
use std::io;

use crate::config::DriverChoice;

/// Ring setup flags, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFlags {
    CoopTaskrun,
    Plain,
}

impl RingFlags {
    fn builder(self) -> io_uring::Builder {
        let mut b = io_uring::IoUring::builder();
        match self {
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
    for flags in [RingFlags::CoopTaskrun, RingFlags::Plain] {
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

    /// What monoio's park does when it waits — submit, wait for one event, take every
    /// completion queued — must hand over every operation the kernel has finished, not a
    /// slice of them: 100 reads whose data has arrived are 100 completions after one wait.
    /// (With DEFER_TASKRUN they were 20, then 20 more a wait.)
    #[test]
    fn one_wait_delivers_every_ready_completion() {
        use std::io::Write;
        use std::os::fd::AsRawFd;

        const READS: usize = 100;
        let flags = match probe_uring() {
            Ok(flags) => flags,
            Err(e) => {
                eprintln!("io_uring unavailable here, nothing to check: {e}");
                return;
            }
        };
        let mut ring = flags.builder().build(256).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut pairs: Vec<_> = (0..READS)
            .map(|_| {
                let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                (client, listener.accept().unwrap().0)
            })
            .collect();
        let mut bufs = vec![[0u8; 16]; READS];
        for (i, ((_, server), buf)) in pairs.iter().zip(bufs.iter_mut()).enumerate() {
            let read = io_uring::opcode::Recv::new(io_uring::types::Fd(server.as_raw_fd()), buf.as_mut_ptr(), 16)
                .build()
                .user_data(i as u64);
            // SAFETY: the socket and the buffer outlive the ring's use of them: every read
            // completes below, before either is dropped.
            unsafe { ring.submission().push(&read).unwrap() };
        }
        // Nothing to read yet: every read parks in the kernel, waiting for data.
        ring.submit().unwrap();
        for (client, _) in &mut pairs {
            client.write_all(b"x").unwrap();
        }
        // Loopback delivers at once; the wait only gives the kernel its moment to notice.
        std::thread::sleep(std::time::Duration::from_millis(50));
        ring.submit_and_wait(1).unwrap();
        let done: Vec<_> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        assert_eq!(done.len(), READS, "{flags:?}: one wait delivered {} of {READS} finished reads", done.len());
        assert!(done.iter().all(|&(_, n)| n == 1), "{done:?}");
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
