//! ⑥⑦ The data layer: a fixed pool of blocking database threads, fed by one bounded channel.
//!
//! Database work blocks (rusqlite always; a Postgres round trip waits on the network), and a
//! blocked worker would stall every connection on its core. So a handler turns its work into
//! a [`jobs::Job`] — plain data — and sends it over a bounded crossbeam channel to
//! DB_POOL_SIZE threads `percore-db{N}`, each owning one connection and its prepared
//! statements. A full channel is answered 503 at once: a core never waits for room. The
//! waking is [`queue`]'s, not the channel's: a burst of jobs wakes at most one parked
//! thread, which takes what its pipeline has room for and wakes the next only for the rest.
//!
//! A Postgres pool thread drives its connection with tokio-postgres on a current-thread
//! runtime of its own, so it can keep many statements in flight: up to DB_PIPELINE_JOBS
//! jobs at once, topped up from the queue as each finishes, and a job's own statements
//! (/queries' twenty reads, /updates' reads and UPDATE, a page and its user check) go out
//! together. Each statement keeps its own Sync, so one that fails fails alone, as separate
//! round trips would. The threads run under SCHED_BATCH ([`sched`], DB_THREAD_SCHED): a
//! reply that wakes one does not preempt a worker or a local Postgres backend.
//!
//! The way back ([`mailbox`]): each worker has a mailbox — a reply channel, a generation
//! number per request slot and a waker. A pool thread pushes the reply and, only if the
//! mailbox was not already flagged, wakes the worker's one delivery task through monoio's
//! cross-thread waker (its `sync` feature: the waker is queued to the worker's runtime,
//! which is unparked through its eventfd). The delivery task drains every reply that has
//! arrived and wakes exactly the tasks they belong to, on their own core. So a burst of
//! replies costs one cross-thread wake, not one per query; no thread, no channel and no
//! boxed future is created per request — a request takes a slot in a per-worker slab.
//!
//! Abandoned work is skipped: when a request times out or its connection ends, its
//! pending future is dropped, which bumps the slot's generation; a pool thread compares
//! generations before running a job and skips stale ones. A job that waited long is also
//! skipped when its client has reset the connection meanwhile ([`gone`]).
//!
//! Failures: a connection older than DB_CONN_MAX_LIFETIME is replaced between jobs; a
//! broken one is dropped, the job that met the failure is answered 503 (never retried — a
//! write must not run twice), and the thread reconnects with backoff, answering 503 at once
//! meanwhile. Readiness follows what the pool threads last saw ([`health::StoreHealth`]).

pub(crate) mod calls;
pub(crate) mod client;
pub(crate) mod drive;
pub(crate) mod error;
pub(crate) mod gone;
pub(crate) mod health;
pub(crate) mod jobs;
pub(crate) mod mailbox;
pub mod migrations;
pub mod model;
pub(crate) mod pipeline;
pub(crate) mod pool;
pub(crate) mod postgres;
pub(crate) mod queue;
pub(crate) mod sched;
pub(crate) mod sqlite;
pub(crate) mod store;
pub(crate) mod thread;

use std::fmt;

pub(crate) use client::DbClient;
pub(crate) use jobs::{Job, Page};
pub(crate) use pool::Pool;

/// Why a database call did not produce an output, as the HTTP layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DbError {
    /// DB_QUEUE_DEPTH jobs are already waiting (503).
    QueueFull,
    /// The store cannot be reached, or the connection broke during this job (503).
    Unavailable(String),
    /// The request's budget ran out first: its job was skipped in the queue, or its
    /// statement cancelled on the store (503, as the deadline's own answer). Not a store
    /// failure: the store did what it was asked.
    Deadline,
    /// Its client reset the connection while the job waited (`gone`): the job was not
    /// run, and nothing is answered.
    ClientGone,
    /// A unique constraint refused the write (409).
    Conflict,
    /// Anything else (500).
    Internal(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::QueueFull => f.write_str("the database queue is full"),
            DbError::Unavailable(why) => write!(f, "the store is unavailable: {why}"),
            DbError::Deadline => f.write_str("the request's budget ran out before the store answered"),
            DbError::ClientGone => f.write_str("the client left before its job ran"),
            DbError::Conflict => f.write_str("conflict"),
            DbError::Internal(why) => write!(f, "database error: {why}"),
        }
    }
}
