//! The production store: PostgreSQL through `tokio-postgres`, one connection per pool
//! thread, driven by that thread's own current-thread runtime (never a worker's).
//!
//! TLS: this build has no TLS connector, so the configuration refuses sslmodes that demand
//! it; `prefer`/`allow` connect in plain text, as libpq does without TLS support.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::error::{ErrorClass, Fault, StoreError};
use super::migrations;
use crate::config::{PgConfig, SslMode};

/// A store that does not answer within this is down for this attempt: requests get 503
/// quickly instead of hanging on a dead host.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Key of the advisory lock that serializes migrations across replicas ("percore").
const MIGRATION_LOCK: i64 = 0x0070_6572_636f_7265;

/// Connects and migrates, on the pool thread's `runtime`. The connection's I/O half is
/// returned beside the client: the pool thread drives it whenever it waits for statements
/// ([`drive`]), and it rests otherwise.
pub fn open(
    pg: &PgConfig,
    runtime: &tokio::runtime::Runtime,
    bench_routes: bool,
) -> Result<(Client, PgConnection), StoreError> {
    let mut config = tokio_postgres::Config::new();
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
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        });
    if !pg.password.is_empty() {
        config.password(&pg.password);
    }
    // Whatever refused us (an unreachable host, a password, a missing database), this
    // attempt has no connection: sorted as such, counted under the server's SQLSTATE.
    let (mut client, connection) = runtime.block_on(config.connect(NoTls)).map_err(|e| match StoreError::from(e) {
        StoreError::Other(fault) => StoreError::Connection(fault),
        e => e,
    })?;
    let mut io = Some(connection);
    drive(runtime, &mut io, migrate(&mut client, bench_routes))?;
    let io = io.ok_or_else(|| StoreError::Connection(closed()))?;
    Ok((client, io))
}

/// Applies the missing migrations under a transaction-scoped advisory lock, so replicas
/// starting at once apply each migration exactly once. Every statement goes unnamed: behind
/// a transaction-mode pooler a named one could meet a name an earlier process left there.
async fn migrate(client: &mut Client, bench_routes: bool) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.query_typed("SELECT pg_advisory_xact_lock($1)", &[(&MIGRATION_LOCK, Type::INT8)]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS percore_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())").await?;
    let applied: Vec<i64> =
        tx.query_typed("SELECT version FROM percore_schema", &[]).await?.iter().map(|r| r.get(0)).collect();
    for m in migrations::wanted(bench_routes).filter(|m| !applied.contains(&m.version)) {
        tx.batch_execute(m.postgres)
            .await
            .map_err(|e| StoreError::from(e).context(&format!("migration {} ({})", m.version, m.name)))?;
        let row: [(&(dyn ToSql + Sync), Type); 2] = [(&m.version, Type::INT8), (&m.name, Type::TEXT)];
        tx.query_typed("INSERT INTO percore_schema (version, name) VALUES ($1, $2)", &row).await?;
        log::info!("postgres: applied migration {} ({})", m.version, m.name);
    }
    tx.commit().await?;
    Ok(())
}

fn closed() -> Fault {
    Fault { class: ErrorClass::Io, message: "the connection closed while migrating".into() }
}

/// The connection's I/O half: it writes what the client queued and reads the replies.
pub type PgConnection = tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

/// Runs `work` (statements on a connection's client) to completion on the pool thread's
/// runtime, driving the connection's I/O in the same task, as the `postgres` crate does:
/// no task of its own to schedule and wake for every message. A connection that ends is
/// dropped, so each statement still waiting fails as closed and `work` finishes.
pub fn drive<T>(runtime: &tokio::runtime::Runtime, io: &mut Option<PgConnection>, work: impl Future<Output = T>) -> T {
    let mut work = pin!(work);
    runtime.block_on(poll_fn(|cx| loop {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        let Some(connection) = io.as_mut() else { return Poll::Pending };
        match Pin::new(connection).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(ended) => {
                if let Err(e) = ended {
                    log::debug!("postgres connection ended: {e}");
                }
                *io = None;
            }
        }
    }))
}
