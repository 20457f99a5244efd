//! Request ids: the client's own `X-Request-Id` when it is sane, else one made here.
//!
//! A generated id is 16 characters of base64url carrying 96 bits: 48 random to this
//! process (from getrandom, so unique across restarts and replicas), 12 for the worker and
//! 36 for the worker's request counter — unique across workers without any shared counter,
//! formatted without allocating, and short, because every response carries it.

use std::cell::Cell;

/// Longest client-supplied id accepted; longer ones are replaced.
pub(crate) const MAX_LEN: usize = 128;
/// A generated id's length: the response head copies ids of this size as a constant.
pub(crate) const GENERATED_LEN: usize = crate::http::response::GENERATED_ID_LEN;
/// Characters before the counter: the process's random part and the worker.
const PREFIX_LEN: usize = 10;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Whether a client's `X-Request-Id` can be echoed: 1–128 visible ASCII characters.
pub(crate) fn is_valid(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// One worker's id generator.
pub(crate) struct Generator {
    prefix: [u8; PREFIX_LEN],
    counter: Cell<u64>,
}

impl Generator {
    /// `process` is this process's random part (see [`process_random`]).
    pub(crate) fn new(process: u64, worker: usize) -> Generator {
        let mut prefix = [0u8; PREFIX_LEN];
        encode(&mut prefix[..8], process);
        encode(&mut prefix[8..], worker as u64);
        Generator { prefix, counter: Cell::new(0) }
    }

    /// The next id.
    pub(crate) fn next(&self) -> [u8; GENERATED_LEN] {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        let mut id = [0u8; GENERATED_LEN];
        id[..PREFIX_LEN].copy_from_slice(&self.prefix);
        encode(&mut id[PREFIX_LEN..], n);
        id
    }
}

/// The low 6 × `out.len()` bits of `n`, most significant first.
fn encode(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = ALPHABET[(n & 63) as usize];
        n >>= 6;
    }
}

/// 64 random bits for this process, from the kernel.
pub(crate) fn process_random() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into our buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // No entropy source: time and pid still separate restarts.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        return nanos ^ ((std::process::id() as u64) << 40);
    }
    u64::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn validation() {
        assert!(is_valid(b"abc-123_XYZ.{}"));
        assert!(is_valid(&[b'a'; 128]));
        assert!(!is_valid(&[b'a'; 129]));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid(b"tab\there"));
        assert!(!is_valid("é".as_bytes()));
    }

    #[test]
    fn generated_ids_are_unique_across_workers_and_processes() {
        let mut seen = HashSet::new();
        for process in [process_random(), process_random()] {
            for worker in 0..4 {
                let g = Generator::new(process, worker);
                for _ in 0..1000 {
                    let id = g.next();
                    assert!(is_valid(&id));
                    assert!(seen.insert(id), "duplicate {}", String::from_utf8_lossy(&id));
                }
            }
        }
        assert_eq!(&Generator::new(0xabc, 3).next(), b"AAAAAAq8ADAAAAAB");
    }
}
