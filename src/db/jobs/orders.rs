//! A user's orders: list (keyset), create, and the newest few for the summary.

use postgres::types::Type;
use rusqlite::OptionalExtension;

use super::{user_exists, Page};
use crate::db::error::StoreError;
use crate::db::model::{Order, Timestamp};
use crate::db::store::{Conn, ConnKind, PgSql};

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

fn from_pg(r: &postgres::Row) -> Order {
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
/// user.
pub fn list(conn: &mut Conn, user_id: i64, page: Page) -> Result<Option<Vec<Order>>, StoreError> {
    let fetch = page.limit as i64 + 1;
    let orders: Vec<Order> = match &mut conn.kind {
        ConnKind::Sqlite(c) => c
            .prepare_cached(LIST_SQLITE)?
            .query_map(rusqlite::params![user_id, page.after, fetch], from_sqlite)?
            .collect::<Result<_, _>>()?,
        ConnKind::Postgres(pg) => pg.query(&LIST_PG, &[&user_id, &page.after, &fetch])?.iter().map(from_pg).collect(),
    };
    if orders.is_empty() && !user_exists(conn, user_id)? {
        return Ok(None);
    }
    Ok(Some(orders))
}

const CREATE_SQLITE: &str = "INSERT INTO orders (user_id, item, quantity, price_cents) VALUES (?1, ?2, ?3, ?4) \
                             RETURNING id, user_id, item, quantity, price_cents, created_at";
const CREATE_PG: PgSql = PgSql::new(
    "INSERT INTO orders (user_id, item, quantity, price_cents) VALUES ($1, $2, $3, $4) \
                         RETURNING id, user_id, item, quantity, price_cents, extract(epoch FROM created_at)::bigint",
    &[Type::INT8, Type::TEXT, Type::INT4, Type::INT8],
);

/// The new order; `None` if the user does not exist (the foreign key says so).
pub fn create(
    conn: &mut Conn,
    user_id: i64,
    item: &str,
    quantity: i32,
    price_cents: i64,
) -> Result<Option<Order>, StoreError> {
    let created = match &mut conn.kind {
        ConnKind::Sqlite(c) => c
            .prepare_cached(CREATE_SQLITE)?
            .query_row(rusqlite::params![user_id, item, quantity, price_cents], from_sqlite)
            .optional()
            .map_err(StoreError::from),
        ConnKind::Postgres(pg) => pg
            .query_opt(&CREATE_PG, &[&user_id, &item, &quantity, &price_cents])
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

pub fn recent(conn: &mut Conn, user_id: i64, limit: u32) -> Result<Vec<Order>, StoreError> {
    let limit = limit as i64;
    match &mut conn.kind {
        ConnKind::Sqlite(c) => Ok(c
            .prepare_cached(RECENT_SQLITE)?
            .query_map(rusqlite::params![user_id, limit], from_sqlite)?
            .collect::<Result<_, _>>()?),
        ConnKind::Postgres(pg) => Ok(pg.query(&RECENT_PG, &[&user_id, &limit])?.iter().map(from_pg).collect()),
    }
}
