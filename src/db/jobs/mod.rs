//! ⑥⑦ The database jobs: what a handler can ask of the store, and how each runs on either
//! store. One file per resource, each job's SQL beside it, for SQLite and Postgres.
//!
//! A [`Job`] is plain data sent by value through the pool's channel; its [`Output`] comes
//! back the same way. No boxed closures, no per-job allocation beyond the strings a row
//! carries.

mod bench;
mod orders;
mod preferences;
mod users;

use super::error::StoreError;
use super::store::Conn;
use crate::db::model::{Fortune, Order, User, World};

/// A page request for keyset pagination: rows with id > `after`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: i64,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Proves the connection works (readiness).
    Ping,
    ListUsers(Page),
    CreateUser {
        name: String,
        email: String,
    },
    GetUser {
        id: i64,
    },
    UpdateUser {
        id: i64,
        name: Option<String>,
        email: Option<String>,
    },
    DeleteUser {
        id: i64,
    },
    ListOrders {
        user_id: i64,
        page: Page,
    },
    CreateOrder {
        user_id: i64,
        item: String,
        quantity: i32,
        price_cents: i64,
    },
    /// The newest orders of a user, newest first (the summary).
    RecentOrders {
        user_id: i64,
        limit: u32,
    },
    GetPreferences {
        user_id: i64,
    },
    PutPreferences {
        user_id: i64,
        json: String,
    },
    /// TechEmpower: one world.
    World {
        id: i32,
    },
    /// TechEmpower: several worlds, one query each.
    Worlds {
        ids: Vec<i32>,
    },
    Fortunes,
    /// TechEmpower: give the worlds `ids[i]` the numbers `numbers[i]`.
    UpdateWorlds {
        ids: Vec<i32>,
        numbers: Vec<i32>,
    },
}

impl Job {
    /// Every job's name, for the `query` label of db_query_duration_seconds.
    pub const NAMES: [&'static str; 15] = [
        "ping",
        "list_users",
        "create_user",
        "get_user",
        "update_user",
        "delete_user",
        "list_orders",
        "create_order",
        "recent_orders",
        "get_preferences",
        "put_preferences",
        "world",
        "worlds",
        "fortunes",
        "update_worlds",
    ];

    /// This job's position in [`Job::NAMES`].
    pub fn index(&self) -> usize {
        match self {
            Job::Ping => 0,
            Job::ListUsers(_) => 1,
            Job::CreateUser { .. } => 2,
            Job::GetUser { .. } => 3,
            Job::UpdateUser { .. } => 4,
            Job::DeleteUser { .. } => 5,
            Job::ListOrders { .. } => 6,
            Job::CreateOrder { .. } => 7,
            Job::RecentOrders { .. } => 8,
            Job::GetPreferences { .. } => 9,
            Job::PutPreferences { .. } => 10,
            Job::World { .. } => 11,
            Job::Worlds { .. } => 12,
            Job::Fortunes => 13,
            Job::UpdateWorlds { .. } => 14,
        }
    }

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

/// Runs one job on a connection.
pub fn run(conn: &mut Conn, job: Job) -> Result<Output, StoreError> {
    match job {
        Job::Ping => conn.ping().map(|()| Output::Done),
        Job::ListUsers(page) => users::list(conn, page).map(Output::Users),
        Job::CreateUser { name, email } => users::create(conn, &name, &email).map(|u| Output::User(Some(u))),
        Job::GetUser { id } => users::get(conn, id).map(Output::User),
        Job::UpdateUser { id, name, email } => {
            users::update(conn, id, name.as_deref(), email.as_deref()).map(Output::User)
        }
        Job::DeleteUser { id } => users::delete(conn, id).map(Output::Deleted),
        Job::ListOrders { user_id, page } => orders::list(conn, user_id, page).map(Output::Orders),
        Job::CreateOrder { user_id, item, quantity, price_cents } => {
            orders::create(conn, user_id, &item, quantity, price_cents).map(Output::Order)
        }
        Job::RecentOrders { user_id, limit } => orders::recent(conn, user_id, limit).map(|o| Output::Orders(Some(o))),
        Job::GetPreferences { user_id } => preferences::get(conn, user_id).map(Output::Preferences),
        Job::PutPreferences { user_id, json } => preferences::put(conn, user_id, &json).map(Output::Preferences),
        Job::World { id } => bench::world(conn, id).map(Output::World),
        Job::Worlds { ids } => bench::worlds(conn, &ids).map(Output::Worlds),
        Job::Fortunes => bench::fortunes(conn).map(Output::Fortunes),
        Job::UpdateWorlds { ids, numbers } => bench::update(conn, &ids, &numbers).map(Output::Worlds),
    }
}

/// Point reads the pool may combine into one query when several are waiting: their ids.
pub fn batchable_user_read(job: &Job) -> Option<i64> {
    match job {
        Job::GetUser { id } => Some(*id),
        _ => None,
    }
}

/// Runs a batch of [`batchable_user_read`] jobs as one query; one output per id, in order.
pub fn run_user_reads(conn: &mut Conn, ids: &[i64]) -> Result<Vec<Output>, StoreError> {
    let found = users::get_many(conn, ids)?;
    Ok(ids.iter().map(|id| Output::User(found.iter().find(|u| u.id == *id).cloned())).collect())
}

/// Whether user `id` exists (orders and preferences answer 404 for an unknown user).
fn user_exists(conn: &mut Conn, id: i64) -> Result<bool, StoreError> {
    users::exists(conn, id)
}
