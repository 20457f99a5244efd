use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use serde::Serialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn get(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        if second != self.second {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        self.text.as_bytes()
    }
}

fn respond(out: &mut Vec<u8>, date: &[u8], content_type: &[u8], body: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: M\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut rbuf, mut wbuf) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
    let mut date = Date { second: 0, text: String::new() };
    loop {
        if rbuf.len() == rbuf.capacity() {
            rbuf.reserve(4096);
        }
        let (filled, cap) = (rbuf.len(), rbuf.capacity());
        let (result, slice) = stream.read(rbuf.slice_mut(filled..cap)).await;
        rbuf = slice.into_inner();
        if !matches!(result, Ok(n) if n > 0) {
            return;
        }
        // One clock read a batch, as percore does.
        let now = date.get();
        let mut used = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&rbuf[used..]) {
                Ok(httparse::Status::Complete(n)) => {
                    if req.path == Some("/json") {
                        let body = serde_json::to_vec(&Message { message: "Hello, World!" }).unwrap();
                        respond(&mut wbuf, now, b"application/json", &body);
                    } else {
                        respond(&mut wbuf, now, b"text/plain", b"Hello, World!");
                    }
                    used += n;
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => return,
            }
        }
        rbuf.drain(..used);
        let (result, buf) = stream.write_all(wbuf).await;
        wbuf = buf;
        wbuf.clear();
        if result.is_err() {
            return;
        }
    }
}

fn main() {
    let addr: SocketAddr = std::env::var("ADDR").unwrap().parse().unwrap();
    let cores = core_affinity::get_core_ids().unwrap();
    let workers: Vec<_> = cores
        .into_iter()
        .map(|core| {
            std::thread::spawn(move || {
                core_affinity::set_for_current(core);
                let mut ring = io_uring::IoUring::builder();
                // percore's ring flags (src/runtime/driver.rs says why not DEFER_TASKRUN).
                ring.setup_coop_taskrun().setup_taskrun_flag();
                let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .uring_builder(ring)
                    .with_entries(1024)
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                    socket.set_reuse_port(true).unwrap();
                    socket.set_reuse_address(true).unwrap();
                    socket.bind(&addr.into()).unwrap();
                    socket.listen(4096).unwrap();
                    let listener = TcpListener::from_std(socket.into()).unwrap();
                    loop {
                        if let Ok((stream, _)) = listener.accept().await {
                            monoio::spawn(serve(stream));
                        }
                    }
                });
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}
