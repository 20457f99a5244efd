//! ② One connection: read → parse → route → handle → encode → write, with its deadlines.
//!
//! The loop reads into the connection's reused buffer, answers every complete request the
//! buffer holds, in order, into one out buffer, and writes that once — so a client that
//! pipelines 16 requests costs one read and one write. HTTP/1.1 keeps the connection;
//! HTTP/1.0 closes it unless asked; `Connection: close`, a parse error or the drain close it
//! after the response (with a half-close and a short linger, so the kernel does not reset
//! the connection and destroy the response while the client is still sending).
//!
//! Deadlines are published to the worker's sweeper ([`super::timeouts`]), which cancels the
//! pending read or write when one passes: a request that is not whole SERVER_READ_TIMEOUT
//! after its first byte gets 408 (a slowloris client cannot hold a connection), an idle
//! keep-alive connection is closed after SERVER_IDLE_TIMEOUT, a client that does not read
//! its response loses the connection after SERVER_WRITE_TIMEOUT. After a 503 from a route
//! that waits for the store, the connection is not read for one ADMISSION_INTERVAL
//! (`Conn::hold_off`).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncWriteRent, CancelableAsyncReadRent, CancelableAsyncWriteRentExt};
use monoio::net::TcpStream;

use super::catch::catch_unwind_future;
use super::core::Core;
use super::guard;
use crate::clock;
use crate::deadline;
use crate::http::budget::{self, Stated};
use crate::http::date::DATE_LEN;
use crate::http::request::{begins_head_request, BodyLength, Head, Method, ParseError, Parsed, Parser, Request, Span};
use crate::http::response::{Framing, Reply, CONTINUE};
use crate::http::route::{Refusal, RequestView, Resolved, Shed};
use crate::http::service::Service;
use crate::net::body_memory::Share;
use crate::net::buffers::READ_BUFFER;
use crate::net::race::{race, Either};
use crate::net::send::send_now;
use crate::net::timeouts::{ConnCtl, Cut, Phase, SWEPT_BUDGET};
use crate::net::tls::Session;
use crate::obs::access_log::Entry;
use crate::obs::logging::{self, RequestFields};
use crate::obs::metrics::{Refused, UNMATCHED};
use crate::obs::request_id;
use crate::tls::stats::Failure;

/// How long a closing connection waits for the client to finish sending and close.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes discarded while lingering.
const LINGER_MAX_BYTES: usize = 1 << 20;

/// Serves one accepted connection until it closes. Never panics outward: a panic in the
/// connection code closes this connection only.
pub(crate) async fn serve<S: Service>(ctx: Rc<Core<S>>, stream: TcpStream, peer: SocketAddr) {
    let ctl = Rc::new(ConnCtl::default());
    let registration = Registration { ctx: &ctx, key: ctx.conns.borrow_mut().insert(ctl.clone()) };
    let mut conn = Conn {
        ctx: &ctx,
        ctl: &ctl,
        stream,
        tls: None,
        peer,
        rbuf: ctx.read_buffers.take(),
        wbuf: Vec::new(),
        parser: Parser::new(ctx.limits),
        request_began: None,
        last_read: 0,
        draining: false,
        body_share: Share::new(&ctx.shared.body_memory),
        head_judged: false,
        told_to_retry: false,
    };
    if let Err(panic) = catch_unwind_future(conn.run()).await {
        log::error!("worker {}: connection from {peer} panicked and was closed: {panic}", ctx.id);
    }
    if let Some(tls) = conn.tls.as_mut() {
        // However the connection ended (a timeout, the drain, the client's close), the
        // session ends with close_notify when the socket takes it; sent once at most.
        let mut alert = Vec::new();
        tls.close(&mut alert);
        let _ = send_now(&conn.stream, &alert);
    }
    ctx.read_buffers.give(std::mem::take(&mut conn.rbuf));
    ctx.write_buffers.give(std::mem::take(&mut conn.wbuf));
    drop(registration);
}

/// Keeps the connection in its worker's registry and counted, until it ends however it ends.
struct Registration<'a, S> {
    ctx: &'a Core<S>,
    key: usize,
}

impl<S> Drop for Registration<'_, S> {
    fn drop(&mut self) {
        self.ctx.conns.borrow_mut().remove(self.key);
        self.ctx.shared.balance.closed(self.ctx.id);
        self.ctx.shared.close_connection();
    }
}

struct Conn<'a, S> {
    ctx: &'a Core<S>,
    ctl: &'a ConnCtl,
    stream: TcpStream,
    /// On a TLS listener, the connection's TLS session: reads yield its plaintext, writes
    /// are sealed into its records.
    tls: Option<Box<Session>>,
    peer: SocketAddr,
    /// Bytes received and not yet consumed; the current request starts at 0. Without
    /// capacity while the connection is parked.
    rbuf: Vec<u8>,
    /// Responses of the current batch; without capacity between batches.
    wbuf: Vec<u8>,
    parser: Parser,
    /// When the first byte of the request being received arrived.
    request_began: Option<u64>,
    last_read: u64,
    /// The server was draining when this batch began: its responses say `Connection: close`.
    /// Read once a batch, so the process-wide flag is not loaded for every request.
    draining: bool,
    /// What the read buffer holds of MAX_BODY_MEMORY.
    body_share: Share<'a>,
    /// The request whose body is arriving was judged at the door on its head: it is not
    /// judged again when whole (its client has sent the body since), nor on every read.
    head_judged: bool,
    /// A request of this batch for a route that waits was answered 503 + `Retry-After`
    /// (refused at the door, the store's queue full, its deadline spent, the store
    /// unreachable): the next read waits (`hold_off`). A head refused before its body
    /// closes the connection instead, so it is not marked.
    told_to_retry: bool,
}

/// A request's id: the client's, or one made for it.
enum RequestId {
    Client(Span),
    Generated([u8; request_id::GENERATED_LEN]),
}

impl RequestId {
    fn get<'a>(&'a self, head_bytes: &'a [u8]) -> &'a [u8] {
        match self {
            RequestId::Client(span) => span.get(head_bytes),
            RequestId::Generated(id) => id,
        }
    }
}

/// A request being answered: its bytes, apart, and how its response begins.
struct Begun<'b> {
    head_bytes: &'b [u8],
    body: &'b mut [u8],
    framing: Framing,
    id: RequestId,
}

/// What an answered request did, for the metrics and the access log.
struct Done<R> {
    route: Option<R>,
    status: u16,
    bytes: usize,
    close: bool,
    /// It waited (for the store): its duration is its own, not its batch's.
    waited: bool,
}

/// Where [`Conn::answer_now`] stopped.
enum Batch<R> {
    /// Everything it could answer is answered; then this.
    Over(Next),
    /// This request's route waits for the store.
    Waits(Request, R, Option<i64>),
}

/// What to do after answering what the buffer holds.
enum Next {
    Read,
    Close,
    /// The client hung up while its request waited: close without writing.
    Abandon,
}

impl<S: Service> Conn<'_, S> {
    async fn run(&mut self) {
        if self.ctx.tls.is_some() && !self.handshake().await {
            return;
        }
        loop {
            if !self.read().await {
                return;
            }
            let next = self.answer().await;
            if let Next::Abandon = next {
                return;
            }
            if self.wbuf.is_empty() {
                self.ctx.write_buffers.give(std::mem::take(&mut self.wbuf));
            } else if !self.write_out().await {
                return;
            }
            if let Next::Close = next {
                self.linger().await;
                return;
            }
            if std::mem::take(&mut self.told_to_retry) {
                self.hold_off().await;
            }
        }
    }

    /// After such a 503, waits about one ADMISSION_INTERVAL before reading again. The 503 left
    /// at once with `Retry-After: 1`; a client that sends again sooner on this
    /// connection (a load generator, a retry loop without backoff) finds its request read
    /// when the door has decided again, and meanwhile that request waits in the socket
    /// instead of taking a turn of the loop to be refused again. Without the pause such
    /// clients keep the loop busy with refusals, and every accepted request, on any
    /// connection, waits behind them. The drain does not cut the pause: a request sent
    /// during it is read and answered after it.
    async fn hold_off(&self) {
        let pause = self.ctx.hold_off();
        if pause.is_zero() {
            return;
        }
        self.ctl.enter(Phase::Holding, clock::now_ms(), pause);
        monoio::time::sleep(pause).await;
    }

    /// The TLS handshake, under SERVER_READ_TIMEOUT as a request head is. False: it failed
    /// (counted by reason), and the connection is over.
    async fn handshake(&mut self) -> bool {
        let (ctx, ctl) = (self.ctx, self.ctl);
        let Some(acceptor) = ctx.tls.as_ref() else { return true };
        ctl.enter(Phase::Reading, clock::now_ms(), ctx.timeouts.read);
        match acceptor.handshake(&mut self.stream, ctl, &ctx.tls_buffers).await {
            Ok(session) => {
                let (tls13, resumed) = session.kind();
                acceptor.stats().handshake(tls13, resumed);
                self.tls = Some(session);
                true
            }
            Err(Failure::PlainHttp) => {
                acceptor.stats().failed(Failure::PlainHttp);
                // Told in its own language: a plain 400, then the connection closes.
                self.request_began = Some(clock::now_ms());
                self.refuse_and_close(400, "client sent a plain HTTP request to the TLS port: use https://").await;
                self.linger().await;
                false
            }
            Err(why) => {
                acceptor.stats().failed(why);
                log::debug!("worker {}: TLS handshake with {} failed: {why:?}", ctx.id, self.peer);
                false
            }
        }
    }

    /// Reads more bytes, waiting under the idle or read deadline. False: the connection is
    /// over (closed by the client, timed out, drained).
    async fn read(&mut self) -> bool {
        let now = clock::now_ms();
        let timeouts = self.ctx.timeouts;
        match self.request_began {
            None => self.ctl.enter(Phase::Idle, now, timeouts.idle),
            Some(began) => self.ctl.enter(Phase::Reading, began, timeouts.read),
        }
        loop {
            if self.rbuf.capacity() == 0 {
                // Parked: wait for the next request without holding a buffer.
                if !self.wait_readable().await {
                    return false;
                }
                self.rbuf = self.ctx.read_buffers.take();
            }
            if !self.make_room() {
                self.ctx.metrics.parse_error(Refused::BodyMemory);
                self.refuse_and_close(503, "request bodies in flight exceed MAX_BODY_MEMORY; retry shortly").await;
                return false;
            }
            let result = match self.tls.as_mut() {
                None => {
                    let buf = std::mem::take(&mut self.rbuf);
                    let filled = buf.len();
                    let (result, slice) = self.stream.cancelable_read(buf.slice_mut(filled..), self.ctl.handle()).await;
                    self.rbuf = slice.into_inner();
                    result
                }
                Some(tls) => tls.read(&mut self.stream, &mut self.rbuf, self.ctl, &self.ctx.tls_buffers).await,
            };
            return match result {
                Ok(0) => false,
                Ok(_) => {
                    self.last_read = clock::now_ms();
                    self.request_began.get_or_insert(self.last_read);
                    // Data that won a race against a cut is served; the drain still closes
                    // after it through the response's framing.
                    self.ctl.uncut();
                    true
                }
                Err(_) => match self.ctl.cut_reason() {
                    Some(Cut::Release) if self.rbuf.is_empty() => {
                        self.ctx.read_buffers.give(std::mem::take(&mut self.rbuf));
                        if let Some(tls) = self.tls.as_mut() {
                            tls.release(&self.ctx.tls_buffers);
                        }
                        self.body_share.settle(0);
                        self.ctl.uncut();
                        self.ctl.park();
                        continue;
                    }
                    Some(Cut::ReadTimeout) => {
                        self.ctx.metrics.parse_error(Refused::Timeout);
                        self.refuse_and_close(408, "request not received within SERVER_READ_TIMEOUT").await;
                        false
                    }
                    _ => false,
                },
            };
        }
    }

    /// A parked connection's wait: true once the socket is readable (a request, or EOF that
    /// the next read will see), false if the sweeper cut it (idle timeout, drain) meanwhile.
    async fn wait_readable(&mut self) -> bool {
        if self.tls.as_mut().is_some_and(|tls| tls.has_buffered()) {
            return true;
        }
        match race(self.stream.readable(false), self.ctl.interrupted()).await {
            Either::Left(ready) => ready.is_ok(),
            Either::Right(()) => false,
        }
    }

    /// Ensures the read buffer has spare capacity: reclaims chunk framing already decoded,
    /// then grows — to the exact size when a Content-Length says how much is coming, and
    /// only as far as MAX_BODY_MEMORY allows (false: no room).
    fn make_room(&mut self) -> bool {
        let len = self.rbuf.len();
        if len < self.rbuf.capacity() {
            return true;
        }
        let reclaimed = self.parser.reclaim(&mut self.rbuf);
        self.rbuf.truncate(reclaimed);
        if reclaimed + READ_BUFFER / 4 <= len {
            return true;
        }
        let wanted = match self.parser.pending_head() {
            Some(head) => match head.body {
                BodyLength::Length(n) => (head.len + n as usize).saturating_sub(reclaimed),
                _ => self.rbuf.capacity(),
            },
            None => self.rbuf.capacity(),
        };
        // As Vec::reserve would grow it (doubling, or exactly what is needed), but reserved
        // from the budget first.
        let capacity = (reclaimed + wanted.max(READ_BUFFER)).max(self.rbuf.capacity() * 2);
        if !self.body_share.grow_to(capacity) {
            return false;
        }
        self.rbuf.reserve_exact(capacity - reclaimed);
        self.body_share.settle(self.rbuf.capacity());
        true
    }

    /// Answers every complete request in the read buffer, appending the responses.
    async fn answer(&mut self) -> Next {
        let date = self.ctx.date.get();
        self.draining = self.ctx.is_draining();
        self.ensure_out();
        // Durations run from this read; requests answered without waiting end with the
        // batch (their responses leave in its one write), so most batches read the clock
        // twice however many requests they hold.
        let timed = cfg!(feature = "metrics") || self.ctx.access_log.is_some();
        let batch_start = if timed { clock::now_ns() } else { 0 };
        let mut start = 0;
        let next = loop {
            match self.answer_now(&mut start, &date, batch_start) {
                Batch::Over(next) => break next,
                Batch::Waits(request, route, id) => {
                    let outcome = self.respond_waiting(&request, start, &date, batch_start, route, id).await;
                    start += request.len;
                    if !matches!(outcome, Next::Read) {
                        break outcome;
                    }
                }
            }
        };
        if self.ctx.metrics.has_deferred() {
            self.ctx.metrics.settle(clock::now_ns().saturating_sub(batch_start));
        }
        // Keep what belongs to the next request at the front of the buffer.
        if start > 0 {
            self.rbuf.drain(..start);
            self.request_began = (!self.rbuf.is_empty()).then_some(self.last_read);
        }
        // A buffer that grew for a large body is not kept for small requests.
        if self.rbuf.is_empty() && !self.ctx.read_buffers.keeps(self.rbuf.capacity()) {
            self.rbuf = self.ctx.read_buffers.take();
            self.body_share.settle(self.rbuf.capacity());
        }
        next
    }

    /// Takes a write buffer for this batch's responses, if the connection has none.
    fn ensure_out(&mut self) {
        if self.wbuf.capacity() == 0 {
            self.wbuf = self.ctx.write_buffers.take();
        }
    }

    /// Why this request for `route` is refused at the door, if it is: the store's queue
    /// stands, or this worker's loop runs late (net/lag.rs, which this also feeds).
    #[inline]
    fn shed(&self, route: S::Route, method: Method) -> Option<Shed> {
        self.ctx.seen.one();
        self.ctx.service.sheds(route, method, !self.ctx.lag.admits())
    }

    /// A whole head whose body is still to come: refused now, before the client sends a
    /// body in vain, when its route works on the store and the store is overloaded;
    /// `Expect: 100-continue` answered with 100 when the body will be accepted, else with
    /// the final status (returned).
    fn before_body(&mut self, start: usize) -> Option<Refusal> {
        let head = self.parser.pending_head()?;
        let awaits_continue = head.expect_continue && self.rbuf.len() <= start + head.len;
        if self.head_judged && !awaits_continue {
            return None;
        }
        let resolved = self.ctx.service.resolve(head, &self.rbuf[start..]);
        if !std::mem::replace(&mut self.head_judged, true) {
            if let Resolved::Found { route, .. } = resolved {
                if S::waits(route, head.method) {
                    if let Some(why) = self.shed(route, head.method) {
                        self.ctx.metrics.shed(why);
                        self.ctx.metrics.request(Some(S::slot(route)), head.method, 503, 0);
                        return Resolved::Shed { route }.refusal();
                    }
                }
            }
        }
        if !awaits_continue {
            return None;
        }
        let Some(refused) = resolved.refusal() else {
            self.wbuf.extend_from_slice(CONTINUE);
            return None;
        };
        self.ctx.metrics.request(None, head.method, refused.status, 0);
        Some(refused)
    }

    /// Answers the complete requests from `start` on that need no waiting, advancing `start`
    /// past each. A plain function, so the common case keeps its state in registers and
    /// the stack rather than in the connection's future; it stops at the first request
    /// whose route waits (the store), which the caller awaits. Never inlined into the
    /// connection's future, whose state lives in memory; also `perf/instructions.py`
    /// counts from this symbol.
    #[inline(never)]
    fn answer_now(&mut self, start: &mut usize, date: &[u8; DATE_LEN], started: u64) -> Batch<S::Route> {
        while *start < self.rbuf.len() {
            let request = match self.parser.parse(&mut self.rbuf[*start..]) {
                Ok(Parsed::Complete(request)) => request,
                Ok(Parsed::Partial) => {
                    return Batch::Over(match self.before_body(*start) {
                        Some(refused) => self.refuse(refused.status, refused.message, date, *start),
                        None => Next::Read,
                    })
                }
                Err(e) => return Batch::Over(self.refuse_parse(e, date, *start)),
            };
            let judged = std::mem::take(&mut self.head_judged);
            let head = &request.head;
            let mut resolved = self.ctx.service.resolve(head, &self.rbuf[*start..]);
            if let Resolved::Found { route, id } = resolved {
                if S::waits(route, head.method) {
                    let Some(why) = (if judged { None } else { self.shed(route, head.method) }) else {
                        return Batch::Waits(request, route, id);
                    };
                    self.ctx.metrics.shed(why);
                    self.told_to_retry = true;
                    resolved = Resolved::Shed { route };
                }
            }
            let next = self.respond_now(&request, *start, date, started, resolved);
            *start += request.len;
            if !matches!(next, Next::Read) {
                return Batch::Over(next);
            }
        }
        Batch::Over(Next::Read)
    }

    /// Starts answering the request at `start` of `rbuf`: its head and body bytes, apart,
    /// and its response's framing and request id. Inlined: returned through memory, its
    /// small fields cost a store-forwarding stall per request (seen in perf).
    #[inline(always)]
    fn begin<'b>(
        ctx: &Core<S>,
        ctl: &ConnCtl,
        (last_read, draining): (u64, bool),
        rbuf: &'b mut [u8],
        request: &Request,
        start: usize,
    ) -> Begun<'b> {
        let head = &request.head;
        let window = &mut rbuf[start..start + request.len];
        let (head_bytes, rest) = window.split_at_mut(head.len);
        let body = &mut rest[..request.body.len()];
        ctx.metrics.request_started();
        ctl.enter(Phase::Handling, last_read, ctx.timeouts.handler);
        let framing = Framing {
            close: !head.keep_alive || draining,
            keep_alive_10: head.keep_alive_10 && !draining,
            head_only: head.method == Method::Head,
        };
        let id = match head.request_id.filter(|s| request_id::is_valid(s.get(head_bytes))) {
            Some(span) => RequestId::Client(span),
            None => RequestId::Generated(ctx.ids.next()),
        };
        Begun { head_bytes, body, framing, id }
    }

    /// A request answered in the worker, without waiting.
    fn respond_now(
        &mut self,
        request: &Request,
        start: usize,
        date: &[u8; DATE_LEN],
        started: u64,
        resolved: Resolved<S::Route>,
    ) -> Next {
        let (ctx, head) = (self.ctx, &request.head);
        let state = (self.last_read, self.draining);
        let Begun { head_bytes, body, framing, id } = Self::begin(ctx, self.ctl, state, &mut self.rbuf, request, start);
        let request_id = id.get(head_bytes);
        let mut reply = Reply::new(&mut self.wbuf, &ctx.scratch, date, framing, request_id).close_when(&ctx.draining);
        if let Resolved::Found { route, id } = resolved {
            let fields = RequestFields { id: request_id, route: S::pattern(route), head: head_bytes };
            let _scope = logging::scope(&fields);
            guard::now(ctx, route, RequestView { head, bytes: head_bytes, body, id }, &mut reply);
        } else if let Some(refused) = resolved.refusal() {
            let allow = refused.allow.map(|methods| ("Allow", methods.as_bytes()));
            reply.error_with(refused.status, refused.message, allow.as_slice());
        }
        let route = resolved.route();
        let done =
            Done { route, status: reply.status(), bytes: reply.len(), close: reply.framing.close, waited: false };
        Self::finish(ctx, &self.peer, head, head_bytes, request_id, started, done)
    }

    /// A request whose handler waits (for the store), raced against the sweep's cut.
    async fn respond_waiting(
        &mut self,
        request: &Request,
        start: usize,
        date: &[u8; DATE_LEN],
        started: u64,
        route: S::Route,
        id: Option<i64>,
    ) -> Next {
        let (ctx, head) = (self.ctx, &request.head);
        let state = (self.last_read, self.draining);
        let Begun { head_bytes, body, framing, id: request_id } =
            Self::begin(ctx, self.ctl, state, &mut self.rbuf, request, start);
        let request_id = request_id.get(head_bytes);
        let mut reply = Reply::new(&mut self.wbuf, &ctx.scratch, date, framing, request_id).close_when(&ctx.draining);
        let fields = RequestFields { id: request_id, route: S::pattern(route), head: head_bytes };
        let budget = Self::budget(ctx, head_bytes);
        let deadline = clock::now_ns() + budget.as_nanos() as u64;
        // A budget of seconds is the sweep's, from this connection's Handling deadline; a
        // shorter one is the handler's own timer.
        let own_timer = budget < SWEPT_BUDGET;
        if !own_timer && budget != ctx.timeouts.handler {
            self.ctl.enter(Phase::Handling, state.0, budget);
        }
        let request = RequestView { head, bytes: head_bytes, body, id };
        let handler = guard::waiting(ctx, route, request, &mut reply, budget, own_timer);
        // Boxed: the handler's state lives only while the request does. The deadline goes
        // with whatever it asks of the store.
        let handler =
            Box::pin(deadline::within(deadline, self.stream.as_raw_fd(), logging::in_request(&fields, handler)));
        let raced = race(handler, self.ctl.interrupted()).await;
        let abandoned = match raced {
            // Done: with what it wrote, even in the moment before the sweep comes round (a
            // write the store committed is not reported as failed), with the deadline's 503
            // when the store stopped its job there (`guard::waiting`), or with nothing when
            // the store found its client gone (`db::gone`).
            Either::Left(()) => reply.has_client_left(),
            // The sweep found the budget spent (a Handling phase is cut for nothing else).
            Either::Right(()) => {
                self.ctl.uncut();
                guard::timed_out(ctx, route, &mut reply, budget);
                false
            }
        };
        if abandoned {
            log::debug!("worker {}: client left during {}; its work was abandoned", ctx.id, S::pattern(route));
        }
        // 499, as nginx logs it: the client closed the connection before the response.
        let status = if abandoned { 499 } else { reply.status() };
        self.told_to_retry |= status == 503;
        let done = Done { route: Some(route), status, bytes: reply.len(), close: reply.framing.close, waited: true };
        match Self::finish(ctx, &self.peer, head, head_bytes, request_id, started, done) {
            _ if abandoned => Next::Abandon,
            next => next,
        }
    }

    /// A waiting request's budget: HANDLER_TIMEOUT, or less when the caller states less.
    fn budget(ctx: &Core<S>, head_bytes: &[u8]) -> Duration {
        let most = ctx.timeouts.handler;
        match budget::stated(head_bytes) {
            Stated::None => most,
            Stated::Budget(stated) => {
                ctx.metrics.budget(true);
                stated.min(most)
            }
            Stated::Invalid => {
                ctx.metrics.budget(false);
                most
            }
        }
    }

    /// Counts and logs an answered request, and says whether the connection goes on.
    /// Inlined: its arguments were built in memory for the call (the peer address alone is
    /// 32 bytes); inlined, a plaintext request costs 81 fewer instructions
    /// (`perf/instructions.py`).
    #[inline(always)]
    fn finish(
        ctx: &Core<S>,
        peer: &SocketAddr,
        head: &Head,
        head_bytes: &[u8],
        request_id: &[u8],
        started: u64,
        done: Done<S::Route>,
    ) -> Next {
        ctx.metrics.request_finished();
        if !done.waited && ctx.access_log.is_none() {
            ctx.metrics.request_deferred(done.route.map(S::slot), head.method, done.status);
        } else {
            let elapsed = if started == 0 { 0 } else { clock::now_ns().saturating_sub(started) };
            ctx.metrics.request(done.route.map(S::slot), head.method, done.status, elapsed);
            if let Some(access) = &ctx.access_log {
                access.record(&Entry {
                    method: head.method.as_str(),
                    route: done.route.map_or(UNMATCHED, S::pattern),
                    path: head.path(head_bytes),
                    status: done.status,
                    bytes: done.bytes,
                    duration_ns: elapsed,
                    request_id,
                    peer: *peer,
                    head: head_bytes,
                });
            }
        }
        if done.close {
            Next::Close
        } else {
            Next::Read
        }
    }

    /// Appends the response to a request that could not be parsed; the connection closes.
    fn refuse_parse(&mut self, e: ParseError, date: &[u8; DATE_LEN], start: usize) -> Next {
        log::debug!("worker {}: refused a request: {} {}", self.ctx.id, e.status(), e.message());
        self.ctx.metrics.parse_error(e.into());
        self.refuse(e.status(), e.message(), date, start)
    }

    /// Appends a refusal of the request that begins at `start`; the connection closes. A
    /// HEAD gets the head alone, even when the request was too broken to parse: its client
    /// reads no body after a response to HEAD, and would take one for the next response.
    fn refuse(&mut self, status: u16, message: &str, date: &[u8; DATE_LEN], start: usize) -> Next {
        self.parser.reset();
        self.ensure_out();
        let head_only = begins_head_request(self.rbuf.get(start..).unwrap_or_default());
        let framing = Framing { close: true, head_only, ..Framing::default() };
        let id = self.ctx.ids.next();
        Reply::new(&mut self.wbuf, &self.ctx.scratch, date, framing, &id).error(status, message);
        Next::Close
    }

    /// Sends a final error (408) on a connection that is being given up.
    async fn refuse_and_close(&mut self, status: u16, message: &str) {
        let date = self.ctx.date.get();
        self.refuse(status, message, &date, 0);
        self.write_out().await;
    }

    /// Writes the batch under the write deadline. False: the connection is lost.
    async fn write_out(&mut self) -> bool {
        self.ctx.metrics.write();
        if let Some(tls) = self.tls.as_mut() {
            // The batch's records, sealed at once, replace its plaintext.
            let mut sealed = self.ctx.write_buffers.take();
            if tls.seal(&self.wbuf, &mut sealed).is_err() {
                return false;
            }
            self.ctx.write_buffers.give(std::mem::replace(&mut self.wbuf, sealed));
        }
        // Almost every batch fits the socket's send buffer: one non-blocking send, and the
        // task goes straight back to reading — no trip through the ring, no suspension.
        // Only what the kernel did not take waits for the (cancelable) driver write.
        let sent = match send_now(&self.stream, &self.wbuf) {
            Ok(n) => n,
            Err(_) => return false,
        };
        let result = if sent == self.wbuf.len() {
            Ok(sent)
        } else {
            self.wbuf.drain(..sent);
            self.ctl.enter(Phase::Writing, clock::now_ms(), self.ctx.timeouts.write);
            let buf = std::mem::take(&mut self.wbuf);
            let (result, buf) = self.stream.write_all(buf, self.ctl.handle()).await;
            self.wbuf = buf;
            result
        };
        // Back to the pool: a connection waiting for its next request holds no write buffer.
        self.ctx.write_buffers.give(std::mem::take(&mut self.wbuf));
        result.is_ok()
    }

    /// Half-closes, then reads and discards until the client closes (or briefly), so the
    /// last response is not destroyed by a reset.
    async fn linger(&mut self) {
        if self.ctl.cut_reason().is_some() {
            return;
        }
        if let Some(tls) = self.tls.as_mut() {
            // close_notify first, so the client knows the response was not truncated.
            let mut alert = Vec::new();
            tls.close(&mut alert);
            let _ = send_now(&self.stream, &alert);
        }
        let _ = self.stream.shutdown().await;
        self.ctl.enter(Phase::Lingering, clock::now_ms(), LINGER);
        let mut discarded = 0;
        if self.rbuf.capacity() == 0 {
            self.rbuf = self.ctx.read_buffers.take();
        }
        while discarded < LINGER_MAX_BYTES {
            let mut buf = std::mem::take(&mut self.rbuf);
            buf.clear();
            let (result, slice) = self.stream.cancelable_read(buf.slice_mut(0..), self.ctl.handle()).await;
            self.rbuf = slice.into_inner();
            match result {
                Ok(n) if n > 0 => discarded += n,
                _ => return,
            }
        }
    }
}
