//! ⑦ One open database connection, SQLite or Postgres, owned by one pool thread with its
//! prepared statements — and the errors that come out of it, sorted by what the pool and
//! the HTTP layer must do about them.

use std::collections::HashMap;
use std::time::Instant;

use super::error::StoreError;
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
