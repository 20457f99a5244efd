//! What can go wrong in a store, sorted by what the pool and the HTTP layer must do about
//! it, and described as a person needs to read it. A leaf: every store and job uses it,
//! it uses none of them.

use std::fmt;

/// What went wrong in the store, sorted by consequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// The connection is unusable (refused, closed, reset): drop it and reconnect.
    Connection(Fault),
    /// A unique constraint: the caller gets 409.
    Unique,
    /// A foreign key: the referenced row is gone (404).
    ForeignKey,
    /// A prepared statement this connection made is not on the server connection
    /// (SQLSTATE 26000), or its name is taken there (42P05). A transaction-mode pooler sits
    /// between percore and Postgres and hands each transaction another server connection.
    /// The connection is kept (it is not lost); readiness says so; DB_STATEMENT_CACHE=off
    /// is the cure.
    Statements(Fault),
    /// Anything else: a bug or a schema problem (500), the connection is kept.
    Other(Fault),
}

/// A failure as the log and the metrics need it: what the store said, whole (for Postgres
/// the severity, SQLSTATE, message, detail and hint — the client library's own Display
/// says only "db error"), and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) class: ErrorClass,
    pub(crate) message: String,
}

/// The `class` label of `db_store_errors_total`: bounded by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ErrorClass {
    /// The first two characters of a Postgres SQLSTATE (`08` connection, `26` invalid
    /// statement name, `40` transaction rollback, …).
    SqlState([u8; 2]),
    /// No SQLSTATE: the connection failed or closed underneath (I/O, timeout, protocol).
    Io,
    /// The TLS handshake with the store failed or was refused (a certificate that does not
    /// verify, a server without TLS where the sslmode requires it).
    Tls,
    /// An SQLite error other than a constraint.
    Sqlite,
    /// Something percore itself found wrong (a row that should exist did not).
    Internal,
}

impl ErrorClass {
    /// Integrity constraint violations, SQLSTATE class 23, whichever store raised them.
    pub(crate) const CONSTRAINT: ErrorClass = ErrorClass::SqlState(*b"23");

    pub(crate) fn label(&self) -> &str {
        match self {
            ErrorClass::SqlState(class) => std::str::from_utf8(class).unwrap_or("??"),
            ErrorClass::Io => "io",
            ErrorClass::Tls => "tls",
            ErrorClass::Sqlite => "sqlite",
            ErrorClass::Internal => "internal",
        }
    }
}

impl StoreError {
    /// Something percore found wrong with what the store returned (a 500).
    pub(crate) fn internal(message: impl Into<String>) -> StoreError {
        StoreError::Other(Fault { class: ErrorClass::Internal, message: message.into() })
    }

    pub(crate) fn is_connection(&self) -> bool {
        matches!(self, StoreError::Connection(_))
    }

    /// Whether the store, not the request, is at fault: what readiness counts. A
    /// constraint, or data the store refused (SQLSTATE classes 22 and 23), is the request's.
    pub(crate) fn is_store_side(&self) -> bool {
        match self {
            StoreError::Connection(_) | StoreError::Statements(_) => true,
            StoreError::Unique | StoreError::ForeignKey => false,
            StoreError::Other(f) => !matches!(f.class, ErrorClass::SqlState([b'2', b'2' | b'3'])),
        }
    }

    /// The class this failure is counted under.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            StoreError::Connection(f) | StoreError::Other(f) | StoreError::Statements(f) => f.class,
            StoreError::Unique | StoreError::ForeignKey => ErrorClass::CONSTRAINT,
        }
    }

    /// The same failure, its message prefixed with where it happened.
    pub(crate) fn context(self, what: &str) -> StoreError {
        match self {
            StoreError::Connection(f) => {
                StoreError::Connection(Fault { message: format!("{what}: {}", f.message), ..f })
            }
            StoreError::Other(f) => StoreError::Other(Fault { message: format!("{what}: {}", f.message), ..f }),
            StoreError::Statements(f) => {
                StoreError::Statements(Fault { message: format!("{what}: {}", f.message), ..f })
            }
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
            StoreError::Other(e) | StoreError::Statements(e) => f.write_str(&e.message),
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
pub(crate) fn describe_pg(e: &tokio_postgres::Error) -> String {
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
        let said = tls_refusal(c).unwrap_or_else(|| c.to_string());
        if !out.contains(&said) {
            let _ = write!(out, ": {said}");
        }
        cause = c.source();
    }
    out
}

/// A certificate refused by [`crate::tls::client`]'s verifier, in its own words (rustls
/// would show it wrapped in its debug form).
fn tls_refusal(c: &(dyn std::error::Error + 'static)) -> Option<String> {
    let io = c.downcast_ref::<std::io::Error>()?;
    match io.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => Some(other.0.to_string()),
        _ => None,
    }
}

/// Whether connecting failed in the TLS handshake, or because the server offers no TLS where
/// the sslmode demands it (tokio-postgres files both under its TLS kind).
pub(crate) fn is_tls_failure(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none() && e.to_string().starts_with("error performing TLS handshake")
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        use tokio_postgres::error::SqlState;
        let message = describe_pg(&e);
        match e.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Unique,
            Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::ForeignKey,
            Some(c) if *c == SqlState::INVALID_SQL_STATEMENT_NAME || *c == SqlState::DUPLICATE_PSTATEMENT => {
                let code = c.code().as_bytes();
                StoreError::Statements(Fault { class: ErrorClass::SqlState([code[0], code[1]]), message })
            }
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
            None if is_tls_failure(&e) => StoreError::Connection(Fault { class: ErrorClass::Tls, message }),
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
