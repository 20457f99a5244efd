//! Whether a job's client is still there, asked by the pool thread about to run the job.
//!
//! A client that gives up on a slow request resets its connection (an abort, a killed
//! process, a timeout with SO_LINGER 0). Its job should then not run: a write would commit
//! for nobody, and a read would take Postgres's time from requests still waiting. The
//! question is asked once, where the answer matters — when a pool thread takes the job —
//! and only of a job that has waited [`LOOK_AFTER`]: one taken sooner would have run before
//! a reset could stop it anyway. It costs that thread one non-blocking peek at the client's
//! socket, and the worker nothing. (The worker used to arm a readiness watch on the socket
//! of every request that waited 5 ms and cancel it when the answer came: two trips through
//! the ring and a timer, on every request of a loaded server, where waits are longest.)
//!
//! End of stream is not "gone". A FIN says the client is done sending (RFC 9293 §3.6), and
//! a client that sends a whole request and then shuts down its sending side (`nc -N`,
//! scripts, some scrapers) is waiting for its answer. A client that closed completely
//! looks the same until the answer is written; the kernel then takes the write, and the
//! peer's reset ends the connection.
//!
//! The descriptor is the request's own for as long as its job can matter: the connection
//! closes its socket only after its request has stopped waiting, which retires the job's
//! slot first, and a retired job is skipped before its client is looked at. Should the
//! number meanwhile name another socket, the answer concerns a job nobody awaits.

use std::os::fd::RawFd;
use std::time::Duration;

/// A job that waited this long for a pool thread has its client looked at before it runs:
/// the store queue's default ADMISSION_TARGET, the wait from which a job is late.
pub(crate) const LOOK_AFTER: Duration = Duration::from_millis(5);

/// True when the peer has reset the connection (or the descriptor is no longer a
/// connected socket); false while it is open, has sent more, or only half-closed.
pub(crate) fn has_left(client: RawFd) -> bool {
    let mut probe = [0u8; 1];
    // SAFETY: a non-blocking peek of one byte into a local buffer. The descriptor belongs to
    // the connection (see the module doc); a peek changes nothing on it.
    let n = unsafe { libc::recv(client, probe.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n >= 0 {
        return false;
    }
    !matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN | libc::EINTR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// A connected pair over loopback: (the server's side, the client's).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener.accept().unwrap().0, client)
    }

    /// Waits (up to a second) for what the kernel reports to settle on `want`.
    fn settles(server: &TcpStream, want: bool) -> bool {
        for _ in 0..100 {
            if has_left(server.as_raw_fd()) == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn an_open_idle_client_is_there() {
        let (server, _client) = pair();
        assert!(!has_left(server.as_raw_fd()));
    }

    #[test]
    fn a_client_that_sent_more_is_there_and_its_bytes_stay() {
        let (server, mut client) = pair();
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        assert!(settles(&server, false));
        let mut buf = [0u8; 64];
        server.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(std::io::Read::read(&mut &server, &mut buf).unwrap(), 16, "the peek consumed nothing");
    }

    #[test]
    fn a_half_closed_client_is_still_there() {
        let (server, client) = pair();
        client.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!has_left(server.as_raw_fd()));
    }

    #[test]
    fn a_client_that_reset_has_left() {
        let (server, client) = pair();
        socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
        drop(client);
        assert!(settles(&server, true));
    }

    #[test]
    fn a_descriptor_that_is_no_socket_counts_as_left() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(has_left(file.as_raw_fd()));
        assert!(has_left(-1));
    }
}
