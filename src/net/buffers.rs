//! Per-worker pools of byte buffers for connections' reads and writes.
//!
//! A connection holds a read buffer only while a read is pending on it (a parked idle
//! connection gives its buffer back) and a write buffer only while it has responses to
//! send, so memory follows the connections that are busy, not those that are open. Buffers
//! that grew (a 1 MiB body, a long list) are freed instead of pooled, so each pool stays
//! bounded by `MAX_POOLED` buffers of at most [`KEEP_FACTOR`] times its size.

use std::cell::RefCell;

/// A request head, or a pipelined batch of small requests, fits.
pub(crate) const READ_BUFFER: usize = 2048;
/// A batch of pipelined small responses fits.
pub(crate) const WRITE_BUFFER: usize = 4096;
/// Buffers up to this many times the pool's size are pooled; bigger ones are freed.
pub(crate) const KEEP_FACTOR: usize = 4;
const MAX_POOLED: usize = 1024;

pub(crate) struct BufferPool {
    size: usize,
    free: RefCell<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A pool of buffers of at least `size` bytes.
    pub(crate) fn new(size: usize) -> BufferPool {
        BufferPool { size, free: RefCell::new(Vec::new()) }
    }

    /// Whether a buffer of `capacity` goes back to the pool rather than being freed.
    pub(crate) fn keeps(&self, capacity: usize) -> bool {
        capacity >= self.size && capacity <= self.size * KEEP_FACTOR
    }

    /// An empty buffer with at least the pool's size in capacity.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.free.borrow_mut().pop().unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Returns a buffer for reuse (or frees it, if it is too big or the pool is full).
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if self.keeps(buf.capacity()) && free.len() < MAX_POOLED {
            buf.clear();
            free.push(buf);
        }
    }

    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_big_ones_dropped() {
        let pool = BufferPool::new(READ_BUFFER);
        let mut a = pool.take();
        assert!(a.capacity() >= READ_BUFFER);
        a.extend_from_slice(b"data");
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take();
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0), "the same allocation, cleared");
        pool.give(Vec::with_capacity(1 << 20));
        assert_eq!(pool.pooled(), 0, "a grown buffer is freed, not pooled");
        pool.give(Vec::new());
        assert_eq!(pool.pooled(), 0, "an empty placeholder is not a buffer");
    }
}
