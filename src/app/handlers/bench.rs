//! The TechEmpower test types, mounted with BENCH_ROUTES=1, following the benchmark's
//! rules: `Server`, `Date`, `Content-Type` and `Content-Length` on every response; JSON
//! serialized per request; random world ids from 1 to 10,000; `queries` clamped to 1–500
//! (anything that is not a number is 1); each world read by its own query; fortunes sorted,
//! escaped, UTF-8 HTML with one fortune added at request time. Their headers are the
//! benchmark's: no `Cache-Control` (the route table's `Bench` mount says so).

use simd_json_derive::Serialize;

use super::api::db_error;
use crate::app::App;
use crate::db::model::Fortunes;
use crate::http::query;
use crate::http::response::{Reply, PLAIN};
use crate::http::route::RequestView;

/// `/plaintext`: `Hello, World!` as text/plain.
pub(crate) fn plaintext(_: &App, _: RequestView<'_>, reply: &mut Reply<'_>) {
    reply.send(200, PLAIN, b"Hello, World!", &[]);
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

/// `/json`: `{"message":"Hello, World!"}`, serialized for each request.
pub(crate) fn json(_: &App, _: RequestView<'_>, reply: &mut Reply<'_>) {
    reply.json(200, &Message { message: "Hello, World!" }, &[]);
}

/// `/db`: one random world.
pub(crate) async fn db(ctx: &App, _: RequestView<'_>, reply: &mut Reply<'_>) {
    let id = ctx.random_world();
    match ctx.db.world(id).await {
        Ok(Some(world)) => reply.json(200, &world, &[]),
        // Every id from 1 to 10,000 exists: a missing one is a broken table.
        Ok(None) => {
            log::error!("worker {}: world {id} is missing from the table", ctx.id);
            reply.error(500, "Internal Server Error");
        }
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}

/// The `queries` parameter: 1–500; missing, not a number or below 1 is 1.
pub(crate) fn queries_param(q: &[u8]) -> usize {
    let n = query::get(q, "queries")
        .ok()
        .flatten()
        .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<i64>().ok())
        .unwrap_or(1);
    n.clamp(1, 500) as usize
}

/// `/queries?queries=N`: N random worlds, each by its own query.
pub(crate) async fn queries(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let ids = (0..queries_param(req.query())).map(|_| ctx.random_world()).collect();
    match ctx.db.worlds(ids).await {
        Ok(worlds) => reply.json(200, &worlds, &[]),
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}

/// `/updates?queries=N`: N random worlds, each given a new random number and written back.
pub(crate) async fn updates(ctx: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let n = queries_param(req.query());
    let ids = (0..n).map(|_| ctx.random_world()).collect();
    let numbers = (0..n).map(|_| ctx.random_world()).collect();
    match ctx.db.update_worlds(ids, numbers).await {
        Ok(worlds) => reply.json(200, &worlds, &[]),
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}

/// `/fortunes`: every fortune plus one added now, sorted by message, as escaped HTML.
pub(crate) async fn fortunes(ctx: &App, _: RequestView<'_>, reply: &mut Reply<'_>) {
    match ctx.db.fortunes().await {
        Ok(mut fortunes) => {
            fortunes.push(0, "Additional fortune added at request time.");
            fortunes.sort_by_message();
            reply.compose(200, "text/html; charset=utf-8", |out| {
                render_fortunes(out, &fortunes);
                Ok::<(), std::convert::Infallible>(())
            });
        }
        Err(e) => db_error(ctx, reply, &e, ""),
    }
}

/// The page, into `out` (the worker's scratch buffer, cleared but keeping the capacity the
/// last page needed).
pub(crate) fn render_fortunes(out: &mut Vec<u8>, fortunes: &Fortunes) {
    out.extend_from_slice(
        b"<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>",
    );
    let mut id = itoa::Buffer::new();
    for (n, message) in fortunes.iter() {
        out.extend_from_slice(b"<tr><td>");
        out.extend_from_slice(id.format(n).as_bytes());
        out.extend_from_slice(b"</td><td>");
        escape_html(out, message.as_bytes());
        out.extend_from_slice(b"</td></tr>");
    }
    out.extend_from_slice(b"</table></body></html>");
}

/// What each byte becomes in HTML text and attribute values; empty: itself.
const ESCAPES: [&[u8]; 256] = {
    let mut table: [&[u8]; 256] = [b""; 256];
    table[b'&' as usize] = b"&amp;";
    table[b'<' as usize] = b"&lt;";
    table[b'>' as usize] = b"&gt;";
    table[b'"' as usize] = b"&quot;";
    table[b'\'' as usize] = b"&#39;";
    table
};

/// Copies `text` in runs up to each byte that needs escaping, rather than byte by byte.
fn escape_html(out: &mut Vec<u8>, mut text: &[u8]) {
    while let Some(at) = next_special(text) {
        out.extend_from_slice(&text[..at]);
        out.extend_from_slice(ESCAPES[text[at] as usize]);
        text = &text[at + 1..];
    }
    out.extend_from_slice(text);
}

/// Where the first byte that needs escaping is. Blocks of 16 bytes are tested with
/// comparisons ORed together, which compile to a few vector instructions a block, where a
/// table lookup costs several instructions a byte; only the block that holds one is searched
/// byte by byte.
fn next_special(text: &[u8]) -> Option<usize> {
    const BLOCK: usize = 16;
    let mut blocks = text.chunks_exact(BLOCK);
    let mut start = 0;
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | special(b)) {
            return block.iter().position(|&b| special(b)).map(|i| start + i);
        }
        start += BLOCK;
    }
    blocks.remainder().iter().position(|&b| special(b)).map(|i| start + i)
}

/// Whether `b` needs escaping: the bytes [`ESCAPES`] has an entry for, spelled as
/// comparisons so that a block of them vectorizes (a test holds the two to each other).
fn special(b: u8) -> bool {
    (b == b'&') | (b == b'<') | (b == b'>') | (b == b'"') | (b == b'\'')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_clamped() {
        for (q, n) in [
            (&b""[..], 1),
            (b"queries=", 1),
            (b"queries=abc", 1),
            (b"queries=0", 1),
            (b"queries=-3", 1),
            (b"queries=7", 7),
            (b"queries=500", 500),
            (b"queries=501", 500),
        ] {
            assert_eq!(queries_param(q), n, "{}", String::from_utf8_lossy(q));
        }
    }

    #[test]
    fn fortunes_are_escaped() {
        let mut out = Vec::new();
        let mut page = Fortunes::default();
        page.push(11, "<script>alert(\"x\");</script> & 'q'");
        render_fortunes(&mut out, &page);
        let html = String::from_utf8(out).unwrap();
        assert!(
            html.contains(
                "<tr><td>11</td><td>&lt;script&gt;alert(&quot;x&quot;);&lt;/script&gt; &amp; &#39;q&#39;</td></tr>"
            ),
            "{html}"
        );
    }

    #[test]
    fn escaping_copies_runs_and_keeps_every_other_byte() {
        for (text, escaped) in [
            ("", ""),
            ("plain", "plain"),
            ("&", "&amp;"),
            ("a<b>c", "a&lt;b&gt;c"),
            ("<<>>", "&lt;&lt;&gt;&gt;"),
            ("フレームワークのベンチマーク", "フレームワークのベンチマーク"),
            ("x\"'", "x&quot;&#39;"),
            // Specials on both sides of a 16-byte block's edge, and in the remainder.
            ("0123456789abcde<f>0123456789abcdef&", "0123456789abcde&lt;f&gt;0123456789abcdef&amp;"),
            ("0123456789abcdef0123456789abcdef'", "0123456789abcdef0123456789abcdef&#39;"),
        ] {
            let mut out = Vec::new();
            escape_html(&mut out, text.as_bytes());
            assert_eq!(String::from_utf8(out).unwrap(), escaped, "{text}");
        }
    }

    #[test]
    fn the_comparisons_name_exactly_the_bytes_the_table_escapes() {
        for b in 0..=255u8 {
            assert_eq!(special(b), !ESCAPES[b as usize].is_empty(), "byte {b:#04x}");
        }
    }

    proptest::proptest! {
        /// The block-wise search escapes exactly what a byte-by-byte pass does.
        #[test]
        fn escaping_matches_a_byte_by_byte_pass(text in proptest::collection::vec(
            proptest::sample::select(b"&<>\"'ab \xe3\x83\x95".to_vec()), 0..80)) {
            let mut out = Vec::new();
            escape_html(&mut out, &text);
            let expected: Vec<u8> = text
                .iter()
                .flat_map(|&b| if ESCAPES[b as usize].is_empty() { vec![b] } else { ESCAPES[b as usize].to_vec() })
                .collect();
            proptest::prop_assert_eq!(out, expected);
        }
    }

    #[test]
    fn fortunes_sort_by_message_with_their_ids() {
        let mut page = Fortunes::default();
        for (id, m) in [(3, "c"), (1, "a"), (0, "Additional"), (2, "b")] {
            page.push(id, m);
        }
        page.sort_by_message();
        assert_eq!(page.iter().collect::<Vec<_>>(), [(0, "Additional"), (1, "a"), (2, "b"), (3, "c")]);
    }
}
