//! Log output: env_logger with RUST_LOG, as text for people or one JSON object per line
//! (LOG_FORMAT=json) for log collectors; every line logged while a request is being handled
//! carries that request's id, method and route, and the caller's W3C trace id and parent
//! span id when it sent a valid `traceparent`.
//!
//! The request a line belongs to is found through a thread-local pointer that
//! [`in_request`] sets only for the duration of each poll of the request's handler, so
//! requests interleaving on one worker never see each other's fields, and nothing is
//! allocated or copied per request.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use simd_json_derive::Serialize;

use crate::config::{Config, LogFormat};
use crate::http::request::Method;
use crate::http::trace_context::{self, TraceContext};

/// What a log line says about the request it belongs to.
///
/// The method and the caller's trace are read from the head bytes only when a line is
/// written. Copying one more field into this struct for every request cost 4–6
/// instructions a request (perf/instructions.py), and most requests are never logged.
pub(crate) struct RequestFields<'a> {
    pub(crate) id: &'a [u8],
    pub(crate) route: &'static str,
    /// The request's head as received: request line, then header lines.
    pub(crate) head: &'a [u8],
}

impl RequestFields<'_> {
    /// The method, named as the metrics name it.
    fn method(&self) -> &'static str {
        let line = self.head.iter().position(|b| !matches!(b, b'\r' | b'\n')).map_or(&[][..], |i| &self.head[i..]);
        let token = line.split(|&b| b == b' ').next().unwrap_or_default();
        Method::from_token(std::str::from_utf8(token).unwrap_or_default()).as_str()
    }
}

thread_local! {
    static CURRENT: Cell<*const RequestFields<'static>> = const { Cell::new(std::ptr::null()) };
}

/// Makes `fields` the current request until the returned guard drops (for in-core
/// handlers, which run without a future).
pub(crate) fn scope<'f>(fields: &'f RequestFields<'f>) -> Scope<'f> {
    let ptr: *const RequestFields<'static> = (fields as *const RequestFields<'_>).cast();
    Restore(CURRENT.with(|c| c.replace(ptr)), std::marker::PhantomData)
}

/// The guard of [`scope`].
pub(crate) type Scope<'f> = Restore<'f>;

/// Runs `inner` with `fields` as the current request of every log line it emits.
pub(crate) fn in_request<'f, F: Future>(fields: &'f RequestFields<'f>, inner: F) -> InRequest<'f, F> {
    InRequest { fields, inner }
}

pin_project_lite::pin_project! {
    pub(crate) struct InRequest<'f, F> {
        fields: &'f RequestFields<'f>,
        #[pin]
        inner: F,
    }
}

/// Restores the previous current request even if the poll panics; the lifetime ties it to
/// the fields it points to.
pub(crate) struct Restore<'f>(*const RequestFields<'static>, std::marker::PhantomData<&'f ()>);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl<F: Future> Future for InRequest<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // The pointer set here is cleared by `_restore` before `fields`' borrow can end,
        // because it lives only for this call.
        let ptr: *const RequestFields<'static> = (*this.fields as *const RequestFields<'_>).cast();
        let _restore = Restore(CURRENT.with(|c| c.replace(ptr)), std::marker::PhantomData);
        this.inner.poll(cx)
    }
}

/// Calls `f` with the request being handled on this thread, if any.
fn with_current<R>(f: impl FnOnce(Option<&RequestFields<'_>>) -> R) -> R {
    let ptr = CURRENT.with(Cell::get);
    // SAFETY: non-null only while an `InRequest` poll is on this thread's stack, and its
    // `fields` outlive that poll.
    f(unsafe { ptr.as_ref() })
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    level: &'a str,
    target: &'a str,
    message: &'a str,
    #[simd_json(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[simd_json(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[simd_json(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[simd_json(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[simd_json(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
}

/// Installs the logger, and a panic hook that logs through it (one line, in the chosen
/// format) instead of printing to stderr on its own.
pub fn init(config: &Config) {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&config.log_filter);
    match config.log_format {
        LogFormat::Json => builder.format(|buf, record| {
            let time = buf.timestamp_millis().to_string();
            let message = record.args().to_string();
            // Written straight into the logger's buffer: no string of its own a line.
            with_current(|req| {
                let trace = req.and_then(|r| trace_context::find(r.head));
                let line = JsonLine {
                    time: &time,
                    level: record.level().as_str(),
                    target: record.target(),
                    message: &message,
                    request_id: req.map(|r| std::str::from_utf8(r.id).unwrap_or("")),
                    method: req.map(|r| r.method()),
                    route: req.map(|r| r.route),
                    trace_id: trace.map(TraceContext::trace_id),
                    parent_id: trace.map(TraceContext::parent_id),
                };
                line.json_write(&mut *buf)
            })?;
            writeln!(buf)
        }),
        LogFormat::Text => builder.format(|buf, record| {
            let time = buf.timestamp_millis();
            with_current(|req| match req {
                Some(r) => {
                    write!(
                        buf,
                        "[{time} {:<5} {}] {} request_id={} method={} route={}",
                        record.level(),
                        record.target(),
                        record.args(),
                        String::from_utf8_lossy(r.id),
                        r.method(),
                        r.route
                    )?;
                    match trace_context::find(r.head) {
                        Some(t) => writeln!(buf, " trace_id={} parent_id={}", t.trace_id(), t.parent_id()),
                        None => writeln!(buf),
                    }
                }
                None => writeln!(buf, "[{time} {:<5} {}] {}", record.level(), record.target(), record.args()),
            })
        }),
    };
    builder.init();
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = panic_message(info.payload());
        log::error!("panic in thread {} at {location}: {message}", thread.name().unwrap_or("?"));
    }));
}
/// The text of a panic payload (`panic!("…")` gives a &str or a String).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::RequestFields;

    #[test]
    fn the_method_is_read_from_the_head_as_the_metrics_name_it() {
        let fields = |head: &'static [u8]| RequestFields { id: b"x", route: "/", head };
        assert_eq!(fields(b"POST /api/v1/users HTTP/1.1\r\nHost: a\r\n\r\n").method(), "POST");
        assert_eq!(fields(b"\r\n\r\nDELETE /x HTTP/1.1\r\n\r\n").method(), "DELETE", "leading empty lines");
        assert_eq!(fields(b"BREW /pot HTTP/1.1\r\n\r\n").method(), "OTHER");
        assert_eq!(fields(b"").method(), "OTHER");
    }
}
