//! Users: list (keyset), create, get, update, delete.

use rusqlite::OptionalExtension;
use tokio_postgres::types::Type;

use super::Page;
use crate::db::error::StoreError;
use crate::db::model::{Timestamp, User};
use crate::db::store::{Pg, PgSql, Store};

fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User { id: r.get(0)?, name: r.get(1)?, email: r.get(2)?, created_at: Timestamp(r.get(3)?) })
}

fn from_pg(r: &tokio_postgres::Row) -> User {
    User { id: r.get(0), name: r.get(1), email: r.get(2), created_at: Timestamp(r.get(3)) }
}

const LIST_SQLITE: &str = "SELECT id, name, email, created_at FROM users WHERE id > ?1 ORDER BY id LIMIT ?2";
const LIST_PG: PgSql = PgSql::new(
    "SELECT id, name, email, extract(epoch FROM created_at)::bigint FROM users WHERE id > $1 ORDER BY id LIMIT $2",
    &[Type::INT8, Type::INT8],
);

/// One row more than the page, so the caller knows whether there is a next page.
pub(crate) async fn list(store: Store<'_>, page: Page) -> Result<Vec<User>, StoreError> {
    let fetch = page.limit as i64 + 1;
    match store {
        Store::Sqlite(c) => Ok(c
            .prepare_cached(LIST_SQLITE)?
            .query_map(rusqlite::params![page.after, fetch], from_sqlite)?
            .collect::<Result<_, _>>()?),
        Store::Postgres(pg) => Ok(pg.query(&LIST_PG, &[&page.after, &fetch]).await?.iter().map(from_pg).collect()),
    }
}

const CREATE_SQLITE: &str = "INSERT INTO users (name, email) VALUES (?1, ?2) RETURNING id, name, email, created_at";
const CREATE_PG: PgSql = PgSql::new(
    "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id, name, email, extract(epoch FROM created_at)::bigint",
    &[Type::TEXT, Type::TEXT],
);

pub(crate) async fn create(store: Store<'_>, name: &str, email: &str) -> Result<User, StoreError> {
    match store {
        Store::Sqlite(c) => {
            Ok(c.prepare_cached(CREATE_SQLITE)?.query_row(rusqlite::params![name, email], from_sqlite)?)
        }
        Store::Postgres(pg) => {
            let row = pg.query_opt(&CREATE_PG, &[&name, &email]).await?;
            row.map(|r| from_pg(&r)).ok_or_else(|| StoreError::internal("INSERT … RETURNING returned no row"))
        }
    }
}

const GET_SQLITE: &str = "SELECT id, name, email, created_at FROM users WHERE id = ?1";
const GET_PG: PgSql = PgSql::new(
    "SELECT id, name, email, extract(epoch FROM created_at)::bigint FROM users WHERE id = $1",
    &[Type::INT8],
);

pub(crate) async fn get(store: Store<'_>, id: i64) -> Result<Option<User>, StoreError> {
    match store {
        Store::Sqlite(c) => Ok(c.prepare_cached(GET_SQLITE)?.query_row([id], from_sqlite).optional()?),
        Store::Postgres(pg) => Ok(pg.query_opt(&GET_PG, &[&id]).await?.map(|r| from_pg(&r))),
    }
}

const GET_MANY_PG: PgSql = PgSql::new(
    "SELECT id, name, email, extract(epoch FROM created_at)::bigint FROM users WHERE id = ANY($1)",
    &[Type::INT8_ARRAY],
);

/// Several users in one round trip (Postgres): the pool's batch of waiting point reads.
/// Users that do not exist are simply absent from the result.
pub(crate) async fn get_many(store: Store<'_>, ids: &[i64]) -> Result<Vec<User>, StoreError> {
    match store {
        Store::Postgres(pg) => Ok(pg.query(&GET_MANY_PG, &[&ids]).await?.iter().map(from_pg).collect()),
        Store::Sqlite(c) => {
            let mut get = c.prepare_cached(GET_SQLITE)?;
            let mut users = Vec::with_capacity(ids.len());
            for &id in ids {
                users.extend(get.query_row([id], from_sqlite).optional()?);
            }
            Ok(users)
        }
    }
}

const EXISTS_SQLITE: &str = "SELECT 1 FROM users WHERE id = ?1";
const EXISTS_PG: PgSql = PgSql::new("SELECT 1 FROM users WHERE id = $1", &[Type::INT8]);

pub(crate) fn exists_sqlite(c: &rusqlite::Connection, id: i64) -> Result<bool, StoreError> {
    Ok(c.prepare_cached(EXISTS_SQLITE)?.exists([id])?)
}

pub(crate) async fn exists_pg(pg: &Pg, id: i64) -> Result<bool, tokio_postgres::Error> {
    Ok(pg.query_opt(&EXISTS_PG, &[&id]).await?.is_some())
}

// coalesce keeps a column when the patch leaves it out.
const UPDATE_SQLITE: &str =
    "UPDATE users SET name = coalesce(?2, name), email = coalesce(?3, email) WHERE id = ?1 RETURNING id, name, email, created_at";
const UPDATE_PG: PgSql = PgSql::new(
    "UPDATE users SET name = coalesce($2, name), email = coalesce($3, email) WHERE id = $1 \
                         RETURNING id, name, email, extract(epoch FROM created_at)::bigint",
    &[Type::INT8, Type::TEXT, Type::TEXT],
);

pub(crate) async fn update(
    store: Store<'_>,
    id: i64,
    name: Option<&str>,
    email: Option<&str>,
) -> Result<Option<User>, StoreError> {
    match store {
        Store::Sqlite(c) => Ok(c
            .prepare_cached(UPDATE_SQLITE)?
            .query_row(rusqlite::params![id, name, email], from_sqlite)
            .optional()?),
        Store::Postgres(pg) => Ok(pg.query_opt(&UPDATE_PG, &[&id, &name, &email]).await?.map(|r| from_pg(&r))),
    }
}

const DELETE_SQLITE: &str = "DELETE FROM users WHERE id = ?1";
// RETURNING, so the count is the same with the statement cache off (see `Pg::execute`).
const DELETE_PG: PgSql = PgSql::new("DELETE FROM users WHERE id = $1 RETURNING id", &[Type::INT8]);

pub(crate) async fn delete(store: Store<'_>, id: i64) -> Result<bool, StoreError> {
    let n = match store {
        Store::Sqlite(c) => c.prepare_cached(DELETE_SQLITE)?.execute([id])? as u64,
        Store::Postgres(pg) => pg.execute(&DELETE_PG, &[&id]).await?,
    };
    Ok(n > 0)
}

/// Every Postgres statement of this file, prepared when a connection opens.
pub(crate) const PG_STATEMENTS: &[&PgSql] =
    &[&LIST_PG, &CREATE_PG, &GET_PG, &GET_MANY_PG, &EXISTS_PG, &UPDATE_PG, &DELETE_PG];
