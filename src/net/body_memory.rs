//! MAX_BODY_MEMORY: one budget for the request bodies all connections hold at once.
//!
//! MAX_BODY_BYTES bounds one body; without a bound on their sum, ten thousand clients each
//! sending a body of the maximum size would ask for gigabytes, and under a pod's memory
//! limit the kernel would kill the process — every connection lost, not just the greedy
//! ones. So a connection's read buffer grows past its pooled size only by reserving the
//! growth here first; when the budget is spent, the request is answered 503 with
//! Retry-After before its body is read, and everything else keeps being served.
//!
//! The counter is shared by the workers, but only growth past the pooled buffer size
//! touches it: small requests never do.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::buffers::READ_BUFFER;

pub(crate) struct BodyMemory {
    limit: usize,
    used: AtomicUsize,
}

impl BodyMemory {
    pub(crate) fn new(limit: usize) -> BodyMemory {
        BodyMemory { limit, used: AtomicUsize::new(0) }
    }

    /// Bytes held now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        let limit = self.limit;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| u.checked_add(bytes).filter(|&n| n <= limit))
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What one connection holds of the budget: the capacity of its read buffer beyond the
/// pooled size. Given back when the buffer shrinks or the connection ends.
pub(crate) struct Share<'a> {
    budget: &'a BodyMemory,
    held: usize,
}

impl<'a> Share<'a> {
    pub(crate) fn new(budget: &'a BodyMemory) -> Share<'a> {
        Share { budget, held: 0 }
    }

    fn charge_for(capacity: usize) -> usize {
        capacity.saturating_sub(READ_BUFFER)
    }

    /// Reserves what a read buffer of `capacity` needs; false (nothing changed) when the
    /// budget cannot cover the growth.
    pub(crate) fn grow_to(&mut self, capacity: usize) -> bool {
        let want = Self::charge_for(capacity);
        if want <= self.held {
            return true;
        }
        if !self.budget.try_reserve(want - self.held) {
            return false;
        }
        self.held = want;
        true
    }

    /// Matches the share to the buffer's capacity now (after it was replaced or freed).
    pub(crate) fn settle(&mut self, capacity: usize) {
        let now = Self::charge_for(capacity);
        if now < self.held {
            self.budget.release(self.held - now);
            self.held = now;
        } else if now > self.held {
            // Growth always goes through grow_to; count it anyway rather than under-count.
            self.budget.used.fetch_add(now - self.held, Ordering::AcqRel);
            self.held = now;
        }
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_refused_past_the_limit_and_given_back() {
        let budget = BodyMemory::new(3000);
        let mut a = Share::new(&budget);
        let mut b = Share::new(&budget);
        assert!(a.grow_to(READ_BUFFER), "the pooled size costs nothing");
        assert_eq!(budget.used(), 0);
        assert!(a.grow_to(READ_BUFFER + 2000));
        assert!(!b.grow_to(READ_BUFFER + 1001), "2000 + 1001 > 3000");
        assert_eq!(budget.used(), 2000, "a refused growth reserves nothing");
        assert!(b.grow_to(READ_BUFFER + 1000));
        a.settle(READ_BUFFER);
        assert_eq!(budget.used(), 1000);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
