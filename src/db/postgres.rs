//! The production store: PostgreSQL through `tokio-postgres`, one connection per pool
//! thread, driven by that thread's own current-thread runtime (never a worker's).
//!
//! TLS with libpq's meaning of `sslmode`: `disable` plain only; `allow` plain, then TLS if
//! the server refuses the plain connection; `prefer` TLS, then plain if the server offers
//! no TLS or refuses the TLS connection (said in a warning, once: never silently);
//! `require`, `verify-ca` and `verify-full` TLS only, a refusal being the answer. What a
//! handshake checks of the certificate is [`crate::tls::client`]'s.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::drive::drive;
use super::error::{ErrorClass, Fault, StoreError};
use super::migrations;
use crate::config::{PgConfig, SslMode};

/// A store that does not answer within this is down for this attempt: requests get 503
/// quickly instead of hanging on a dead host.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Key of the advisory lock that serializes migrations across replicas ("percore").
const MIGRATION_LOCK: i64 = 0x0070_6572_636f_7265;

/// How an open connection travels: said in the log line when the pool connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Plain,
    Tls,
}

/// Connects and migrates, on the pool thread's `runtime`. `tls` is the TLS configuration
/// ([`crate::tls::client::postgres`]; `None` under `sslmode=disable`). The connection's I/O
/// half is returned beside the client: the pool thread drives it whenever it waits for
/// statements ([`drive`]), and it rests otherwise.
pub(crate) fn open(
    pg: &PgConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    runtime: &tokio::runtime::Runtime,
    bench_routes: bool,
    statement_timeout: Duration,
) -> Result<(Client, PgConnection, Transport), StoreError> {
    let options = (!NO_STARTUP_OPTIONS.load(Ordering::Relaxed))
        .then(|| format!("-c statement_timeout={}", statement_timeout.as_millis()));
    let (mut client, connection, transport) = match connect(pg, tls, runtime, options.as_deref()) {
        // A pooler (PgBouncer) that refuses startup options: connect without them, and say
        // once what that costs.
        Err(e) if options.is_some() && e.to_string().contains("unsupported startup parameter") => {
            if !NO_STARTUP_OPTIONS.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "postgres: the server refuses startup options ({e}); statements are not bounded by statement_timeout, only by cancel requests at their requests' deadlines"
                );
            }
            connect(pg, tls, runtime, None)?
        }
        other => other?,
    };
    let mut io = Some(connection);
    drive(runtime, &mut io, migrate(&mut client, bench_routes))?;
    let io = io.ok_or_else(|| StoreError::Connection(closed()))?;
    Ok((client, io, transport))
}

/// One connection, by the sslmode's rules.
fn connect(
    pg: &PgConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    runtime: &tokio::runtime::Runtime,
    options: Option<&str>,
) -> Result<(Client, PgConnection, Transport), StoreError> {
    use tokio_postgres::config::SslMode as Wire;
    let attempt = |wire: Wire| attempt(pg, tls, runtime, wire, options);
    let result = match pg.sslmode {
        SslMode::Disable => attempt(Wire::Disable),
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => attempt(Wire::Require),
        // TLS when the server offers it; plain text when it does not (it answers the TLS
        // request with 'N'), or when the TLS attempt fails or is refused, as libpq does.
        SslMode::Prefer => match attempt(Wire::Prefer) {
            Err(e) if e.tls_failed || e.refused_by_server => {
                let plain = attempt(Wire::Disable);
                if plain.is_ok() && !PREFER_DOWNGRADE_SAID.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "postgres: TLS to {}:{} failed under sslmode=prefer ({}); connected in plain text, as prefer allows. Set sslmode=require (or stronger) to refuse instead",
                        pg.host,
                        pg.port,
                        super::error::describe_pg(&e.error)
                    );
                }
                plain
            }
            other => other,
        },
        // Plain text first; TLS only if the server refuses that.
        SslMode::Allow => match attempt(Wire::Disable) {
            Err(e) if e.refused_by_server => attempt(Wire::Require),
            other => other,
        },
    };
    result.map_err(|failed| {
        let e = failed.error;
        let hint = e.as_db_error().is_some_and(|db| db.message().contains("no encryption"));
        let e = match StoreError::from(e) {
            StoreError::Other(fault) => StoreError::Connection(fault),
            e => e,
        };
        if hint && pg.sslmode == SslMode::Disable {
            e.context("the server accepts only TLS connections here (sslmode=disable; set sslmode=require or stronger)")
        } else {
            e
        }
    })
}

/// Set once a server refused startup options: later connections go without them.
static NO_STARTUP_OPTIONS: AtomicBool = AtomicBool::new(false);

/// A warning about `prefer` falling back to plain text is given once per process.
static PREFER_DOWNGRADE_SAID: AtomicBool = AtomicBool::new(false);

/// A failed attempt, and what the sslmode's fallbacks need to know of it.
struct Failed {
    error: tokio_postgres::Error,
    /// The TLS handshake failed, or the server offered no TLS where it was required.
    tls_failed: bool,
    /// The server answered the start-up with an error (pg_hba.conf, typically).
    refused_by_server: bool,
}

fn attempt(
    pg: &PgConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    runtime: &tokio::runtime::Runtime,
    wire: tokio_postgres::config::SslMode,
    options: Option<&str>,
) -> Result<(Client, PgConnection, Transport), Failed> {
    let mut config = tokio_postgres::Config::new();
    if let Some(options) = options {
        config.options(options);
    }
    config
        .host(&pg.host)
        .port(pg.port)
        .user(&pg.user)
        .dbname(&pg.dbname)
        .application_name("percore")
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .ssl_mode(wire);
    if !pg.password.is_empty() {
        config.password(&pg.password);
    }
    let used = Rc::new(Cell::new(false));
    let tls = Recording { inner: tls.map(|c| MakeRustlsConnect::new((**c).clone())), used: used.clone() };
    match runtime.block_on(config.connect(tls)) {
        Ok((client, connection)) => {
            let transport = if used.get() { Transport::Tls } else { Transport::Plain };
            Ok((client, connection, transport))
        }
        Err(error) => Failed::new(error),
    }
}

impl Failed {
    fn new<T>(error: tokio_postgres::Error) -> Result<T, Failed> {
        let tls_failed = super::error::is_tls_failure(&error);
        let refused_by_server = error.as_db_error().is_some();
        Err(Failed { error, tls_failed, refused_by_server })
    }
}

/// tokio-postgres's TLS hook: rustls, noting whether a handshake took place (under
/// `prefer` and `allow` a connection may end up plain). Without a TLS configuration
/// (`sslmode=disable`) no handshake is ever asked for.
struct Recording {
    inner: Option<MakeRustlsConnect>,
    used: Rc<Cell<bool>>,
}

/// The TLS stream tokio-postgres-rustls makes.
type RustlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;

impl MakeTlsConnect<Socket> for Recording {
    type Stream = RustlsStream;
    type TlsConnect = RecordingConnect;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<RecordingConnect, std::io::Error> {
        let connect = |make: &mut MakeRustlsConnect| {
            MakeTlsConnect::<Socket>::make_tls_connect(make, host).unwrap_or_else(|never| match never {})
        };
        let inner = self.inner.as_mut().map(connect);
        Ok(RecordingConnect { inner, used: self.used.clone() })
    }
}

struct RecordingConnect {
    inner: Option<RustlsConnect>,
    used: Rc<Cell<bool>>,
}

impl TlsConnect<Socket> for RecordingConnect {
    type Stream = RustlsStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, std::io::Error>>>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let Some(inner) = self.inner else {
            return Box::pin(std::future::ready(Err(std::io::Error::other("sslmode=disable: no TLS"))));
        };
        let used = self.used;
        Box::pin(async move {
            let stream = inner.connect(stream).await?;
            used.set(true);
            Ok(stream)
        })
    }
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

/// Asks the server to cancel what the connection `client` is executing: a cancel request,
/// on a connection of its own (TLS as `tls` says), sent while the pipeline goes on.
pub(crate) fn cancel(client: &Client, tls: Option<&Arc<rustls::ClientConfig>>) -> Pin<Box<dyn Future<Output = ()>>> {
    let token = client.cancel_token();
    match tls {
        Some(config) => {
            let tls = MakeRustlsConnect::new((**config).clone());
            Box::pin(async move {
                if let Err(e) = token.cancel_query(tls).await {
                    log::debug!("postgres: a cancel request failed: {e}");
                }
            })
        }
        None => Box::pin(async move {
            if let Err(e) = token.cancel_query(tokio_postgres::NoTls).await {
                log::debug!("postgres: a cancel request failed: {e}");
            }
        }),
    }
}

/// The connection's I/O half: it writes what the client queued and reads the replies.
pub(crate) type PgConnection = tokio_postgres::Connection<Socket, RustlsStream>;
