//! ⑦ One open database connection, SQLite or Postgres, owned by one pool thread with its
//! prepared statements — and the errors that come out of it, sorted by what the pool and
//! the HTTP layer must do about them.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use crate::config::StoreConfig;

/// A live connection and when it was opened (for DB_CONN_MAX_LIFETIME).
pub struct Conn {
    pub kind: ConnKind,
    pub opened: Instant,
}

pub enum ConnKind {
    Sqlite(rusqlite::Connection),
    // Boxed (one allocation per connection) so the enum stays the size of the small variant.
    Postgres(Box<Pg>),
}

/// A Postgres client with its prepared statements, prepared once per connection on first
/// use and kept for its lifetime.
pub struct Pg {
    pub client: postgres::Client,
    statements: HashMap<&'static str, postgres::Statement>,
}

impl Pg {
    pub fn new(client: postgres::Client) -> Pg {
        Pg { client, statements: HashMap::new() }
    }

    /// The prepared statement for `sql`, preparing it on first use.
    pub fn statement(&mut self, sql: &'static str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query(&s, params)
    }

    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<postgres::Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.query_opt(&s, params)
    }

    pub fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        self.client.execute(&s, params)
    }
}

impl Conn {
    /// Opens a connection to the configured store and brings its schema up to date.
    /// With `bench_routes`, the TechEmpower tables are created too.
    pub fn open(config: &StoreConfig, bench_routes: bool) -> Result<Conn, StoreError> {
        let kind = match config {
            StoreConfig::Sqlite { path } => ConnKind::Sqlite(super::sqlite::open(path, bench_routes)?),
            StoreConfig::Postgres(pg) => {
                ConnKind::Postgres(Box::new(Pg::new(super::postgres::open(pg, bench_routes)?)))
            }
        };
        Ok(Conn { kind, opened: Instant::now() })
    }

    /// A cheap round trip that proves the connection still works. On SQLite the statement
    /// is prepared once: an idle server pings every second and need not compile SQL for it.
    pub fn ping(&mut self) -> Result<(), StoreError> {
        match &mut self.kind {
            ConnKind::Sqlite(c) => c
                .prepare_cached(super::sqlite::PING)
                .and_then(|mut s| s.query_row([], |_| Ok(())))
                .map_err(StoreError::from),
            ConnKind::Postgres(pg) => pg.client.simple_query("SELECT 1").map(|_| ()).map_err(StoreError::from),
        }
    }
}

/// What went wrong in the store, sorted by consequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The connection is unusable (refused, closed, reset): drop it and reconnect.
    Connection(String),
    /// A unique constraint: the caller gets 409.
    Unique,
    /// A foreign key: the referenced row is gone (404).
    ForeignKey,
    /// Anything else: a bug or a schema problem (500), the connection is kept.
    Other(String),
}

impl StoreError {
    pub fn is_connection(&self) -> bool {
        matches!(self, StoreError::Connection(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Connection(e) => write!(f, "connection failed: {e}"),
            StoreError::Unique => f.write_str("unique constraint violated"),
            StoreError::ForeignKey => f.write_str("foreign key constraint violated"),
            StoreError::Other(e) => f.write_str(e),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ffi::ErrorCode;
        match e.sqlite_error() {
            Some(err) if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => StoreError::Unique,
            Some(err) if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::ForeignKey,
            Some(err)
                if matches!(
                    err.code,
                    ErrorCode::CannotOpen
                        | ErrorCode::NotADatabase
                        | ErrorCode::SystemIoFailure
                        | ErrorCode::DatabaseCorrupt
                ) =>
            {
                StoreError::Connection(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        use postgres::error::SqlState;
        match e.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Unique,
            Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::ForeignKey,
            // The server is going away or refuses us: the connection is as good as closed.
            Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") || c.code().starts_with("53") => {
                StoreError::Connection(e.to_string())
            }
            Some(_) => StoreError::Other(e.to_string()),
            // No SQLSTATE: the connection closed, or an I/O error on it.
            None if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) => {
                StoreError::Connection(e.to_string())
            }
            None => StoreError::Other(e.to_string()),
        }
    }
}
