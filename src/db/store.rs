//! ⑦ One open database connection, SQLite or Postgres, owned by one pool thread with its
//! prepared statements — and the errors that come out of it, sorted by what the pool and
//! the HTTP layer must do about them.
//!
//! A Postgres connection is used through a shared reference ([`Store::Postgres`]), so the
//! pool thread can run several jobs on it at once: their statements go out back to back
//! and their results come back in order (pipelining). SQLite is used by one job at a time.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use super::drive::drive;
use super::error::StoreError;
use super::postgres::PgConnection;
use crate::config::StoreConfig;

/// A live connection and when it was opened (for DB_CONN_MAX_LIFETIME).
pub(crate) struct StoreConn {
    pub(crate) kind: StoreKind,
    pub(crate) opened: Instant,
    /// Postgres over TLS (said when the pool connects).
    pub(crate) tls: bool,
}

pub(crate) enum StoreKind {
    Sqlite(rusqlite::Connection),
    // Boxed (one allocation per connection) so the enum stays the size of the small variant.
    Postgres(Box<PgLink>),
}

/// A Postgres connection as a pool thread holds it: the client the jobs share, and the I/O
/// half the thread drives while they run ([`drive`]); `None` once it has ended.
pub(crate) struct PgLink {
    pub(crate) pg: Pg,
    pub(crate) io: Option<PgConnection>,
}

/// The connection as a job sees it: SQLite exclusively, Postgres shared with the other jobs
/// of the same pipeline.
pub(crate) enum Store<'a> {
    Sqlite(&'a mut rusqlite::Connection),
    Postgres(&'a Pg),
}

/// A Postgres statement with the types of its parameters. The types let a statement go
/// unnamed in one round trip (Parse, Bind, Execute, Sync) when DB_STATEMENT_CACHE=off: no
/// prepare to learn them, nothing left on the server connection.
pub(crate) struct PgSql {
    pub(crate) text: &'static str,
    pub(crate) types: &'static [Type],
}

impl PgSql {
    pub(crate) const fn new(text: &'static str, types: &'static [Type]) -> PgSql {
        PgSql { text, types }
    }
}

/// The idle check: a statement through the same path as requests' statements, so a
/// pooler that loses prepared statements fails it too.
pub(crate) const PING: PgSql = PgSql::new("SELECT 1", &[]);

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A Postgres client and, with DB_STATEMENT_CACHE=on, its prepared statements: prepared
/// once per connection on first use and kept for its lifetime. Every call sends its own
/// Bind/Execute/Sync (Parse too when unnamed), so calls made at once are pipelined and an
/// error in one fails that statement alone.
pub(crate) struct Pg {
    pub(crate) client: tokio_postgres::Client,
    cache: bool,
    statements: RefCell<HashMap<&'static str, Statement>>,
    /// What [`Pg::prepare_all`] was given: in debug builds, a statement outside it fails its
    /// first use, so a resource that forgets `pg_statements()` fails its tests.
    #[cfg(debug_assertions)]
    registered: RefCell<std::collections::HashSet<&'static str>>,
    /// Statements sent again after Postgres chose them as a deadlock's victim, since the
    /// pool thread last collected the count.
    pub(crate) deadlock_retries: Cell<u64>,
}

impl Pg {
    pub(crate) fn new(client: tokio_postgres::Client, cache: bool) -> Pg {
        Pg {
            client,
            cache,
            statements: RefCell::new(HashMap::new()),
            #[cfg(debug_assertions)]
            registered: RefCell::default(),
            deadlock_retries: Cell::new(0),
        }
    }

    /// The prepared statement for `sql`, preparing it on first use. Two jobs of one
    /// pipeline may both prepare it the first time; the second simply replaces the first.
    async fn statement(&self, sql: &PgSql) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.borrow().get(sql.text) {
            return Ok(s.clone());
        }
        #[cfg(debug_assertions)]
        {
            let registered = self.registered.borrow();
            assert!(
                registered.is_empty() || registered.contains(sql.text),
                "a statement missing from db::jobs::pg_statements() (add the resource's PG_STATEMENTS there): {}",
                sql.text
            );
        }
        let s = self.client.prepare_typed(sql.text, sql.types).await?;
        self.statements.borrow_mut().insert(sql.text, s.clone());
        Ok(s)
    }

    /// Prepares `all` (and the idle check) at once: one round trip, their Parse messages
    /// pipelined.
    pub(crate) async fn prepare_all(&self, all: impl Iterator<Item = &'static PgSql>) -> Result<(), StoreError> {
        let all: Vec<&PgSql> = std::iter::once(&PING).chain(all).collect();
        #[cfg(debug_assertions)]
        self.registered.borrow_mut().extend(all.iter().map(|sql| sql.text));
        futures_util::future::try_join_all(all.iter().map(|sql| self.statement(sql))).await?;
        Ok(())
    }

    /// A statement the server connection does not have (a pooler swapped it) is forgotten,
    /// so the next use prepares it again.
    fn forget_if_missing<T>(&self, sql: &PgSql, result: &Result<T, tokio_postgres::Error>) {
        if result.as_ref().err().and_then(tokio_postgres::Error::code) == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
            self.statements.borrow_mut().remove(sql.text);
        }
    }

    fn typed<'p>(sql: &PgSql, params: Params<'p>) -> Vec<(&'p (dyn ToSql + Sync), Type)> {
        debug_assert_eq!(sql.types.len(), params.len(), "{}", sql.text);
        params.iter().copied().zip(sql.types.iter().cloned()).collect()
    }

    /// Runs `run` on the prepared statement for `sql`, forgetting the statement if the
    /// server no longer has it.
    async fn prepared<T>(
        &self,
        sql: &PgSql,
        run: impl AsyncFnOnce(&Statement) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        let result = run(&statement).await;
        self.forget_if_missing(sql, &result);
        result
    }

    pub(crate) async fn query(&self, sql: &PgSql, params: Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        if !self.cache {
            return self.client.query_typed(sql.text, &Self::typed(sql, params)).await;
        }
        self.prepared(sql, async |s| self.client.query(s, params).await).await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &PgSql,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        if !self.cache {
            return self.client.query_typed_opt(sql.text, &Self::typed(sql, params)).await;
        }
        self.prepared(sql, async |s| self.client.query_opt(s, params).await).await
    }

    /// Rows changed. Unnamed (DB_STATEMENT_CACHE=off), the count is the rows returned: a
    /// statement whose count matters says `RETURNING`.
    pub(crate) async fn execute(&self, sql: &PgSql, params: Params<'_>) -> Result<u64, tokio_postgres::Error> {
        if !self.cache {
            return self.client.query_typed(sql.text, &Self::typed(sql, params)).await.map(|rows| rows.len() as u64);
        }
        self.prepared(sql, async |s| self.client.execute(s, params).await).await
    }
}

impl StoreConn {
    /// Opens a connection to the configured store and brings its schema up to date.
    /// With `bench_routes`, the TechEmpower tables are created too. A Postgres connection
    /// is driven by `runtime`, the pool thread's own.
    /// `pg_tls` is the Postgres TLS configuration (`None` under `sslmode=disable`); no
    /// Postgres statement runs longer than `statement_timeout` (HANDLER_TIMEOUT).
    pub(crate) fn open(
        config: &StoreConfig,
        pg_tls: Option<&Arc<rustls::ClientConfig>>,
        runtime: &tokio::runtime::Runtime,
        bench_routes: bool,
        statement_cache: bool,
        statement_timeout: std::time::Duration,
    ) -> Result<StoreConn, StoreError> {
        let (kind, tls) = match config {
            StoreConfig::Sqlite { path } => (StoreKind::Sqlite(super::sqlite::open(path, bench_routes)?), false),
            StoreConfig::Postgres(pg) => {
                let (client, io, transport) =
                    super::postgres::open(pg, pg_tls, runtime, bench_routes, statement_timeout)?;
                let link = PgLink { pg: Pg::new(client, statement_cache), io: Some(io) };
                (StoreKind::Postgres(Box::new(link)), transport == super::postgres::Transport::Tls)
            }
        };
        Ok(StoreConn { kind, opened: Instant::now(), tls })
    }

    /// A cheap round trip that proves the connection still works, the way requests use it
    /// (on Postgres a prepared statement when DB_STATEMENT_CACHE=on). On SQLite the
    /// statement is prepared once: an idle server pings every second and need not compile
    /// SQL for it.
    pub(crate) fn ping(&mut self, runtime: &tokio::runtime::Runtime) -> Result<(), StoreError> {
        match &mut self.kind {
            StoreKind::Sqlite(c) => c
                .prepare_cached(super::sqlite::PING)
                .and_then(|mut s| s.query_row([], |_| Ok(())))
                .map_err(StoreError::from),
            StoreKind::Postgres(link) => {
                let PgLink { pg, io } = &mut **link;
                drive(runtime, io, pg.query(&PING, &[])).map(|_| ()).map_err(StoreError::from)
            }
        }
    }
}
