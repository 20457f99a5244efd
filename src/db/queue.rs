//! ⑥→⑦ The job queue between the workers and the pool threads: the bounded crossbeam
//! channel, with the waking done here instead of by the channel.
//!
//! Why by hand: a blocking `recv` on the channel spins, then gives up the CPU with
//! `sched_yield` up to four times (crossbeam's backoff), then parks; and every send to a
//! channel with a parked receiver unparks one. Measured on two cores at 12k /db requests a
//! second (perf trace), that was 1.3 `sched_yield` and 3.1 context switches per request on
//! the pool threads, and a burst of jobs woke as many threads as it had jobs, each to run
//! one. Here the receivers never block on the channel:
//!
//! - A pool thread with nothing left to run looks once more, then parks. It does not spin:
//!   a spin of 5, 20 or 60 µs before parking cost more CPU than the wakes it saved, at 12k
//!   and 24k requests a second alike (perf/README.md, 2026-12-06), since on two cores the
//!   spinning thread takes the CPU a worker or a Postgres backend wanted.
//! - Threads that are looking (woken and not yet looked, or about to park) are counted. A
//!   submit wakes a parked thread only when nobody is looking, or when [`BACKLOG_PER_LOOKER`]
//!   jobs per looking thread have queued (a woken thread may wait milliseconds for a CPU),
//!   so a burst costs one wake, and the woken thread takes its share of it.
//! - While other threads sleep, a pipeline takes only its share of what is queued
//!   ([`JobQueue::share`]) and wakes the next for the rest: Postgres runs one connection's
//!   statements in order, so a burst on one connection would use one core.
//! - A thread that takes jobs and leaves more queued, with nobody looking, wakes the next
//!   one: the work spreads over as many threads as it needs, no more. Measured with
//!   perf/openloop.py (perf/README.md, 2026-12-06): without the share and the backlog rule,
//!   /db's p99 at 90% of capacity went from 25 to 81 ms.
//!
//! Nothing is lost between a submit and a thread going to sleep: the thread counts itself
//! parked, then checks the queue once more; the submitter queues, then reads the counts.
//! With a SeqCst fence on each side (Dekker's pattern), at least one of them sees the other.

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::mailbox::Envelope;

/// Jobs queued per looking thread beyond which a submit wakes another anyway: a woken
/// thread may wait for a CPU for milliseconds (SCHED_BATCH on busy cores), and the queue
/// must not wait with it.
const BACKLOG_PER_LOOKER: usize = 4;

pub(crate) struct JobQueue {
    tx: Sender<Envelope>,
    rx: Receiver<Envelope>,
    /// Pool threads parked for want of a job; the last one parked is woken first (its
    /// caches are the warmest).
    parked: Mutex<Vec<Thread>>,
    /// `parked.len()`, read without the lock.
    sleeping: AtomicUsize,
    /// Threads awake that will look at the queue before they sleep or run anything:
    /// woken for a job and not yet there, or on their way to park.
    looking: AtomicUsize,
    /// Parked threads woken for a job (`db_pool_wakeups_total`).
    wakes: AtomicUsize,
}

impl JobQueue {
    pub(crate) fn bounded(depth: usize) -> JobQueue {
        let (tx, rx) = crossbeam_channel::bounded(depth);
        JobQueue {
            tx,
            rx,
            parked: Mutex::new(Vec::new()),
            sleeping: AtomicUsize::new(0),
            looking: AtomicUsize::new(0),
            wakes: AtomicUsize::new(0),
        }
    }

    /// Worker side: queues a job (never waits for room), then wakes a parked pool thread
    /// if nobody is looking.
    pub(crate) fn submit(&self, envelope: Envelope) -> Result<(), TrySendError<Envelope>> {
        self.tx.try_send(envelope)?;
        self.wake_if_unwatched();
        Ok(())
    }

    /// Wakes one parked thread if jobs are queued and no thread is looking for them.
    fn wake_if_unwatched(&self) {
        fence(Ordering::SeqCst);
        let looking = self.looking.load(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) == 0 || (looking > 0 && self.rx.len() < BACKLOG_PER_LOOKER * looking) {
            return;
        }
        let woken = {
            let mut parked = self.lock();
            let woken = parked.pop();
            if woken.is_some() {
                // Counted as looking on its behalf before it runs, so the rest of a burst
                // does not wake another.
                self.looking.fetch_add(1, Ordering::SeqCst);
                self.sleeping.fetch_sub(1, Ordering::SeqCst);
            }
            woken
        };
        if let Some(thread) = woken {
            self.wakes.fetch_add(1, Ordering::Relaxed);
            thread.unpark();
        }
    }

    /// Jobs waiting for a pool thread.
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }

    /// Parked threads woken for a job so far.
    pub(crate) fn wakes(&self) -> usize {
        self.wakes.load(Ordering::Relaxed)
    }

    /// Pool side, inside a pipeline: a job if one is queued now, never waiting.
    pub(crate) fn try_take(&self) -> Option<Envelope> {
        self.rx.try_recv().ok()
    }

    /// Pool side: how many of the queued jobs a pipeline with `room` should take now. While
    /// other threads sleep, only its share: Postgres runs one connection's statements one
    /// after another, so a burst taken whole by one thread runs on one backend (one core)
    /// while the others idle.
    pub(crate) fn share(&self, room: usize) -> usize {
        let sleeping = self.sleeping.load(Ordering::Relaxed);
        if room == 0 || sleeping == 0 {
            return room;
        }
        room.min(self.rx.len().div_ceil(sleeping + 1).max(1))
    }

    /// Pool side: a pipeline took what it had room for; if jobs are still queued and
    /// nobody is looking, another thread is woken for them.
    pub(crate) fn spread(&self) {
        if !self.rx.is_empty() {
            self.wake_if_unwatched();
        }
    }

    /// Pool side: the next job, parking until one is submitted; `None` when `idle` passed
    /// first (the thread's idle turn: a ping, a reconnect). The caller is counted as
    /// looking from here until it returns; once it has taken what it will run, it calls
    /// [`JobQueue::spread`].
    pub(crate) fn wait(&self, idle: Duration) -> Option<Envelope> {
        self.looking.fetch_add(1, Ordering::SeqCst);
        let found = self.look(idle);
        self.looking.fetch_sub(1, Ordering::SeqCst);
        found
    }

    /// Looks, then parks, while counted as looking; `None` when `idle` passed first.
    fn look(&self, idle: Duration) -> Option<Envelope> {
        if let Ok(envelope) = self.rx.try_recv() {
            return Some(envelope);
        }
        let until = Instant::now() + idle;
        loop {
            if let Some(envelope) = self.park_until(until) {
                return Some(envelope);
            }
            if Instant::now() >= until {
                return None;
            }
        }
    }

    /// Parks once (a spurious wake-up returns too); `Some` if a job was there on waking or
    /// just before parking. Counted as looking on return, as on entry.
    fn park_until(&self, until: Instant) -> Option<Envelope> {
        let me = std::thread::current();
        {
            let mut parked = self.lock();
            parked.push(me.clone());
            self.sleeping.fetch_add(1, Ordering::SeqCst);
            self.looking.fetch_sub(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        if self.rx.is_empty() {
            std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
        }
        {
            let mut parked = self.lock();
            if let Some(at) = parked.iter().position(|t| t.id() == me.id()) {
                // Not woken by a submit (a timeout, a spurious wake-up, or a job seen
                // before parking): counted as looking again by itself.
                // `remove`, not `swap_remove`: the list stays in parking order.
                parked.remove(at);
                self.sleeping.fetch_sub(1, Ordering::SeqCst);
                self.looking.fetch_add(1, Ordering::SeqCst);
            }
            // Otherwise a submit took it off the list and counted it as looking.
        }
        self.rx.try_recv().ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Thread>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::jobs::Job;
    use std::sync::Arc;

    fn envelope(slot: u32) -> Envelope {
        Envelope {
            worker: 0,
            slot,
            generation: 0,
            job: Job::GetUser { id: slot as i64 },
            queued_ns: 0,
            deadline_ns: 0,
            client: -1,
        }
    }

    fn wait_parked(q: &JobQueue, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while q.sleeping.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "threads did not park");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let q = JobQueue::bounded(2);
        assert!(q.submit(envelope(0)).is_ok());
        assert!(q.submit(envelope(1)).is_ok());
        assert!(matches!(q.submit(envelope(2)), Err(TrySendError::Full(_))));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn an_idle_wait_times_out_and_leaves_the_counts_as_they_were() {
        let q = JobQueue::bounded(4);
        assert!(q.wait(Duration::from_millis(5)).is_none());
        assert_eq!(q.looking.load(Ordering::SeqCst), 0);
        assert_eq!(q.sleeping.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_burst_wakes_one_parked_thread_and_a_thread_that_leaves_jobs_behind_wakes_the_next() {
        let q = JobQueue::bounded(64);
        // Three threads as the queue sees parked ones (these wait on something else, so an
        // unpark reaches them harmlessly).
        let gate = Arc::new(std::sync::Barrier::new(4));
        let parked: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                std::thread::spawn(move || {
                    gate.wait();
                })
            })
            .collect();
        for t in &parked {
            q.lock().push(t.thread().clone());
            q.sleeping.fetch_add(1, Ordering::SeqCst);
        }
        for slot in 0..3 {
            q.submit(envelope(slot)).unwrap();
        }
        assert_eq!(q.wakes(), 1, "one wake for a burst of three");
        assert_eq!(q.looking.load(Ordering::SeqCst), 1, "the woken thread counts as looking");
        assert_eq!(q.sleeping.load(Ordering::SeqCst), 2);
        // The woken thread has not run yet (no CPU free): a backlog of BACKLOG_PER_LOOKER
        // wakes another rather than waiting with it.
        q.submit(envelope(3)).unwrap();
        assert_eq!(q.wakes(), 2, "a standing backlog wakes a second thread");
        // Both woken threads take a job each and leave two: nobody is looking any more, so
        // the jobs left behind wake the last thread.
        q.looking.fetch_sub(2, Ordering::SeqCst);
        q.try_take().unwrap();
        q.try_take().unwrap();
        q.spread();
        assert_eq!(q.wakes(), 3, "the jobs left behind wake the next thread");
        q.looking.fetch_sub(1, Ordering::SeqCst);
        while q.try_take().is_some() {}
        q.spread();
        assert_eq!(q.wakes(), 3, "an empty queue wakes nobody");
        gate.wait();
        parked.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn pool_threads_take_every_job_of_a_burst_and_stop_when_idle() {
        let q = Arc::new(JobQueue::bounded(64));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (q, taken) = (q.clone(), taken.clone());
                std::thread::spawn(move || {
                    while let Some(e) = q.wait(Duration::from_millis(300)) {
                        q.spread();
                        taken.lock().unwrap().push(e.slot);
                    }
                })
            })
            .collect();
        wait_parked(&q, 3);
        for slot in 0..10 {
            q.submit(envelope(slot)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while taken.lock().unwrap().len() < 10 {
            assert!(Instant::now() < deadline, "jobs were lost: {:?}", taken.lock().unwrap());
            std::thread::sleep(Duration::from_millis(1));
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        let mut got = taken.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_job_submitted_while_a_thread_is_on_its_way_to_park_is_taken_without_a_wake() {
        // The pool thread has looked and found nothing, and is still counted as looking;
        // a submit now wakes nobody. The thread must then see the job before it sleeps.
        let q = JobQueue::bounded(4);
        q.looking.fetch_add(1, Ordering::SeqCst);
        q.submit(envelope(7)).unwrap();
        assert_eq!(q.wakes(), 0);
        let started = Instant::now();
        let got = q.park_until(started + Duration::from_secs(5));
        assert_eq!(got.map(|e| e.slot), Some(7));
        assert!(started.elapsed() < Duration::from_secs(2), "slept {:?} with a job queued", started.elapsed());
        assert_eq!(q.looking.load(Ordering::SeqCst), 1, "counted as looking again on return");
        assert_eq!(q.sleeping.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn no_job_is_lost_between_a_submit_and_a_thread_parking() {
        // Many rounds of a job submitted just as the only pool thread goes to sleep: every
        // job is taken well before the thread's idle timeout would have found it.
        let q = Arc::new(JobQueue::bounded(8));
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || loop {
                match q.wait(Duration::from_secs(30)) {
                    Some(e) if e.slot == u32::MAX => return,
                    Some(e) => done_tx.send(e.slot).unwrap(),
                    None => {}
                }
            })
        };
        for round in 0..2000u32 {
            // Vary the moment of the submit around the end of the thread's look.
            let pause = Duration::from_micros(u64::from(round % 40));
            std::thread::sleep(pause);
            q.submit(envelope(round)).unwrap();
            let got = done_rx.recv_timeout(Duration::from_secs(5)).expect("a job was left in the queue");
            assert_eq!(got, round);
        }
        q.submit(envelope(u32::MAX)).unwrap();
        consumer.join().unwrap();
    }
}
