//! A user's orders: list (keyset), create, and the newest few for the summary.

use rusqlite::OptionalExtension;
use tokio_postgres::types::Type;

use futures_util::future::try_join;

use super::{users, Page};
use crate::db::error::StoreError;
use crate::db::model::{Order, Timestamp};
use crate::db::store::{PgSql, Store};

fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Order> {
    Ok(Order {
        id: r.get(0)?,
        user_id: r.get(1)?,
        item: r.get(2)?,
        quantity: r.get(3)?,
        price_cents: r.get(4)?,
        created_at: Timestamp(r.get(5)?),
    })
}

fn from_pg(r: &tokio_postgres::Row) -> Order {
    Order {
        id: r.get(0),
        user_id: r.get(1),
        item: r.get(2),
        quantity: r.get(3),
        price_cents: r.get(4),
        created_at: Timestamp(r.get(5)),
    }
}

const LIST_SQLITE: &str =
    "SELECT id, user_id, item, quantity, price_cents, created_at FROM orders WHERE user_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
const LIST_PG: PgSql = PgSql::new(
    "SELECT id, user_id, item, quantity, price_cents, extract(epoch FROM created_at)::bigint FROM orders \
                       WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    &[Type::INT8, Type::INT8, Type::INT8],
);

/// A page of the user's orders (one row more when there is a next page); `None` if no such
/// user. On Postgres the page and the user check go out together (one round trip); on
/// SQLite the user is looked up only for an empty page.
pub(crate) async fn list(store: Store<'_>, user_id: i64, page: Page) -> Result<Option<Vec<Order>>, StoreError> {
    let fetch = page.limit as i64 + 1;
    let (orders, user): (Vec<Order>, bool) = match store {
        Store::Sqlite(c) => {
            let orders: Vec<Order> = c
                .prepare_cached(LIST_SQLITE)?
                .query_map(rusqlite::params![user_id, page.after, fetch], from_sqlite)?
                .collect::<Result<_, _>>()?;
            let user = !orders.is_empty() || users::exists_sqlite(c, user_id)?;
            (orders, user)
        }
        Store::Postgres(pg) => {
            let (rows, user) =
                try_join(pg.query(&LIST_PG, &[&user_id, &page.after, &fetch]), users::exists_pg(pg, user_id)).await?;
            (rows.iter().map(from_pg).collect(), user)
        }
    };
    Ok(user.then_some(orders))
}

const CREATE_SQLITE: &str = "INSERT INTO orders (user_id, item, quantity, price_cents) VALUES (?1, ?2, ?3, ?4) \
                             RETURNING id, user_id, item, quantity, price_cents, created_at";
const CREATE_PG: PgSql = PgSql::new(
    "INSERT INTO orders (user_id, item, quantity, price_cents) VALUES ($1, $2, $3, $4) \
                         RETURNING id, user_id, item, quantity, price_cents, extract(epoch FROM created_at)::bigint",
    &[Type::INT8, Type::TEXT, Type::INT4, Type::INT8],
);

/// The new order; `None` if the user does not exist (the foreign key says so).
pub(crate) async fn create(
    store: Store<'_>,
    user_id: i64,
    item: &str,
    quantity: i32,
    price_cents: i64,
) -> Result<Option<Order>, StoreError> {
    let created = match store {
        Store::Sqlite(c) => c
            .prepare_cached(CREATE_SQLITE)?
            .query_row(rusqlite::params![user_id, item, quantity, price_cents], from_sqlite)
            .optional()
            .map_err(StoreError::from),
        Store::Postgres(pg) => pg
            .query_opt(&CREATE_PG, &[&user_id, &item, &quantity, &price_cents])
            .await
            .map(|r| r.map(|r| from_pg(&r)))
            .map_err(StoreError::from),
    };
    match created {
        Err(StoreError::ForeignKey) => Ok(None),
        other => other,
    }
}

const RECENT_SQLITE: &str =
    "SELECT id, user_id, item, quantity, price_cents, created_at FROM orders WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2";
const RECENT_PG: PgSql = PgSql::new(
    "SELECT id, user_id, item, quantity, price_cents, extract(epoch FROM created_at)::bigint FROM orders \
                         WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
    &[Type::INT8, Type::INT8],
);

pub(crate) async fn recent(store: Store<'_>, user_id: i64, limit: u32) -> Result<Vec<Order>, StoreError> {
    let limit = limit as i64;
    match store {
        Store::Sqlite(c) => Ok(c
            .prepare_cached(RECENT_SQLITE)?
            .query_map(rusqlite::params![user_id, limit], from_sqlite)?
            .collect::<Result<_, _>>()?),
        Store::Postgres(pg) => Ok(pg.query(&RECENT_PG, &[&user_id, &limit]).await?.iter().map(from_pg).collect()),
    }
}

/// Every Postgres statement of this file, prepared when a connection opens.
pub(crate) const PG_STATEMENTS: &[&PgSql] = &[&LIST_PG, &CREATE_PG, &RECENT_PG];
