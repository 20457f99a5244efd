//! A TCP proxy that delays everything the upstream sends: a store made slow on purpose,
//! without touching the server under test. Each query round trip through it costs at least
//! the delay. It counts the server's writes towards the store, so a test can tell
//! statements sent back to back (pipelined) from statements that each waited for a reply.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct DelayProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    upstream_reads: Arc<AtomicUsize>,
}

impl DelayProxy {
    pub fn start(upstream: SocketAddr, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let upstream_reads = Arc::new(AtomicUsize::new(0));
        let counted = upstream_reads.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let counted = counted.clone();
                std::thread::spawn(move || pump(client, server, Duration::ZERO, Some(&counted)));
                std::thread::spawn(move || pump(s2, c2, delay, None));
            }
        });
        DelayProxy { addr, stop, upstream_reads }
    }

    /// How many times the proxy has read from the server under test's side so far: bytes
    /// written back to back arrive in one read; a statement that waited for the reply to
    /// the one before cannot share a read with it.
    pub fn upstream_reads(&self) -> usize {
        self.upstream_reads.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to`, each chunk `delay` after it arrived: a link's latency, so chunks
/// that arrive together (pipelined replies) are delayed together, not one after another.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration, reads: Option<&AtomicUsize>) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (due, chunk) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(reads) = reads {
                    reads.fetch_add(1, Ordering::SeqCst);
                }
                if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}
