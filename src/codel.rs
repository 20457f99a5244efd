//! The door's rule: CoDel's (Nichols and Jacobson), applied to admission as folly and
//! Facebook's servers apply it to request queues — judge a queue by how long its items
//! wait, not by how many wait.
//!
//! The door is told each wait as it is seen. Waits above the target for a whole interval
//! mean a standing queue: the work cannot keep up, and a new request would only wait
//! behind it and time out, its work done for nobody. While the queue stands the door
//! refuses — and a queue that can see its own length ([`Door::admits_behind`]) refuses
//! only the requests that would wait behind more than twice the target's worth of work,
//! folly's slough time, so that the store keeps working through the standing queue instead
//! of running dry before the door opens. It opens again as soon as a wait is seen within
//! the target (the queue has drained), or when its owner says the queue is empty
//! ([`Door::reopen`]), or when no wait has been seen for an interval (nothing queued at
//! all). Within [`MEMORY`] of the last standing queue, waits above the target close it
//! again at once instead of after another interval, so a sustained overload cannot rebuild
//! an interval's worth of queue on every cycle (CoDel's faster drops after a recent one).
//!
//! Two doors use it, both in front of requests that work on the store (in-core routes pass
//! neither): the store's job queue, judged by how long jobs wait for a pool thread
//! (db/pool.rs), and, with ADMISSION_LOOP_LAG=on, each worker's event loop, judged by how
//! late its timer fires (net/lag.rs) — past its cores' capacity a worker's requests wait in
//! socket buffers, where no queue of percore's own can see them, and the loop's lateness is
//! that wait.
//!
//! Settings: ADMISSION_TARGET (5 ms) and ADMISSION_INTERVAL (100 ms), folly's pair. The
//! state is a few relaxed atomics: the pool threads write the store's door, the workers read
//! it with one load per request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::AdmissionConfig;

/// After a standing queue, this long during which late waits refuse again at once.
pub(crate) const MEMORY: Duration = Duration::from_secs(1);

const MEMORY_NS: u64 = MEMORY.as_nanos() as u64;

/// A door's state (times in `clock::now_ns`). The workers read `refusing` on every request
/// for the store; the pool threads write the [`Takes`] on every job they take. The two sit
/// in separate cache lines, and `refusing` is written only when it changes, so a worker's
/// read is not a miss each time a job is taken.
#[repr(align(128))]
pub(crate) struct Door {
    /// Refusing new database requests.
    refusing: AtomicBool,
    /// ADMISSION_TARGET=off: the door never refuses.
    enabled: bool,
    /// Jobs the queue drains within the slough time (twice the target: folly's slough
    /// timeout) at the last window's service rate. See [`Door::admits_behind`].
    drains_in_slough: AtomicU64,
    /// A wait longer than this is late (ADMISSION_TARGET).
    target_ns: u64,
    /// Late waits for this long make a standing queue (ADMISSION_INTERVAL).
    interval_ns: u64,
    /// When the last standing queue ended.
    last_standing: AtomicU64,
    takes: Takes,
}

/// What the pool threads write as they take jobs (its own cache line; 128 bytes: the
/// adjacent-line prefetcher pairs lines).
#[repr(align(128))]
#[derive(Default)]
struct Takes {
    /// Since when every wait seen was late; 0: the last one was on time.
    late_since: AtomicU64,
    /// When a wait was last seen.
    last_take: AtomicU64,
    /// Waits seen so far: each is one job taken, so their rate is the queue's service rate.
    taken: AtomicU64,
    /// When the current rate window began, and `taken` then.
    window_start: AtomicU64,
    window_taken: AtomicU64,
}

impl Door {
    pub(crate) fn new(config: Option<AdmissionConfig>) -> Door {
        let nanos = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        Door {
            refusing: AtomicBool::new(false),
            enabled: config.is_some(),
            drains_in_slough: AtomicU64::new(0),
            target_ns: config.map_or(u64::MAX, |c| nanos(c.target)),
            interval_ns: config.map_or(u64::MAX, |c| nanos(c.interval)),
            last_standing: AtomicU64::new(0),
            takes: Takes::default(),
        }
    }

    /// Whether this door ever refuses (its admission settings were given).
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// A wait of `wait_ns` was seen at `now`.
    pub(crate) fn observe(&self, wait_ns: u64, now: u64) {
        if !self.enabled {
            return;
        }
        let previous = self.takes.last_take.swap(now, Ordering::Relaxed);
        self.measure_rate(now);
        if now.saturating_sub(wait_ns).saturating_sub(previous) >= self.interval_ns {
            // This wait began an interval or more after the last one was seen: for that
            // interval nothing was seen and nothing waited, so whatever stood then has
            // drained, and it ended when its last wait was seen. Without this, the first late
            // wait after a quiet spell would count as the same standing queue, however long
            // ago that was. (A long wait is no quiet spell: a loop late by more than an
            // interval sees its lateness that far apart.)
            self.reopen(previous);
        }
        if wait_ns < self.target_ns {
            self.reopen(now);
            return;
        }
        let since = match self.takes.late_since.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => now,
            Err(since) => since,
        };
        let last = self.last_standing.load(Ordering::Relaxed);
        let recently = last != 0 && now.saturating_sub(last) < MEMORY_NS;
        if (now.saturating_sub(since) >= self.interval_ns || recently) && !self.refusing.load(Ordering::Relaxed) {
            self.refusing.store(true, Ordering::Relaxed);
        }
    }

    /// Counts one job taken, and once an interval turns the count into how many jobs the
    /// queue drains within the slough time. One thread wins each window's update; a take
    /// counted just after its window closed goes into the next.
    fn measure_rate(&self, now: u64) {
        let taken = self.takes.taken.fetch_add(1, Ordering::Relaxed) + 1;
        let start = self.takes.window_start.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(start);
        if elapsed < self.interval_ns
            || self.takes.window_start.compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let jobs = taken - self.takes.window_taken.swap(taken, Ordering::Relaxed).min(taken);
        let slough = 2 * self.target_ns as u128;
        let drains = (jobs as u128 * slough / elapsed.max(1) as u128).min(u64::MAX as u128) as u64;
        self.drains_in_slough.store(drains, Ordering::Relaxed);
    }

    /// While the queue stands, whether a request may still come in behind `depth` queued
    /// jobs: yes if they drain within the slough time at the rate the queue is served.
    /// Refusing everything while the queue stands would let the store run dry before the
    /// door reopens, and the clients that are refused mostly send again at once: the store
    /// would lose work and no one would wait less. So only the requests that would wait
    /// past the slough time are refused — the ones that cannot be answered in time.
    #[inline]
    pub(crate) fn admits_behind(&self, depth: usize) -> bool {
        (depth as u64) < self.drains_in_slough.load(Ordering::Relaxed)
    }

    /// Whether a new request may come in now.
    #[inline]
    pub(crate) fn admits(&self) -> bool {
        !self.refusing.load(Ordering::Relaxed) || self.idle_since_last_take(crate::clock::now_ns())
    }

    /// The queue no longer stands (a wait on time, a quiet spell, or its owner sees it
    /// empty: without that last, a door that refuses everything would keep the store idle
    /// until an interval without waits had passed). If the door was refusing, that standing
    /// queue ended at `ended`. `refusing` is read first: most takes find the door open, and
    /// a write would cost every worker's next read a cache miss.
    pub(crate) fn reopen(&self, ended: u64) {
        if self.takes.late_since.load(Ordering::Relaxed) != 0 {
            self.takes.late_since.store(0, Ordering::Relaxed);
        }
        if self.refusing.load(Ordering::Relaxed) && self.refusing.swap(false, Ordering::Relaxed) {
            self.last_standing.store(ended, Ordering::Relaxed);
        }
    }

    /// Nothing taken for an interval: nothing is queued, whatever the last wait said.
    fn idle_since_last_take(&self, now: u64) -> bool {
        now.saturating_sub(self.takes.last_take.load(Ordering::Relaxed)) >= self.interval_ns
    }

    #[cfg(test)]
    fn admits_at(&self, now: u64) -> bool {
        !self.refusing.load(Ordering::Relaxed) || self.idle_since_last_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// The defaults: 5 ms, 100 ms.
    fn door() -> Door {
        Door::new(Some(AdmissionConfig { target: Duration::from_millis(5), interval: Duration::from_millis(100) }))
    }

    #[test]
    fn a_burst_is_absorbed_and_a_standing_queue_refuses() {
        let a = door();
        let t0 = 10_000 * MS;
        // Late waits for less than an interval: a burst, let in.
        for i in 0..9 {
            a.observe(20 * MS, t0 + i * 10 * MS);
        }
        assert!(a.admits_at(t0 + 90 * MS));
        // Late for a whole interval: a standing queue.
        a.observe(20 * MS, t0 + 100 * MS);
        assert!(!a.admits_at(t0 + 101 * MS));
        // A job taken on time: drained, the door opens.
        a.observe(MS, t0 + 150 * MS);
        assert!(a.admits_at(t0 + 151 * MS));
        // Soon after, a late wait refuses at once.
        a.observe(6 * MS, t0 + 200 * MS);
        assert!(!a.admits_at(t0 + 201 * MS));
    }

    #[test]
    fn an_idle_pool_lets_everything_in() {
        let a = door();
        let t0 = 10_000 * MS;
        for i in 0..=10 {
            a.observe(50 * MS, t0 + i * 10 * MS);
        }
        assert!(!a.admits_at(t0 + 100 * MS));
        assert!(a.admits_at(t0 + 200 * MS + 1), "nothing taken for an interval: nothing queued");
    }

    #[test]
    fn long_after_an_overload_a_late_burst_is_absorbed_again() {
        let a = door();
        let t0 = 10_000 * MS;
        for i in 0..=10 {
            a.observe(50 * MS, t0 + i * 10 * MS);
        }
        a.observe(MS, t0 + 120 * MS);
        let later = t0 + 120 * MS + MEMORY_NS + MS;
        a.observe(20 * MS, later);
        assert!(a.admits_at(later + MS), "the memory of the last standing queue has faded");
    }

    #[test]
    fn an_empty_queue_reopens_the_door_and_a_late_wait_soon_after_closes_it() {
        let a = door();
        let t0 = 10_000 * MS;
        for i in 0..=10 {
            a.observe(50 * MS, t0 + i * 10 * MS);
        }
        assert!(!a.admits_at(t0 + 101 * MS));
        a.reopen(t0 + 110 * MS);
        assert!(a.admits_at(t0 + 111 * MS));
        a.observe(30 * MS, t0 + 120 * MS);
        assert!(!a.admits_at(t0 + 121 * MS), "within MEMORY of a standing queue");
    }

    #[test]
    fn after_a_quiet_spell_a_late_wait_starts_a_new_interval() {
        let a = door();
        let t0 = 10_000 * MS;
        for i in 0..=10 {
            a.observe(50 * MS, t0 + i * 10 * MS);
        }
        assert!(!a.admits_at(t0 + 101 * MS));
        // Nothing seen for longer than MEMORY: the late wait that comes next is a burst's
        // first, not the old standing queue's.
        let later = t0 + 100 * MS + MEMORY_NS + MS;
        a.observe(50 * MS, later);
        assert!(a.admits_at(later + MS), "a quiet spell ended the standing queue");
        for i in 1..=10 {
            a.observe(50 * MS, later + i * 10 * MS);
        }
        assert!(!a.admits_at(later + 101 * MS), "late for a whole interval again: it stands");
        // A quiet spell of an interval, within MEMORY of that queue: a late wait refuses at once.
        let soon = later + 300 * MS;
        a.observe(50 * MS, soon);
        assert!(!a.admits_at(soon + MS), "within MEMORY of the queue that stood");
    }

    #[test]
    fn while_it_stands_requests_come_in_behind_what_drains_within_twice_the_target() {
        let a = door();
        let t0 = 10_000 * MS;
        // Ten jobs taken a millisecond, every one late: the queue stands.
        for i in 0..=2000 {
            a.observe(20 * MS, t0 + i * MS / 10);
        }
        assert!(!a.admits_at(t0 + 201 * MS));
        // At 10,000 jobs a second, 100 drain within the slough time (2 x 5 ms).
        assert!(a.admits_behind(99));
        assert!(!a.admits_behind(100));
        // Served twice as fast, the queue may hold twice as many.
        for i in 1..=2000 {
            a.observe(20 * MS, t0 + 200 * MS + i * MS / 20);
        }
        assert!(a.admits_behind(199));
        assert!(!a.admits_behind(200));
    }

    #[test]
    fn before_any_rate_is_known_a_standing_queue_admits_no_one_behind_it() {
        let a = door();
        let t0 = 10_000 * MS;
        for i in 0..=10 {
            a.observe(50 * MS, t0 + i * 10 * MS);
        }
        assert!(!a.admits_at(t0 + 101 * MS));
        assert!(!a.admits_behind(1));
    }

    #[test]
    fn switched_off_it_never_refuses() {
        let a = Door::new(None);
        let t0 = 10_000 * MS;
        for i in 0..=100 {
            a.observe(500 * MS, t0 + i * 10 * MS);
        }
        assert!(a.admits_at(t0 + 1000 * MS));
    }
}
