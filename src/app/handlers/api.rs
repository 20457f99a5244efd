//! What every /api/v1 handler shares: reading a JSON body, reading a page and cutting it
//! ([`next_page`]), and turning database failures into the contract's statuses.

use crate::app::decode::Rejected;
use crate::app::App;
use crate::db::{DbError, Page};
use crate::http::query;
use crate::http::response::Reply;
use crate::http::route::RequestView;
use simd_json::Buffers;

pub(crate) const DEFAULT_LIMIT: u32 = 20;
pub(crate) const MAX_LIMIT: u32 = 100;

/// Checks that a body was declared (411) and is JSON (415); then decodes it with one of
/// the [`crate::app::decode`] functions (400 or 413 naming the field). On failure the reply is written
/// and `None` returned.
pub(crate) fn decode_body<T>(
    ctx: &App,
    req: &mut RequestView<'_>,
    reply: &mut Reply<'_>,
    decode: fn(&mut [u8], &mut Buffers) -> Result<T, Rejected>,
) -> Option<T> {
    if !accepts_body(req, reply) {
        return None;
    }
    match decode(req.body, &mut ctx.json_buffers.borrow_mut()) {
        Ok(input) => Some(input),
        Err(refusal) => {
            reply.error(refusal.status, &refusal.message);
            None
        }
    }
}

/// 411 without a declared body, 415 unless `Content-Type: application/json`.
pub(crate) fn accepts_body(req: &RequestView<'_>, reply: &mut Reply<'_>) -> bool {
    if !req.head.declared_body {
        reply.error(411, "a body is required: send Content-Length or Transfer-Encoding: chunked");
        return false;
    }
    if !is_json(req.content_type()) {
        reply.error(415, "Content-Type must be application/json");
        return false;
    }
    true
}

/// `application/json`, any case, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: Option<&[u8]>) -> bool {
    let Some(ct) = content_type else { return false };
    let media = ct.split(|&b| b == b';').next().unwrap_or(b"");
    media.trim_ascii().eq_ignore_ascii_case(b"application/json")
}

/// `?limit=N&after=ID`: limit 1–100 (default 20), after ≥ 0 (default 0). 400 on anything else.
pub(crate) fn page(req: &RequestView<'_>, reply: &mut Reply<'_>) -> Option<Page> {
    match parse_page(req.query()) {
        Ok(page) => Some(page),
        Err(message) => {
            reply.error(400, message);
            None
        }
    }
}

/// Cuts the extra row a page query fetched (jobs fetch `limit + 1`); the id to continue
/// after, if there is more.
pub(crate) fn next_page<T>(rows: &mut Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> Option<i64> {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(id)
    } else {
        None
    }
}

pub(crate) fn parse_page(q: &[u8]) -> Result<Page, &'static str> {
    let number = |key: &str| -> Result<Option<i64>, ()> {
        match query::get(q, key).map_err(|_| ())? {
            None => Ok(None),
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .filter(|s| !s.starts_with('+'))
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or(()),
        }
    };
    let limit = match number("limit") {
        Ok(None) => DEFAULT_LIMIT,
        Ok(Some(n)) if (1..=MAX_LIMIT as i64).contains(&n) => n as u32,
        _ => return Err("limit: must be a whole number from 1 to 100"),
    };
    let after = match number("after") {
        Ok(None) => 0,
        Ok(Some(n)) if n >= 0 => n,
        _ => return Err("after: must be an id (a whole number, 0 or more)"),
    };
    Ok(Page { after, limit })
}

/// The contract's status for a failed database call.
pub(crate) fn db_error(ctx: &App, reply: &mut Reply<'_>, e: &DbError, conflict: &str) {
    match e {
        DbError::QueueFull => reply.error(503, "the database queue is full; retry shortly"),
        DbError::Unavailable(_) => reply.error(503, &format!("store {} unavailable", ctx.db.pool().store)),
        DbError::Deadline => reply.out_of_budget(),
        DbError::ClientGone => reply.client_left(),
        DbError::Conflict => reply.error(409, conflict),
        DbError::Internal(why) => {
            log::error!("worker {}: {why}", ctx.id);
            reply.error(500, "Internal Server Error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        assert_eq!(parse_page(b""), Ok(Page { after: 0, limit: 20 }));
        assert_eq!(parse_page(b"limit=100&after=5"), Ok(Page { after: 5, limit: 100 }));
        assert_eq!(parse_page(b"limit=1"), Ok(Page { after: 0, limit: 1 }));
        for bad in [&b"limit=0"[..], b"limit=101", b"limit=abc", b"limit=", b"limit=%zz", b"limit=+5"] {
            assert!(parse_page(bad).unwrap_err().starts_with("limit"), "{bad:?}");
        }
        for bad in [&b"after=-1"[..], b"after=x", b"after=1.5"] {
            assert!(parse_page(bad).unwrap_err().starts_with("after"), "{bad:?}");
        }
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(Some(b"application/json")));
        assert!(is_json(Some(b"Application/JSON; charset=utf-8")));
        assert!(!is_json(Some(b"text/plain")));
        assert!(!is_json(Some(b"application/jsonx")));
        assert!(!is_json(None));
    }
}
