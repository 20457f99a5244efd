//! Percent-decoding and query strings, without I/O and without allocating when nothing is
//! encoded (the common case: `?limit=20&after=100`).

use std::borrow::Cow;

/// A percent-escape that is not `%` followed by two hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEscape;

/// Decodes `%XX` escapes; with `plus_is_space`, `+` becomes a space (form encoding, used in
/// query strings but not in paths).
pub(crate) fn percent_decode(input: &[u8], plus_is_space: bool) -> Result<Cow<'_, [u8]>, BadEscape> {
    if !input.iter().any(|&b| b == b'%' || (plus_is_space && b == b'+')) {
        return Ok(Cow::Borrowed(input));
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                let hi = input.get(i + 1).and_then(|&b| hex(b)).ok_or(BadEscape)?;
                let lo = input.get(i + 2).and_then(|&b| hex(b)).ok_or(BadEscape)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(Cow::Owned(out))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A decoded query key and value.
pub(crate) type Pair<'q> = (Cow<'q, [u8]>, Cow<'q, [u8]>);

/// The pairs of a query string, in order, percent-decoded. A key without `=` has an empty
/// value. Empty pieces (`a=1&&b=2`) are skipped.
pub fn pairs(query: &[u8]) -> impl Iterator<Item = Result<Pair<'_>, BadEscape>> {
    query.split(|&b| b == b'&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        Ok((percent_decode(k, true)?, percent_decode(v, true)?))
    })
}

/// The first value of `key` in `query`, decoded. `Ok(None)` when absent.
pub fn get<'q>(query: &'q [u8], key: &str) -> Result<Option<Cow<'q, [u8]>>, BadEscape> {
    for pair in pairs(query) {
        let (k, v) = pair?;
        if k.as_ref() == key.as_bytes() {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert!(matches!(percent_decode(b"/plain/path", false), Ok(Cow::Borrowed(_))));
        assert_eq!(percent_decode(b"a%20b%2Fc", false).unwrap().as_ref(), b"a b/c");
        assert_eq!(percent_decode(b"a+b", false).unwrap().as_ref(), b"a+b");
        assert_eq!(percent_decode(b"a+b", true).unwrap().as_ref(), b"a b");
        for bad in [&b"%"[..], b"%2", b"%zz", b"a%g0"] {
            assert_eq!(percent_decode(bad, false), Err(BadEscape), "{bad:?}");
        }
    }

    #[test]
    fn query_pairs() {
        let q = b"limit=20&after=5&&flag&name=A%26B+C";
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            pairs(q).map(|p| p.map(|(k, v)| (k.into_owned(), v.into_owned()))).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[2], (b"flag".to_vec(), b"".to_vec()));
        assert_eq!(get(q, "name").unwrap().unwrap().as_ref(), b"A&B C");
        assert_eq!(get(q, "limit").unwrap().unwrap().as_ref(), b"20");
        assert_eq!(get(q, "missing").unwrap(), None);
        assert_eq!(get(b"x=%zz", "x"), Err(BadEscape));
    }
}
