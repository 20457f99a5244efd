//! ⑦ How a pool thread runs statements on its Postgres connection: the statements' future
//! and the connection's I/O polled in one task on the thread's current-thread runtime, as
//! the `postgres` crate does, so no task of its own is scheduled and woken for every
//! message.
//!
//! The two halves wake each other through channels: a statement hands the connection its
//! messages, the connection hands the statement its rows. Both happen while this task is
//! being polled, so such a wake-up needs nothing but another look in the same poll. Left to
//! the runtime, each one is a turn of its loop, and a turn looks at the driver first: an
//! epoll_wait with no timeout, about one for every statement (strace of a pool thread), and
//! the reply delayed by as much. So the halves are polled with a [`Turn`] waker, which
//! turns a wake-up during the poll into another round, and passes any other (the socket,
//! a timer) to the task.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Rounds in one poll at most: each round polls both halves. A half that keeps waking
/// itself (tokio's budget spent) then goes back to the runtime, which refills the budget.
const ROUNDS: usize = 8;

/// Runs `work` (statements on a connection's client) to completion, driving the
/// connection's I/O (`io`, a `tokio_postgres::Connection`) in the same task. A connection
/// that ends is dropped, so each statement still waiting fails as closed and `work`
/// finishes.
pub(crate) fn drive<T, E: std::fmt::Display>(
    runtime: &tokio::runtime::Runtime,
    io: &mut Option<impl Future<Output = Result<(), E>> + Unpin>,
    work: impl Future<Output = T>,
) -> T {
    let mut work = pin!(work);
    runtime.block_on(poll_fn(|cx| {
        let turn = TURN.with(|slot| Turn::for_task(&mut slot.borrow_mut(), cx.waker()));
        turn.rounds(|inner| {
            if let Poll::Ready(out) = work.as_mut().poll(inner) {
                return Poll::Ready(out);
            }
            if let Some(connection) = io.as_mut() {
                if let Poll::Ready(ended) = Pin::new(connection).poll(inner) {
                    if let Err(e) = ended {
                        log::debug!("postgres connection ended: {e}");
                    }
                    *io = None;
                    // The statements still waiting learn it on the next round.
                    inner.waker().wake_by_ref();
                }
            }
            Poll::Pending
        })
    }))
}

thread_local! {
    /// The pool thread's Turn, kept from one `drive` to the next: the connection keeps
    /// the waker it last polled with (its request channel, its socket), and the next
    /// statement's hand-over wakes that one. A Turn of the last `drive`'s would take it for
    /// a wake-up from outside and wake the task, and the runtime would look at its driver.
    static TURN: RefCell<Option<Arc<Turn>>> = const { RefCell::new(None) };
}

/// The waker a pool thread's `drive` polls with: a wake-up while the task is being polled
/// asks for another round; any other wakes the task.
struct Turn {
    task: Waker,
    polling: AtomicBool,
    again: AtomicBool,
}

impl Turn {
    /// The Turn for the task's waker (made on the first poll; again if the runtime hands
    /// a different one: the thread's runtime hands the same to every `block_on`).
    fn for_task(slot: &mut Option<Arc<Turn>>, task: &Waker) -> Arc<Turn> {
        match slot {
            Some(turn) if turn.task.will_wake(task) => turn.clone(),
            _ => {
                let turn = Arc::new(Turn {
                    task: task.clone(),
                    polling: AtomicBool::new(false),
                    again: AtomicBool::new(false),
                });
                *slot = Some(turn.clone());
                turn
            }
        }
    }

    /// Polls `round` with this waker until it is ready, or a round passes with no wake-up
    /// (then the task waits for its socket or a timer), or [`ROUNDS`] are spent (then the
    /// task is woken, and the runtime polls it again after a look at its driver).
    fn rounds<T>(self: &Arc<Self>, mut round: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        let waker = Waker::from(self.clone());
        let mut inner = Context::from_waker(&waker);
        self.polling.store(true, Ordering::SeqCst);
        let mut out = Poll::Pending;
        for _ in 0..ROUNDS {
            self.again.store(false, Ordering::SeqCst);
            out = round(&mut inner);
            if out.is_ready() || !self.again.load(Ordering::SeqCst) {
                break;
            }
        }
        self.polling.store(false, Ordering::SeqCst);
        // A wake-up that came in the last round, or from another thread while polling (the
        // SeqCst pair: either it saw `polling` down and woke the task, or it is seen here).
        if self.again.swap(false, Ordering::SeqCst) && out.is_pending() {
            self.task.wake_by_ref();
        }
        out
    }
}

impl Wake for Turn {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::SeqCst) {
            self.again.store(true, Ordering::SeqCst);
        } else {
            self.task.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_wake_during_the_poll_is_another_round_not_a_wake_of_the_task() {
        let (count, waker) = task();
        let mut slot = None;
        let turn = Turn::for_task(&mut slot, &waker);
        let mut rounds = 0;
        let out = turn.rounds(|cx| {
            rounds += 1;
            if rounds < 3 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(rounds)
            }
        });
        assert_eq!(out, Poll::Ready(3));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_round_without_a_wake_ends_the_poll_and_a_later_wake_reaches_the_task() {
        let (count, waker) = task();
        let mut slot = None;
        let turn = Turn::for_task(&mut slot, &waker);
        let mut kept = None;
        let mut rounds = 0;
        let out: Poll<()> = turn.rounds(|cx| {
            rounds += 1;
            kept = Some(cx.waker().clone());
            Poll::Pending
        });
        assert_eq!((out, rounds), (Poll::Pending, 1));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // The socket becomes readable: the registration holds the Turn's waker.
        kept.unwrap().wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_half_that_always_wakes_itself_goes_back_to_the_runtime() {
        let (count, waker) = task();
        let mut slot = None;
        let turn = Turn::for_task(&mut slot, &waker);
        let mut rounds = 0;
        let out: Poll<()> = turn.rounds(|cx| {
            rounds += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert_eq!((out, rounds), (Poll::Pending, ROUNDS));
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the task is woken to be polled again");
    }

    #[test]
    fn a_new_task_waker_gets_a_new_turn() {
        let (_, first) = task();
        let (_, second) = task();
        let mut slot = None;
        let a = Turn::for_task(&mut slot, &first);
        assert!(Arc::ptr_eq(&a, &Turn::for_task(&mut slot, &first)));
        let b = Turn::for_task(&mut slot, &second);
        assert!(!Arc::ptr_eq(&a, &b));
    }
}
