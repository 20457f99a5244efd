//! Users: list (keyset), create, get, update, delete.

use postgres::types::Type;
use rusqlite::OptionalExtension;

use super::Page;
use crate::db::error::StoreError;
use crate::db::model::{Timestamp, User};
use crate::db::store::{Conn, ConnKind, PgSql};

fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User { id: r.get(0)?, name: r.get(1)?, email: r.get(2)?, created_at: Timestamp(r.get(3)?) })
}

fn from_pg(r: &postgres::Row) -> User {
    User { id: r.get(0), name: r.get(1), email: r.get(2), created_at: Timestamp(r.get(3)) }
}

const LIST_SQLITE: &str = "SELECT id, name, email, created_at FROM users WHERE id > ?1 ORDER BY id LIMIT ?2";
const LIST_PG: PgSql = PgSql::new(
    "SELECT id, name, email, extract(epoch FROM created_at)::bigint FROM users WHERE id > $1 ORDER BY id LIMIT $2",
    &[Type::INT8, Type::INT8],
);

/// One row more than the page, so the caller knows whether there is a next page.
pub fn list(conn: &mut Conn, page: Page) -> Result<Vec<User>, StoreError> {
    let fetch = page.limit as i64 + 1;
    match &mut conn.kind {
        ConnKind::Sqlite(c) => Ok(c
            .prepare_cached(LIST_SQLITE)?
            .query_map(rusqlite::params![page.after, fetch], from_sqlite)?
            .collect::<Result<_, _>>()?),
        ConnKind::Postgres(pg) => Ok(pg.query(&LIST_PG, &[&page.after, &fetch])?.iter().map(from_pg).collect()),
    }
}

const CREATE_SQLITE: &str = "INSERT INTO users (name, email) VALUES (?1, ?2) RETURNING id, name, email, created_at";
const CREATE_PG: PgSql = PgSql::new(
    "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id, name, email, extract(epoch FROM created_at)::bigint",
    &[Type::TEXT, Type::TEXT],
);

pub fn create(conn: &mut Conn, name: &str, email: &str) -> Result<User, StoreError> {
    match &mut conn.kind {
        ConnKind::Sqlite(c) => {
            Ok(c.prepare_cached(CREATE_SQLITE)?.query_row(rusqlite::params![name, email], from_sqlite)?)
        }
        ConnKind::Postgres(pg) => {
            let row = pg.query_opt(&CREATE_PG, &[&name, &email])?;
            row.map(|r| from_pg(&r)).ok_or_else(|| StoreError::internal("INSERT … RETURNING returned no row"))
        }
    }
}

const GET_SQLITE: &str = "SELECT id, name, email, created_at FROM users WHERE id = ?1";
const GET_PG: PgSql = PgSql::new(
    "SELECT id, name, email, extract(epoch FROM created_at)::bigint FROM users WHERE id = $1",
    &[Type::INT8],
);

pub fn get(conn: &mut Conn, id: i64) -> Result<Option<User>, StoreError> {
    match &mut conn.kind {
        ConnKind::Sqlite(c) => Ok(c.prepare_cached(GET_SQLITE)?.query_row([id], from_sqlite).optional()?),
        ConnKind::Postgres(pg) => Ok(pg.query_opt(&GET_PG, &[&id])?.map(|r| from_pg(&r))),
    }
}

const GET_MANY_PG: PgSql = PgSql::new(
    "SELECT id, name, email, extract(epoch FROM created_at)::bigint FROM users WHERE id = ANY($1)",
    &[Type::INT8_ARRAY],
);

/// Several users in one round trip (Postgres): the pool's batch of waiting point reads.
/// Users that do not exist are simply absent from the result.
pub fn get_many(conn: &mut Conn, ids: &[i64]) -> Result<Vec<User>, StoreError> {
    if let ConnKind::Postgres(pg) = &mut conn.kind {
        return Ok(pg.query(&GET_MANY_PG, &[&ids])?.iter().map(from_pg).collect());
    }
    let mut users = Vec::with_capacity(ids.len());
    for &id in ids {
        users.extend(get(conn, id)?);
    }
    Ok(users)
}

const EXISTS_SQLITE: &str = "SELECT 1 FROM users WHERE id = ?1";
const EXISTS_PG: PgSql = PgSql::new("SELECT 1 FROM users WHERE id = $1", &[Type::INT8]);

pub fn exists(conn: &mut Conn, id: i64) -> Result<bool, StoreError> {
    match &mut conn.kind {
        ConnKind::Sqlite(c) => Ok(c.prepare_cached(EXISTS_SQLITE)?.exists([id])?),
        ConnKind::Postgres(pg) => Ok(pg.query_opt(&EXISTS_PG, &[&id])?.is_some()),
    }
}

// coalesce keeps a column when the patch leaves it out.
const UPDATE_SQLITE: &str =
    "UPDATE users SET name = coalesce(?2, name), email = coalesce(?3, email) WHERE id = ?1 RETURNING id, name, email, created_at";
const UPDATE_PG: PgSql = PgSql::new(
    "UPDATE users SET name = coalesce($2, name), email = coalesce($3, email) WHERE id = $1 \
                         RETURNING id, name, email, extract(epoch FROM created_at)::bigint",
    &[Type::INT8, Type::TEXT, Type::TEXT],
);

pub fn update(conn: &mut Conn, id: i64, name: Option<&str>, email: Option<&str>) -> Result<Option<User>, StoreError> {
    match &mut conn.kind {
        ConnKind::Sqlite(c) => Ok(c
            .prepare_cached(UPDATE_SQLITE)?
            .query_row(rusqlite::params![id, name, email], from_sqlite)
            .optional()?),
        ConnKind::Postgres(pg) => Ok(pg.query_opt(&UPDATE_PG, &[&id, &name, &email])?.map(|r| from_pg(&r))),
    }
}

const DELETE_SQLITE: &str = "DELETE FROM users WHERE id = ?1";
// RETURNING, so the count is the same with the statement cache off (see `Pg::execute`).
const DELETE_PG: PgSql = PgSql::new("DELETE FROM users WHERE id = $1 RETURNING id", &[Type::INT8]);

pub fn delete(conn: &mut Conn, id: i64) -> Result<bool, StoreError> {
    let n = match &mut conn.kind {
        ConnKind::Sqlite(c) => c.prepare_cached(DELETE_SQLITE)?.execute([id])? as u64,
        ConnKind::Postgres(pg) => pg.execute(&DELETE_PG, &[&id])?,
    };
    Ok(n > 0)
}
