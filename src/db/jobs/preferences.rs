//! A user's preferences: one JSON object, stored as text (SQLite) or jsonb (Postgres).

use tokio_postgres::types::Type;

use crate::db::error::StoreError;
use crate::db::store::{PgSql, Store};

// One round trip tells "no preferences yet" from "no such user".
const GET_SQLITE: &str =
    "SELECT (SELECT data FROM preferences WHERE user_id = ?1), EXISTS (SELECT 1 FROM users WHERE id = ?1)";
const GET_PG: PgSql = PgSql::new(
    "SELECT (SELECT data::text FROM preferences WHERE user_id = $1), EXISTS (SELECT 1 FROM users WHERE id = $1)",
    &[Type::INT8],
);

/// The stored object, `{}` for a user who never set any; `None` if no such user.
pub(crate) async fn get(store: Store<'_>, user_id: i64) -> Result<Option<String>, StoreError> {
    let (stored, user): (Option<String>, bool) = match store {
        Store::Sqlite(c) => c.prepare_cached(GET_SQLITE)?.query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?,
        Store::Postgres(pg) => {
            let row = pg
                .query_opt(&GET_PG, &[&user_id])
                .await?
                .ok_or_else(|| StoreError::internal("SELECT returned no row"))?;
            (row.get(0), row.get(1))
        }
    };
    Ok(match (stored, user) {
        (Some(json), _) => Some(json),
        (None, true) => Some("{}".to_owned()),
        (None, false) => None,
    })
}

const PUT_SQLITE: &str = "INSERT INTO preferences (user_id, data) VALUES (?1, ?2) \
                          ON CONFLICT (user_id) DO UPDATE SET data = excluded.data, updated_at = unixepoch() RETURNING data";
const PUT_PG: PgSql = PgSql::new(
    "INSERT INTO preferences (user_id, data) VALUES ($1, $2::text::jsonb) \
                      ON CONFLICT (user_id) DO UPDATE SET data = excluded.data, updated_at = now() RETURNING data::text",
    &[Type::INT8, Type::TEXT],
);

/// Replaces the object and returns it as stored; `None` if no such user.
pub(crate) async fn put(store: Store<'_>, user_id: i64, json: &str) -> Result<Option<String>, StoreError> {
    let stored = match store {
        Store::Sqlite(c) => c
            .prepare_cached(PUT_SQLITE)?
            .query_row(rusqlite::params![user_id, json], |r| r.get(0))
            .map_err(StoreError::from),
        Store::Postgres(pg) => {
            pg.query_opt(&PUT_PG, &[&user_id, &json]).await.map_err(StoreError::from).and_then(|r| {
                r.map(|r| r.get(0)).ok_or_else(|| StoreError::internal("INSERT … RETURNING returned no row"))
            })
        }
    };
    match stored {
        Ok(json) => Ok(Some(json)),
        Err(StoreError::ForeignKey) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every Postgres statement of this file, prepared when a connection opens.
pub(crate) const PG_STATEMENTS: &[&PgSql] = &[&GET_PG, &PUT_PG];
