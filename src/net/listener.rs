//! ① The worker's own SO_REUSEPORT listening socket and its accept loop.
//!
//! Every worker binds its own socket to the same address with SO_REUSEPORT, and the kernel
//! spreads incoming connections across them by a hash of the 4-tuple: no accept lock, no
//! hand-off between threads, and each connection lives and dies on one core.
//!
//! The accept loop never spins: at MAX_CONNECTIONS it pauses (new connections wait in the
//! kernel's backlog) and on EMFILE/ENFILE/ENOMEM it logs, backs off and keeps serving the
//! connections it has — an accept loop that retries at once on EMFILE burns a core.
//!
//! The drain resets nothing. Shutting a listener resets the connections queued on it and
//! those still completing their handshake, and a client that had already sent its request
//! on one sees it lost. So the door closes in three steps: a socket filter on the listener
//! drops new SYNs (an unprivileged classic-BPF program: a client's SYN goes unanswered, its
//! retry a second later finds the port closed and is refused — no request was sent, none
//! is lost); handshakes already under way get [`DRAIN_GRACE`] to complete; then every
//! connection waiting in the backlog is taken and served, and only then is the socket shut.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::balance::Handed;
use super::core::Core;
use crate::http::service::Service;
use crate::obs::metrics::Reject;

/// Pending connections per listener (the kernel caps it at net.core.somaxconn).
pub(crate) const BACKLOG: i32 = 4096;
/// Back-off when the process is out of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Most connections taken from the backlog after each accept completes.
const ACCEPT_BATCH: usize = 64;
/// How often a paused accept loop looks again at the connection count.
const LIMIT_POLL: Duration = Duration::from_millis(10);
/// At the drain, how long handshakes already under way have to complete once new SYNs are
/// dropped: a round trip for the client's last ACK, with room to spare.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_millis(100);

/// Binds one SO_REUSEPORT listener per worker on `addr`. With port 0 the first socket picks
/// the port and the others join it.
pub(crate) fn bind_all(addr: SocketAddr, count: usize) -> io::Result<Vec<StdListener>> {
    let first = bind(addr)?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(bind(addr)?);
    }
    Ok(all)
}

fn bind(addr: SocketAddr) -> io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Stops a listening socket from another thread: the kernel refuses new connections at once
/// and a pending accept returns (EINVAL), whatever driver the worker runs.
pub(crate) fn shut(fd: &impl AsRawFd) {
    // SAFETY: shutdown on a descriptor we own (a dup of the listener) touches no memory.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RD) };
}

/// Accepts connections until the worker drains, spawning a task for each.
/// `take_queued`: after each accept, take what else is queued without waiting (io_uring,
/// whose accepts complete one a loop turn: see [`accept_queued`]).
pub(crate) async fn accept_loop<S: Service>(ctx: Rc<Core<S>>, listener: StdListener, take_queued: bool) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("worker {}: cannot register its listener: {e}", ctx.id);
            return;
        }
    };
    let mut last_warning: Option<std::time::Instant> = None;
    // Each pause at MAX_CONNECTIONS counts once, not once per look.
    let mut paused = false;
    while !ctx.draining.get() {
        if ctx.shared.at_connection_limit() {
            if !std::mem::replace(&mut paused, true) {
                ctx.metrics.rejected(Reject::MaxConnections);
            }
            monoio::time::sleep(LIMIT_POLL).await;
            continue;
        }
        paused = false;
        match listener.cancelable_accept(ctx.accept_handle()).await {
            Ok((stream, peer)) => {
                // Another worker may have taken the last slot since the check above: this
                // connection then waits here, as it would have in the backlog, unserved
                // and not closed, and accepting pauses until a slot frees.
                if !ctx.shared.try_open_connection() {
                    ctx.metrics.rejected(Reject::MaxConnections);
                    while !ctx.shared.try_open_connection() {
                        if ctx.draining.get() || ctx.shared.is_draining() {
                            return;
                        }
                        monoio::time::sleep(LIMIT_POLL).await;
                    }
                }
                ctx.metrics.accepted();
                let _ = stream.set_nodelay(true);
                place(&ctx, stream, peer);
                if take_queued {
                    let taken = accept_queued(&ctx, &listener, ACCEPT_BATCH, false);
                    if taken > 0 {
                        log::debug!("worker {}: took {taken} more queued connections after an accept", ctx.id);
                    }
                }
            }
            Err(_) if ctx.draining.get() || ctx.shared.is_draining() => {
                ctx.start_draining();
                break;
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        log::warn!(
                            "worker {}: accept failed ({e}); backing off, open connections keep being served",
                            ctx.id
                        );
                        last_warning = Some(std::time::Instant::now());
                    }
                    let why = match e.raw_os_error() {
                        Some(libc::EMFILE | libc::ENFILE) => Reject::FdExhausted,
                        _ => Reject::NoMemory,
                    };
                    ctx.metrics.rejected(why);
                    monoio::time::sleep(ACCEPT_BACKOFF).await;
                }
                // The peer gave up before we accepted: nothing to do.
                Some(libc::ECONNABORTED | libc::EPERM | libc::EPROTO | libc::EINTR | libc::EAGAIN) => {}
                _ => {
                    log::warn!("worker {}: accept failed: {e}", ctx.id);
                    monoio::time::sleep(LIMIT_POLL).await;
                }
            },
        }
    }
    match drop_new_syns(&listener) {
        Ok(()) => monoio::time::sleep(DRAIN_GRACE).await,
        Err(e) => log::warn!("worker {}: cannot filter new SYNs at the drain ({e}); closing at once", ctx.id),
    }
    take_backlog(&ctx, &listener);
    shut(&listener);
    log::debug!("worker {}: listener closed", ctx.id);
}

/// Serves a connection this worker accepted, or hands it to a worker with fewer
/// (CONN_BALANCE=exact) before a byte of it is read. Never during the drain: the other
/// worker may be closing its doors too.
fn place<S: Service>(ctx: &Rc<Core<S>>, stream: monoio::net::TcpStream, peer: SocketAddr) {
    let balance = &ctx.shared.balance;
    let target = if ctx.is_draining() {
        balance.keep(ctx.id);
        None
    } else {
        balance.place(ctx.id)
    };
    let Some(to) = target else {
        monoio::spawn(crate::net::conn::serve(ctx.clone(), stream, peer));
        return;
    };
    // Deregisters the socket from this worker's driver; the descriptor moves on.
    let fd = std::os::fd::IntoRawFd::into_raw_fd(stream);
    // SAFETY: `fd` was just released by the stream that owned it and is owned by nothing else.
    let stream = unsafe { <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    ctx.metrics.rebalanced();
    balance.hand_over(to, Handed { stream, peer });
}

/// Serves, until the worker stops, the connections other workers hand over to this one.
pub(crate) async fn adopt<S: Service>(ctx: Rc<Core<S>>) {
    std::future::poll_fn(|cx| {
        ctx.shared.balance.inbox(ctx.id).drain(cx.waker(), |Handed { stream, peer }| {
            match monoio::net::TcpStream::from_std(stream) {
                Ok(stream) => {
                    monoio::spawn(crate::net::conn::serve(ctx.clone(), stream, peer));
                }
                Err(e) => {
                    // Dropped, so closed: the client sees a reset, as when accept fails.
                    log::warn!("worker {}: cannot adopt a connection from {peer}: {e}", ctx.id);
                    ctx.shared.balance.closed(ctx.id);
                    ctx.shared.close_connection();
                }
            }
        });
        std::task::Poll::<()>::Pending
    })
    .await
}

/// Attaches a socket filter that drops TCP segments with SYN set and ACK clear — new
/// connections — and lets every other segment through, so handshakes under way complete.
/// A TCP socket filter sees the TCP header at offset 0; byte 13 holds the flags.
pub(crate) fn drop_new_syns(fd: &impl AsRawFd) -> io::Result<()> {
    const LDB_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    let program = [
        libc::sock_filter { code: LDB_ABS, jt: 0, jf: 0, k: 13 },
        libc::sock_filter { code: AND_K, jt: 0, jf: 0, k: SYN | ACK },
        libc::sock_filter { code: JEQ_K, jt: 0, jf: 1, k: SYN },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: u32::MAX },
    ];
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    // SAFETY: setsockopt reads `fprog` (and the program it points to, alive on this stack)
    // during the call only; the descriptor is the listener's, which we own.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Accepts, without waiting, what is queued on the listener, to be answered and closed by
/// the drain like every other connection.
fn take_backlog<S: Service>(ctx: &Rc<Core<S>>, listener: &monoio::net::TcpListener) {
    let taken = accept_queued(ctx, listener, usize::MAX, true);
    if taken > 0 {
        log::debug!("worker {}: took {taken} queued connections before closing the listener", ctx.id);
    }
}

/// Accepts, without waiting, up to `max` connections already queued on the listener, and
/// serves them (`draining`: here, without handing any over). Returns how many.
///
/// Why after every accept: io_uring completes one accept per loop turn. A worker whose
/// turns are long — thousands of busy connections, past its cores — would take one
/// connection a turn while the rest wait in the backlog, their requests sent (the kernel
/// completed the handshake) and unread for seconds. The epoll driver's accept already
/// takes the backlog until EAGAIN, so there this would only add a failing accept4.
fn accept_queued<S: Service>(
    ctx: &Rc<Core<S>>,
    listener: &monoio::net::TcpListener,
    max: usize,
    draining: bool,
) -> usize {
    let mut taken = 0;
    while taken < max && ctx.shared.try_open_connection() {
        // SAFETY: accept4 on the listener we own (non-blocking) writes the peer's address
        // into the storage and length try_init hands it, and nowhere else.
        let accepted = unsafe {
            SockAddr::try_init(|storage, len| {
                let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
                match libc::accept4(listener.as_raw_fd(), storage.cast(), len, flags) {
                    fd if fd < 0 => Err(io::Error::last_os_error()),
                    fd => Ok(fd),
                }
            })
        };
        let Ok((fd, addr)) = accepted else {
            ctx.shared.close_connection();
            break;
        };
        // SAFETY: fd was just returned by accept4 and is owned by nothing else.
        let std_stream = unsafe { <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let peer = addr.as_socket().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let _ = std_stream.set_nodelay(true);
        match monoio::net::TcpStream::from_std(std_stream) {
            Ok(stream) => {
                ctx.metrics.accepted();
                taken += 1;
                if draining {
                    ctx.shared.balance.keep(ctx.id);
                    monoio::spawn(crate::net::conn::serve(ctx.clone(), stream, peer));
                } else {
                    place(ctx, stream, peer);
                }
            }
            Err(_) => ctx.shared.close_connection(),
        }
    }
    taken
}
