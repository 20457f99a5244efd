//! Products, the guide's example resource (docs/adding-a-resource.md): list (keyset),
//! create and get, each job's SQL for both stores beside the function that runs it.
//! Compiled with the `example-resource` feature only.

use rusqlite::OptionalExtension;
use tokio_postgres::types::Type;

use super::Page;
use crate::db::error::StoreError;
use crate::db::model::Product;
use crate::db::store::{PgSql, Store};

fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product { id: r.get(0)?, name: r.get(1)?, price_cents: r.get(2)? })
}

fn from_pg(r: &tokio_postgres::Row) -> Product {
    Product { id: r.get(0), name: r.get(1), price_cents: r.get(2) }
}

const LIST_SQLITE: &str = "SELECT id, name, price_cents FROM products WHERE id > ?1 ORDER BY id LIMIT ?2";
const LIST_PG: PgSql = PgSql::new(
    "SELECT id, name, price_cents FROM products WHERE id > $1 ORDER BY id LIMIT $2",
    &[Type::INT8, Type::INT8],
);

/// One row more than the page, so the handler knows whether there is a next page.
pub(crate) async fn list(store: Store<'_>, page: Page) -> Result<Vec<Product>, StoreError> {
    let fetch = page.limit as i64 + 1;
    match store {
        Store::Sqlite(c) => Ok(c
            .prepare_cached(LIST_SQLITE)?
            .query_map(rusqlite::params![page.after, fetch], from_sqlite)?
            .collect::<Result<_, _>>()?),
        Store::Postgres(pg) => Ok(pg.query(&LIST_PG, &[&page.after, &fetch]).await?.iter().map(from_pg).collect()),
    }
}

const CREATE_SQLITE: &str = "INSERT INTO products (name, price_cents) VALUES (?1, ?2) RETURNING id, name, price_cents";
const CREATE_PG: PgSql = PgSql::new(
    "INSERT INTO products (name, price_cents) VALUES ($1, $2) RETURNING id, name, price_cents",
    &[Type::TEXT, Type::INT8],
);

pub(crate) async fn create(store: Store<'_>, name: &str, price_cents: i64) -> Result<Product, StoreError> {
    match store {
        Store::Sqlite(c) => {
            Ok(c.prepare_cached(CREATE_SQLITE)?.query_row(rusqlite::params![name, price_cents], from_sqlite)?)
        }
        Store::Postgres(pg) => {
            let row = pg.query_opt(&CREATE_PG, &[&name, &price_cents]).await?;
            row.map(|r| from_pg(&r)).ok_or_else(|| StoreError::internal("INSERT … RETURNING returned no row"))
        }
    }
}

const GET_SQLITE: &str = "SELECT id, name, price_cents FROM products WHERE id = ?1";
const GET_PG: PgSql = PgSql::new("SELECT id, name, price_cents FROM products WHERE id = $1", &[Type::INT8]);

pub(crate) async fn get(store: Store<'_>, id: i64) -> Result<Option<Product>, StoreError> {
    match store {
        Store::Sqlite(c) => Ok(c.prepare_cached(GET_SQLITE)?.query_row([id], from_sqlite).optional()?),
        Store::Postgres(pg) => Ok(pg.query_opt(&GET_PG, &[&id]).await?.map(|r| from_pg(&r))),
    }
}

/// Every Postgres statement of this file, prepared when a connection opens.
pub(crate) const PG_STATEMENTS: &[&PgSql] = &[&LIST_PG, &CREATE_PG, &GET_PG];
