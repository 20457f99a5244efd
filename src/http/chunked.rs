//! The chunked transfer coding (RFC 9112 §7.1), decoded in place and incrementally.
//!
//! The connection's read buffer holds `[head][chunk-size CRLF data CRLF …]`. Each call
//! decodes only the bytes that arrived since the last one, moving chunk data down over the
//! framing, so a body that trickles in a byte at a time costs linear work, not quadratic,
//! and the decoded body ends up contiguous in the same buffer — ready for simd-json, which
//! parses in place — without a second allocation.
//!
//! Strict where leniency smuggles: sizes are 1–16 hex digits, every line ends in CRLF,
//! extensions are skipped but bounded and free of control bytes, trailers are bounded.

/// Where decoding stands. Indices are relative to the start of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Next raw (still encoded) byte to look at.
    raw: usize,
    /// End of the decoded body so far; `body_start..out` is the body.
    out: usize,
    /// Bytes of body decoded so far, for the size limit.
    total: u64,
    /// Bytes of the current size line or trailer section, for their limits.
    line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size.
    Size {
        digits: u8,
        value: u64,
    },
    /// After the digits: optional whitespace, then `;` or CR.
    SizeWs {
        value: u64,
    },
    /// In a chunk extension, until CR.
    Ext {
        value: u64,
    },
    /// Saw CR of the size line, want LF.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkedError {
    /// Malformed framing: the message says where.
    Invalid(&'static str),
    /// The decoded body outgrew the limit.
    TooLarge,
    /// The trailer section outgrew the header limit.
    TrailersTooLarge,
}

/// Longest chunk-size line we accept, extensions included.
const MAX_SIZE_LINE: usize = 4096;

impl ChunkedDecoder {
    /// A decoder for a body starting at `body_start` of the request's bytes.
    pub(crate) fn new(body_start: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0, value: 0 },
            raw: body_start,
            out: body_start,
            total: 0,
            line: 0,
        }
    }

    /// Decodes what `buf` holds beyond the last call. Returns `Some((body_end, consumed))`
    /// once the last chunk and trailers are in: the body is `body_start..body_end` and the
    /// request ends at `consumed`. `None` means more bytes are needed.
    pub(crate) fn decode(
        &mut self,
        buf: &mut [u8],
        max_body: u64,
        max_trailers: usize,
    ) -> Result<Option<(usize, usize)>, ChunkedError> {
        use ChunkedError::Invalid;
        while self.raw < buf.len() {
            if let State::Data { remaining } = self.state {
                let n = remaining.min((buf.len() - self.raw) as u64) as usize;
                buf.copy_within(self.raw..self.raw + n, self.out);
                self.raw += n;
                self.out += n;
                self.state =
                    if remaining == n as u64 { State::DataCr } else { State::Data { remaining: remaining - n as u64 } };
                continue;
            }
            let b = buf[self.raw];
            self.raw += 1;
            self.state = match self.state {
                State::Size { digits, value } => match hex(b) {
                    Some(d) if digits < 16 => State::Size { digits: digits + 1, value: value << 4 | d },
                    Some(_) => return Err(Invalid("chunk size too large")),
                    None if digits == 0 => return Err(Invalid("invalid chunk size")),
                    None => match b {
                        b'\r' => State::SizeLf { value },
                        b';' => State::Ext { value },
                        b' ' | b'\t' => State::SizeWs { value },
                        _ => return Err(Invalid("invalid chunk size")),
                    },
                },
                State::SizeWs { value } => match b {
                    b' ' | b'\t' => State::SizeWs { value },
                    b';' => State::Ext { value },
                    _ => return Err(Invalid("invalid chunk size")),
                },
                State::Ext { value } => match b {
                    b'\r' => State::SizeLf { value },
                    b'\t' => State::Ext { value },
                    0..=31 | 127 => return Err(Invalid("control byte in chunk extension")),
                    _ => State::Ext { value },
                },
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(Invalid("chunk size line must end in CRLF"));
                    }
                    self.line = 0;
                    if value == 0 {
                        State::TrailerStart
                    } else {
                        self.total = self.total.checked_add(value).ok_or(ChunkedError::TooLarge)?;
                        if self.total > max_body {
                            return Err(ChunkedError::TooLarge);
                        }
                        State::Data { remaining: value }
                    }
                }
                State::Data { .. } => unreachable!("handled above"),
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size { digits: 0, value: 0 },
                State::DataCr | State::DataLf => return Err(Invalid("chunk data must end in CRLF")),
                State::TrailerStart => match b {
                    b'\r' => State::EndLf,
                    _ => State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(Invalid("trailer line must end in CRLF")),
                    _ => State::TrailerLine,
                },
                State::TrailerLf if b == b'\n' => State::TrailerStart,
                State::TrailerLf => return Err(Invalid("trailer line must end in CRLF")),
                State::EndLf if b == b'\n' => State::Done,
                State::EndLf => return Err(Invalid("chunked body must end in CRLF")),
                State::Done => unreachable!("decode stops at Done"),
            };
            match self.state {
                State::Done => return Ok(Some((self.out, self.raw))),
                State::Size { .. } | State::SizeWs { .. } | State::Ext { .. } | State::SizeLf { .. } => {
                    self.line += 1;
                    if self.line > MAX_SIZE_LINE {
                        return Err(Invalid("chunk size line too long"));
                    }
                }
                State::TrailerStart | State::TrailerLine | State::TrailerLf | State::EndLf => {
                    self.line += 1;
                    if self.line > max_trailers {
                        return Err(ChunkedError::TrailersTooLarge);
                    }
                }
                _ => self.line = 0,
            }
        }
        Ok(None)
    }
}

impl ChunkedDecoder {
    /// Drops the already-decoded framing between the body and the bytes not yet decoded;
    /// returns the new length of `buf`'s meaningful part.
    pub(crate) fn reclaim(&mut self, buf: &mut [u8]) -> usize {
        let gap = self.raw - self.out;
        if gap > 0 {
            buf.copy_within(self.raw.., self.out);
            self.raw = self.out;
        }
        buf.len() - gap
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u64),
        b'a'..=b'f' => Some((b - b'a' + 10) as u64),
        b'A'..=b'F' => Some((b - b'A' + 10) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(raw: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ChunkedError> {
        let mut buf = raw.to_vec();
        let mut d = ChunkedDecoder::new(0);
        Ok(d.decode(&mut buf, 1 << 20, 1024)?.map(|(end, used)| (buf[..end].to_vec(), used)))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let (body, used) =
            decode_all(b"5\r\nhello\r\n6;name=val\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT").unwrap().unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(used, 43);
        let (body, _) = decode_all(b"A \t;ext\r\n0123456789\r\n0\r\n\r\n").unwrap().unwrap();
        assert_eq!(body, b"0123456789");
        assert_eq!(decode_all(b"0\r\n\r\n").unwrap().unwrap().0, b"");
    }

    #[test]
    fn needs_more_until_the_last_crlf() {
        for raw in [&b"5\r\nhel"[..], b"5\r\nhello\r\n", b"5\r\nhello\r\n0\r\n", b"0\r\n\r"] {
            assert_eq!(decode_all(raw), Ok(None), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn refuses_malformed_framing() {
        let bad: &[&[u8]] = &[
            b"\r\n",
            b"g\r\n",
            b"-1\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5 5\r\nhello\r\n",
            b"5;a\x01b\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n\rX",
            b"1ffffffffffffffff\r\n",
        ];
        for raw in bad {
            assert!(matches!(decode_all(raw), Err(ChunkedError::Invalid(_))), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn limits() {
        let mut buf = b"ffffffffffffffff\r\n".to_vec();
        assert_eq!(ChunkedDecoder::new(0).decode(&mut buf, 1 << 20, 1024), Err(ChunkedError::TooLarge));
        let mut buf = b"5\r\nhello\r\n5\r\nhello\r\n".to_vec();
        assert_eq!(ChunkedDecoder::new(0).decode(&mut buf, 9, 1024), Err(ChunkedError::TooLarge));
        let mut buf = format!("0\r\nX: {}\r\n\r\n", "a".repeat(100)).into_bytes();
        assert_eq!(ChunkedDecoder::new(0).decode(&mut buf, 100, 64), Err(ChunkedError::TrailersTooLarge));
        let mut buf = format!("1;{}\r\n", "e".repeat(5000)).into_bytes();
        assert!(matches!(ChunkedDecoder::new(0).decode(&mut buf, 100, 64), Err(ChunkedError::Invalid(_))));
    }

    #[test]
    fn reclaiming_keeps_the_body_and_the_pending_bytes() {
        let mut buf = b"HEAD1\r\na\r\n1\r\nb\r\n1\r\nc".to_vec();
        let mut d = ChunkedDecoder::new(4);
        assert_eq!(d.decode(&mut buf, 100, 100), Ok(None));
        let len = d.reclaim(&mut buf);
        buf.truncate(len);
        assert_eq!(&buf[..4], b"HEAD");
        buf.extend_from_slice(b"\r\n0\r\n\r\nNEXT");
        let (end, used) = d.decode(&mut buf, 100, 100).unwrap().unwrap();
        assert_eq!(&buf[4..end], b"abc");
        assert_eq!(&buf[used..], b"NEXT");
    }

    #[test]
    fn byte_at_a_time_gives_the_same_body() {
        let raw = b"3\r\nabc\r\n2;x\r\nde\r\n0\r\nT: v\r\n\r\n";
        let mut buf = Vec::new();
        let mut d = ChunkedDecoder::new(0);
        let mut result = None;
        for &b in raw {
            buf.push(b);
            assert!(result.is_none());
            result = d.decode(&mut buf, 100, 100).unwrap();
        }
        let (end, used) = result.unwrap();
        assert_eq!(&buf[..end], b"abcde");
        assert_eq!(used, raw.len());
    }
}
