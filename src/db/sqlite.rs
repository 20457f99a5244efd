//! The embedded store: a SQLite file in WAL mode, so `cargo run --release` serves the whole
//! API with no other server. Readers run alongside the one writer; writers wait for each
//! other up to the busy timeout instead of failing.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::error::{ErrorClass, Fault, StoreError};
use super::migrations;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection (every job's SQL fits).
const STATEMENT_CACHE: usize = 64;

/// The idle health check's statement, kept in the connection's statement cache.
pub(crate) const PING: &str = "SELECT 1";

pub(crate) fn open(path: &Path, bench_routes: bool) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::Connection(Fault { class: ErrorClass::Sqlite, message: format!("{}: {e}", path.display()) })
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    wal(&conn)?;
    conn.pragma_update(None, "synchronous", "normal")?;
    conn.pragma_update(None, "foreign_keys", "on")?;
    migrate(&mut conn, bench_routes)?;
    // Prepared now, while start-up runs: the idle ping then never compiles SQL.
    conn.prepare_cached(PING)?;
    Ok(conn)
}

/// Switches the file to WAL. The switch needs a moment alone with the file and, unlike
/// ordinary locks, does not wait through the busy handler, so replicas or pool threads
/// opening a fresh file at once retry here for up to the busy timeout.
fn wal(conn: &Connection) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Applies the missing migrations; `BEGIN IMMEDIATE` makes concurrent openers take turns.
fn migrate(conn: &mut Connection, bench_routes: bool) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS percore_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL DEFAULT (unixepoch()))")?;
    let applied: Vec<i64> =
        tx.prepare("SELECT version FROM percore_schema")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for m in migrations::wanted(bench_routes).filter(|m| !applied.contains(&m.version)) {
        tx.execute_batch(m.sqlite)
            .map_err(|e| StoreError::from(e).context(&format!("migration {} ({})", m.version, m.name)))?;
        tx.execute("INSERT INTO percore_schema (version, name) VALUES (?1, ?2)", rusqlite::params![m.version, m.name])?;
        log::info!("sqlite: applied migration {} ({})", m.version, m.name);
    }
    tx.commit()?;
    Ok(())
}
