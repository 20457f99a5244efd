//! The TechEmpower jobs: a world by id, several worlds one query each, the fortunes, and
//! updates that cannot deadlock.

use rusqlite::OptionalExtension;

use crate::db::store::{Conn, ConnKind, StoreError};
use crate::model::{Fortune, World};

const WORLD_SQLITE: &str = "SELECT id, randomnumber FROM world WHERE id = ?1";
const WORLD_PG: &str = "SELECT id, randomnumber FROM world WHERE id = $1";

pub fn world(conn: &mut Conn, id: i32) -> Result<Option<World>, StoreError> {
    match &mut conn.kind {
        ConnKind::Sqlite(c) => Ok(c
            .prepare_cached(WORLD_SQLITE)?
            .query_row([id], |r| Ok(World { id: r.get(0)?, random_number: r.get(1)? }))
            .optional()?),
        ConnKind::Postgres(pg) => {
            Ok(pg.query_opt(WORLD_PG, &[&id])?.map(|r| World { id: r.get(0), random_number: r.get(1) }))
        }
    }
}

/// Each world by its own query, as the benchmark's rules require (no `IN (…)` bulk read).
pub fn worlds(conn: &mut Conn, ids: &[i32]) -> Result<Vec<World>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        out.push(world(conn, id)?.ok_or_else(|| StoreError::Other(format!("world {id} is missing")))?);
    }
    Ok(out)
}

const FORTUNES: &str = "SELECT id, message FROM fortune";

pub fn fortunes(conn: &mut Conn) -> Result<Vec<Fortune>, StoreError> {
    match &mut conn.kind {
        ConnKind::Sqlite(c) => Ok(c
            .prepare_cached(FORTUNES)?
            .query_map([], |r| Ok(Fortune { id: r.get(0)?, message: r.get(1)? }))?
            .collect::<Result<_, _>>()?),
        ConnKind::Postgres(pg) => {
            Ok(pg.query(FORTUNES, &[])?.iter().map(|r| Fortune { id: r.get(0), message: r.get(1) }).collect())
        }
    }
}

const UPDATE_SQLITE: &str = "UPDATE world SET randomnumber = ?2 WHERE id = ?1";
const LOCK_PG: &str = "SELECT id FROM world WHERE id = ANY($1) ORDER BY id FOR UPDATE";
const UPDATE_PG: &str =
    "UPDATE world SET randomnumber = w.r FROM unnest($1::int[], $2::int[]) AS w(id, r) WHERE world.id = w.id";

/// Reads each world by its own query, gives it `numbers[i]`, and writes them back in one
/// transaction. The rows are locked in id order first, so concurrent updates take their
/// locks in the same order and cannot deadlock; a world picked twice keeps its last value.
pub fn update(conn: &mut Conn, ids: &[i32], numbers: &[i32]) -> Result<Vec<World>, StoreError> {
    let mut worlds = worlds(conn, ids)?;
    for (w, &n) in worlds.iter_mut().zip(numbers) {
        w.random_number = n;
    }
    let mut last: Vec<(i32, i32)> = worlds.iter().map(|w| (w.id, w.random_number)).collect();
    last.reverse();
    last.sort_by_key(|&(id, _)| id);
    last.dedup_by_key(|&mut (id, _)| id);
    match &mut conn.kind {
        ConnKind::Sqlite(c) => {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(UPDATE_SQLITE)?;
                for (id, n) in &last {
                    stmt.execute([id, n])?;
                }
            }
            tx.commit()?;
        }
        ConnKind::Postgres(pg) => {
            let (lock, update) = (pg.statement(LOCK_PG)?, pg.statement(UPDATE_PG)?);
            let (ids, values): (Vec<i32>, Vec<i32>) = last.into_iter().unzip();
            let mut tx = pg.client.transaction()?;
            tx.query(&lock, &[&ids])?;
            tx.execute(&update, &[&ids, &values])?;
            tx.commit()?;
        }
    }
    Ok(worlds)
}
