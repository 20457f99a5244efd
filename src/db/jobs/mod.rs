//! ⑥⑦ The database jobs: what a handler can ask of the store, and how each runs on either
//! store. One file per resource, each job's SQL beside it, for SQLite and Postgres.
//!
//! A [`Job`] is plain data sent by value through the pool's channel; its [`Output`] comes
//! back the same way. No boxed closures, no per-job allocation beyond the strings a row
//! carries. Each job is one row of the `jobs!` table; adding one is a row there and its
//! function in the resource's file.

mod bench;
mod orders;
mod preferences;
mod users;

use super::error::StoreError;
use super::store::{PgSql, Store};
use crate::db::model::{Fortune, Order, User, World};

/// A page request for keyset pagination: rows with id > `after`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: i64,
    pub limit: u32,
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

/// Declares every job once — its fields, its name (the `query` label of
/// db_query_duration_seconds) and how it runs on a connection — and derives [`Job`],
/// [`Job::NAMES`], [`Job::index`] and [`run`] from that one row.
macro_rules! jobs {
    ($conn:ident; $(
        $(#[$doc:meta])*
        $name:ident $({ $($field:ident : $ty:ty),* $(,)? })? => $label:literal, $run:expr;
    )*) => {
        /// What a handler can ask of the store: plain data, sent by value to a pool thread.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Job {
            $( $(#[$doc])* $name $({ $($field: $ty),* })?, )*
        }

        impl Job {
            /// Every job's name, in [`Job::index`] order.
            pub const NAMES: &'static [&'static str] = &[$($label),*];

            /// This job's position in [`Job::NAMES`].
            pub fn index(&self) -> usize {
                match self {
                    $( Job::$name { .. } => const { position(Job::NAMES, $label) }, )*
                }
            }
        }

        /// Runs one job on a connection. On Postgres, jobs run at once on one connection
        /// are pipelined; a job never waits for anything but its own statements.
        pub async fn run($conn: Store<'_>, job: Job) -> Result<Output, StoreError> {
            match job {
                $( Job::$name $({ $($field),* })? => $run, )*
            }
        }
    };
}

jobs! { conn;
    ListUsers { page: Page } => "list_users", users::list(conn, page).await.map(Output::Users);
    CreateUser { name: String, email: String } => "create_user",
        users::create(conn, &name, &email).await.map(|u| Output::User(Some(u)));
    GetUser { id: i64 } => "get_user", users::get(conn, id).await.map(Output::User);
    UpdateUser { id: i64, name: Option<String>, email: Option<String> } => "update_user",
        users::update(conn, id, name.as_deref(), email.as_deref()).await.map(Output::User);
    DeleteUser { id: i64 } => "delete_user", users::delete(conn, id).await.map(Output::Deleted);
    ListOrders { user_id: i64, page: Page } => "list_orders", orders::list(conn, user_id, page).await.map(Output::Orders);
    CreateOrder { user_id: i64, item: String, quantity: i32, price_cents: i64 } => "create_order",
        orders::create(conn, user_id, &item, quantity, price_cents).await.map(Output::Order);
    /// The newest orders of a user, newest first (the summary).
    RecentOrders { user_id: i64, limit: u32 } => "recent_orders",
        orders::recent(conn, user_id, limit).await.map(|o| Output::Orders(Some(o)));
    GetPreferences { user_id: i64 } => "get_preferences", preferences::get(conn, user_id).await.map(Output::Preferences);
    PutPreferences { user_id: i64, json: String } => "put_preferences",
        preferences::put(conn, user_id, &json).await.map(Output::Preferences);
    /// TechEmpower: one world.
    World { id: i32 } => "world", bench::world(conn, id).await.map(Output::World);
    /// TechEmpower: several worlds, one query each.
    Worlds { ids: Vec<i32> } => "worlds", bench::worlds(conn, &ids).await.map(Output::Worlds);
    Fortunes => "fortunes", bench::fortunes(conn).await.map(Output::Fortunes);
    /// TechEmpower: give the worlds `ids[i]` the numbers `numbers[i]`.
    UpdateWorlds { ids: Vec<i32>, numbers: Vec<i32> } => "update_worlds",
        bench::update(conn, &ids, &numbers).await.map(Output::Worlds);
}

impl Job {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        Job::NAMES[self.index()]
    }
}

/// What a job produced. `None` where a row the job needed does not exist (404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Done,
    User(Option<User>),
    /// A page, with one row more than asked when there is a next page.
    Users(Vec<User>),
    Deleted(bool),
    Orders(Option<Vec<Order>>),
    Order(Option<Order>),
    /// The preferences object as JSON text; `None`: no such user.
    Preferences(Option<String>),
    World(Option<World>),
    Worlds(Vec<World>),
    Fortunes(Vec<Fortune>),
}

/// Point reads the pool may combine into one query when several are waiting: their ids.
pub fn batchable_user_read(job: &Job) -> Option<i64> {
    match job {
        Job::GetUser { id } => Some(*id),
        _ => None,
    }
}

/// Every Postgres statement a job may send; the TechEmpower ones with `bench_routes`.
pub fn pg_statements(bench_routes: bool) -> impl Iterator<Item = &'static PgSql> {
    let bench: &[&PgSql] = if bench_routes { bench::PG_STATEMENTS } else { &[] };
    [users::PG_STATEMENTS, orders::PG_STATEMENTS, preferences::PG_STATEMENTS, bench].into_iter().flatten().copied()
}

/// Runs a batch of [`batchable_user_read`] jobs as one query; one output per id, in order.
pub async fn run_user_reads(store: Store<'_>, ids: &[i64]) -> Result<Vec<Output>, StoreError> {
    let found = users::get_many(store, ids).await?;
    Ok(ids.iter().map(|id| Output::User(found.iter().find(|u| u.id == *id).cloned())).collect())
}
