//! The one system call every response batch ends in: a non-blocking send, straight from the
//! connection's buffer, plain or sealed (TLS). Most batches fit the socket's send buffer, so
//! the task goes back to reading without a trip through the ring or a suspension; only what
//! the kernel does not take waits for the driver's (cancelable) write.

use monoio::net::TcpStream;

/// A non-blocking `send` of as much of `buf` as the socket takes now (0 when it is full).
pub(crate) fn send_now(stream: &TcpStream, buf: &[u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: sends from a live buffer on a descriptor the stream owns; MSG_DONTWAIT
        // keeps the call from blocking, MSG_NOSIGNAL from raising SIGPIPE.
        let n = unsafe {
            libc::send(stream.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(0),
            _ => return Err(e),
        }
    }
}
