//! The production store: PostgreSQL through the synchronous `postgres` client, one
//! connection per pool thread.
//!
//! TLS: this build has no TLS connector, so the configuration refuses sslmodes that demand
//! it; `prefer`/`allow` connect in plain text, as libpq does without TLS support.

use std::time::Duration;

use postgres::{Client, NoTls};

use super::error::StoreError;
use super::migrations;
use crate::config::{PgConfig, SslMode};

/// A store that does not answer within this is down for this attempt: requests get 503
/// quickly instead of hanging on a dead host.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Key of the advisory lock that serializes migrations across replicas ("percore").
const MIGRATION_LOCK: i64 = 0x0070_6572_636f_7265;

pub fn open(pg: &PgConfig, bench_routes: bool) -> Result<Client, StoreError> {
    let mut config = postgres::Config::new();
    config
        .host(&pg.host)
        .port(pg.port)
        .user(&pg.user)
        .dbname(&pg.dbname)
        .application_name("percore")
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .ssl_mode(match pg.sslmode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
        });
    if !pg.password.is_empty() {
        config.password(&pg.password);
    }
    // Whatever refused us (an unreachable host, a password, a missing database), this
    // attempt has no connection: sorted as such, counted under the server's SQLSTATE.
    let mut client = config.connect(NoTls).map_err(|e| match StoreError::from(e) {
        StoreError::Other(fault) => StoreError::Connection(fault),
        e => e,
    })?;
    migrate(&mut client, bench_routes)?;
    Ok(client)
}

/// Applies the missing migrations under a transaction-scoped advisory lock, so replicas
/// starting at once apply each migration exactly once.
fn migrate(client: &mut Client, bench_routes: bool) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS percore_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")?;
    let applied: Vec<i64> = tx.query("SELECT version FROM percore_schema", &[])?.iter().map(|r| r.get(0)).collect();
    for m in migrations::wanted(bench_routes).filter(|m| !applied.contains(&m.version)) {
        tx.batch_execute(m.postgres)
            .map_err(|e| StoreError::from(e).context(&format!("migration {} ({})", m.version, m.name)))?;
        tx.execute("INSERT INTO percore_schema (version, name) VALUES ($1, $2)", &[&m.version, &m.name])?;
        log::info!("postgres: applied migration {} ({})", m.version, m.name);
    }
    tx.commit()?;
    Ok(())
}
