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
    /// Statements sent again after Postgres chose them as a deadlock's victim, since the
    /// pool thread last collected the count.
    pub deadlock_retries: u64,
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
        Ok(Conn { kind, opened: Instant::now(), deadlock_retries: 0 })
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
    Connection(Fault),
    /// A unique constraint: the caller gets 409.
    Unique,
    /// A foreign key: the referenced row is gone (404).
    ForeignKey,
    /// Anything else: a bug or a schema problem (500), the connection is kept.
    Other(Fault),
}

/// A failure as the log and the metrics need it: what the store said, whole (for Postgres
/// the severity, SQLSTATE, message, detail and hint — the client library's own Display
/// says only "db error"), and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub class: ErrorClass,
    pub message: String,
}

/// The `class` label of `db_store_errors_total`: bounded by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The first two characters of a Postgres SQLSTATE (`08` connection, `26` invalid
    /// statement name, `40` transaction rollback, …).
    SqlState([u8; 2]),
    /// No SQLSTATE: the connection failed or closed underneath (I/O, timeout, protocol).
    Io,
    /// An SQLite error other than a constraint.
    Sqlite,
    /// Something percore itself found wrong (a row that should exist did not).
    Internal,
}

impl ErrorClass {
    /// Integrity constraint violations, SQLSTATE class 23, whichever store raised them.
    pub const CONSTRAINT: ErrorClass = ErrorClass::SqlState(*b"23");

    pub fn label(&self) -> &str {
        match self {
            ErrorClass::SqlState(class) => std::str::from_utf8(class).unwrap_or("??"),
            ErrorClass::Io => "io",
            ErrorClass::Sqlite => "sqlite",
            ErrorClass::Internal => "internal",
        }
    }
}

impl StoreError {
    /// Something percore found wrong with what the store returned (a 500).
    pub fn internal(message: impl Into<String>) -> StoreError {
        StoreError::Other(Fault { class: ErrorClass::Internal, message: message.into() })
    }

    pub fn is_connection(&self) -> bool {
        matches!(self, StoreError::Connection(_))
    }

    /// The class this failure is counted under.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Connection(f) | StoreError::Other(f) => f.class,
            StoreError::Unique | StoreError::ForeignKey => ErrorClass::CONSTRAINT,
        }
    }

    /// The same failure, its message prefixed with where it happened.
    pub fn context(self, what: &str) -> StoreError {
        match self {
            StoreError::Connection(f) => {
                StoreError::Connection(Fault { message: format!("{what}: {}", f.message), ..f })
            }
            StoreError::Other(f) => StoreError::Other(Fault { message: format!("{what}: {}", f.message), ..f }),
            e => e,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Connection(e) => write!(f, "connection failed: {}", e.message),
            StoreError::Unique => f.write_str("unique constraint violated"),
            StoreError::ForeignKey => f.write_str("foreign key constraint violated"),
            StoreError::Other(e) => f.write_str(&e.message),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ffi::ErrorCode;
        let fault = |e: &rusqlite::Error| Fault { class: ErrorClass::Sqlite, message: e.to_string() };
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
                StoreError::Connection(fault(&e))
            }
            _ => StoreError::Other(fault(&e)),
        }
    }
}

/// A Postgres error as a person needs to read it. For an error the server sent:
/// `ERROR 26000: prepared statement "s3" does not exist` plus its detail and hint; for
/// one without (I/O, a closed connection), the library's words and their cause.
pub fn describe_pg(e: &postgres::Error) -> String {
    use std::fmt::Write;
    if let Some(db) = e.as_db_error() {
        let mut out = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            let _ = write!(out, " (detail: {detail})");
        }
        if let Some(hint) = db.hint() {
            let _ = write!(out, " (hint: {hint})");
        }
        return out;
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let said = c.to_string();
        if !out.contains(&said) {
            let _ = write!(out, ": {said}");
        }
        cause = c.source();
    }
    out
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        use postgres::error::SqlState;
        let message = describe_pg(&e);
        match e.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Unique,
            Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::ForeignKey,
            Some(c) => {
                let code = c.code().as_bytes();
                let class = ErrorClass::SqlState([code[0], code.get(1).copied().unwrap_or(b'?')]);
                let fault = Fault { class, message };
                // The server is going away or refuses us: the connection is as good as closed.
                if c.code().starts_with("08") || c.code().starts_with("57P") || c.code().starts_with("53") {
                    StoreError::Connection(fault)
                } else {
                    StoreError::Other(fault)
                }
            }
            // No SQLSTATE: the connection closed, or an I/O error on it.
            None if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) => {
                StoreError::Connection(Fault { class: ErrorClass::Io, message })
            }
            None => StoreError::Other(Fault { class: ErrorClass::Io, message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_short_bounded_labels() {
        assert_eq!(ErrorClass::SqlState(*b"26").label(), "26");
        assert_eq!(ErrorClass::CONSTRAINT.label(), "23");
        assert_eq!(StoreError::Unique.class(), ErrorClass::CONSTRAINT);
        assert_eq!(StoreError::internal("x").class().label(), "internal");
        assert_eq!(StoreError::internal("no row").context("migration 3").to_string(), "migration 3: no row");
    }
}
