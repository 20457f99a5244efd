//! ⑥⑦ The database jobs: what a handler can ask of the store, and how each runs on either
//! store. One file per resource, each job's SQL beside it, for SQLite and Postgres.
//!
//! A [`Job`] is plain data sent by value through the pool's channel; its [`Output`] comes
//! back the same way. No boxed closures, no per-job allocation beyond the strings a row
//! carries. Each job is one row of the `jobs!` table, which also gives handlers a typed
//! call for it (`ctx.db.get_user(id).await -> Result<Option<User>, DbError>`); adding one
//! is a row there and its function in the resource's file.

mod bench;
mod orders;
mod preferences;
#[cfg(feature = "example-resource")]
mod products;
mod table;
mod users;

pub(crate) use table::job_table;

use super::error::StoreError;
use super::store::{PgSql, Store};
// Every model type, so a new resource's rows in the table need no line here.
use crate::db::model::*;

/// A page request for keyset pagination: rows with id > `after`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) after: i64,
    pub(crate) limit: u32,
}

/// `"a"` is at position 3 of `names`, at compile time.
const fn position(names: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < names.len() {
        let (a, b) = (names[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("a job's name is in the table")
}

/// Derives [`Job`], [`Output`], [`Job::NAMES`], [`Job::index`] and [`run`] from the rows of
/// [`table::job_table`] (the typed calls come from the same rows, in `db::calls`).
macro_rules! define_jobs {
    ($conn:ident; $(
        $(#[doc = $doc:literal])*
        $(#[cfg($cfg:meta)])?
        $name:ident $({ $($field:ident : $ty:ty),* $(,)? })? -> $out:ty => $label:literal, $call:ident, $run:expr;
    )*) => {
        /// What a handler can ask of the store: plain data, sent by value to a pool thread.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) enum Job {
            $( $(#[doc = $doc])* $(#[cfg($cfg)])? $name $({ $($field: $ty),* })?, )*
        }

        /// What a job produced, as it travels back: one variant per job, carrying the type
        /// its row declares. Handlers never see it: their typed call unwraps it.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) enum Output {
            $( $(#[cfg($cfg)])? $name($out), )*
        }

        impl Job {
            /// Every job's name, in [`Job::index`] order.
            pub(crate) const NAMES: &'static [&'static str] = &[$( $(#[cfg($cfg)])? $label, )*];

            /// This job's position in [`Job::NAMES`].
            pub(crate) fn index(&self) -> usize {
                match self {
                    $( $(#[cfg($cfg)])? Job::$name { .. } => const { position(Job::NAMES, $label) }, )*
                }
            }
        }

        /// Runs one job on a connection. On Postgres, jobs run at once on one connection
        /// are pipelined; a job never waits for anything but its own statements.
        pub(crate) async fn run($conn: Store<'_>, job: Job) -> Result<Output, StoreError> {
            match job {
                $( $(#[cfg($cfg)])? Job::$name $({ $($field),* })? => ($run).map(Output::$name), )*
            }
        }
    };
}

table::job_table!(define_jobs);

impl Job {
    /// A short name for logs and metrics.
    pub(crate) fn name(&self) -> &'static str {
        Job::NAMES[self.index()]
    }
}

/// Point reads the pool may combine into one query when several are waiting: their ids.
pub(crate) fn batchable_user_read(job: &Job) -> Option<i64> {
    match job {
        Job::GetUser { id } => Some(*id),
        _ => None,
    }
}

/// Every Postgres statement a job may send, each resource's list; the TechEmpower ones with
/// `bench_routes`. A connection prepares them all when it opens; in debug builds (the tests)
/// a statement missing here fails its first use (`Pg::statement`).
pub(crate) fn pg_statements(bench_routes: bool) -> impl Iterator<Item = &'static PgSql> {
    let bench: &[&PgSql] = if bench_routes { bench::PG_STATEMENTS } else { &[] };
    #[cfg(feature = "example-resource")]
    let example: &[&PgSql] = products::PG_STATEMENTS;
    #[cfg(not(feature = "example-resource"))]
    let example: &[&PgSql] = &[];
    [users::PG_STATEMENTS, orders::PG_STATEMENTS, preferences::PG_STATEMENTS, example, bench]
        .into_iter()
        .flatten()
        .copied()
}

/// Runs a batch of [`batchable_user_read`] jobs as one query; one output per id, in order,
/// each what [`Job::GetUser`] alone would have produced.
pub(crate) async fn run_user_reads(store: Store<'_>, ids: &[i64]) -> Result<Vec<Output>, StoreError> {
    let found = users::get_many(store, ids).await?;
    Ok(ids.iter().map(|id| Output::GetUser(found.iter().find(|u| u.id == *id).cloned())).collect())
}
