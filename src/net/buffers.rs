//! Per-worker pool of byte buffers for connections' reads and writes.
//!
//! A connection takes a read and a write buffer when it opens and gives them back when it
//! closes, so a worker serving many short connections allocates almost nothing. Buffers
//! that grew large (a 1 MiB body) are not kept: the pool holds only small ones, so its
//! memory stays bounded by `MAX_POOLED × BUFFER_SIZE` per worker.

use std::cell::RefCell;

/// Starting capacity: a typical request head, or a batch of pipelined small responses.
pub const BUFFER_SIZE: usize = 4096;
/// Buffers above this capacity are freed instead of pooled.
const MAX_KEPT_CAPACITY: usize = 64 * 1024;
const MAX_POOLED: usize = 1024;

#[derive(Default)]
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer with at least [`BUFFER_SIZE`] capacity.
    pub fn take(&self) -> Vec<u8> {
        self.free.borrow_mut().pop().unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE))
    }

    /// Returns a buffer for reuse.
    pub fn give(&self, mut buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if buf.capacity() <= MAX_KEPT_CAPACITY && buf.capacity() >= BUFFER_SIZE && free.len() < MAX_POOLED {
            buf.clear();
            free.push(buf);
        }
    }

    pub fn pooled(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_big_ones_dropped() {
        let pool = BufferPool::default();
        let mut a = pool.take();
        a.extend_from_slice(b"data");
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take();
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0), "the same allocation, cleared");
        pool.give(Vec::with_capacity(1 << 20));
        assert_eq!(pool.pooled(), 0, "a grown buffer is freed, not pooled");
    }
}
