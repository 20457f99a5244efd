//! ⑦ One open database connection, SQLite or Postgres, owned by one pool thread with its
//! prepared statements — and the errors that come out of it, sorted by what the pool and
//! the HTTP layer must do about them.

use std::collections::HashMap;
use std::time::Instant;

use postgres::error::SqlState;
use postgres::types::{ToSql, Type};

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

/// A Postgres statement with the types of its parameters. The types let a statement go
/// unnamed in one round trip (Parse, Bind, Execute, Sync) when DB_STATEMENT_CACHE=off: no
/// prepare to learn them, nothing left on the server connection.
pub struct PgSql {
    pub text: &'static str,
    pub types: &'static [Type],
}

impl PgSql {
    pub const fn new(text: &'static str, types: &'static [Type]) -> PgSql {
        PgSql { text, types }
    }
}

/// The idle check: a statement through the same path as requests' statements, so a
/// pooler that loses prepared statements fails it too.
pub const PING: PgSql = PgSql::new("SELECT 1", &[]);

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A Postgres client and, with DB_STATEMENT_CACHE=on, its prepared statements: prepared
/// once per connection on first use and kept for its lifetime.
pub struct Pg {
    pub client: postgres::Client,
    cache: bool,
    statements: HashMap<&'static str, postgres::Statement>,
}

impl Pg {
    pub fn new(client: postgres::Client, cache: bool) -> Pg {
        Pg { client, cache, statements: HashMap::new() }
    }

    /// The prepared statement for `sql`, preparing it on first use.
    fn statement(&mut self, sql: &PgSql) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql.text) {
            return Ok(s.clone());
        }
        let s = self.client.prepare_typed(sql.text, sql.types)?;
        self.statements.insert(sql.text, s.clone());
        Ok(s)
    }

    /// Runs `prepared` with the cached statement. A statement the server connection does
    /// not have (a pooler swapped it) is forgotten, so the next use prepares it again.
    fn prepared<T>(
        &mut self,
        sql: &PgSql,
        run: impl FnOnce(&mut postgres::Client, &postgres::Statement) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let statement = self.statement(sql)?;
        let result = run(&mut self.client, &statement);
        if result.as_ref().err().and_then(postgres::Error::code) == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
            self.statements.remove(sql.text);
        }
        result
    }

    fn typed<'p>(sql: &PgSql, params: Params<'p>) -> Vec<(&'p (dyn ToSql + Sync), Type)> {
        debug_assert_eq!(sql.types.len(), params.len(), "{}", sql.text);
        params.iter().copied().zip(sql.types.iter().cloned()).collect()
    }

    pub fn query(&mut self, sql: &PgSql, params: Params<'_>) -> Result<Vec<postgres::Row>, postgres::Error> {
        if self.cache {
            self.prepared(sql, |c, s| c.query(s, params))
        } else {
            self.client.query_typed(sql.text, &Self::typed(sql, params))
        }
    }

    pub fn query_opt(&mut self, sql: &PgSql, params: Params<'_>) -> Result<Option<postgres::Row>, postgres::Error> {
        if self.cache {
            self.prepared(sql, |c, s| c.query_opt(s, params))
        } else {
            self.client.query_typed_opt(sql.text, &Self::typed(sql, params))
        }
    }

    /// Rows changed. Unnamed (DB_STATEMENT_CACHE=off), the count is the rows returned: a
    /// statement whose count matters says `RETURNING`.
    pub fn execute(&mut self, sql: &PgSql, params: Params<'_>) -> Result<u64, postgres::Error> {
        if self.cache {
            self.prepared(sql, |c, s| c.execute(s, params))
        } else {
            self.client.query_typed(sql.text, &Self::typed(sql, params)).map(|rows| rows.len() as u64)
        }
    }
}

impl Conn {
    /// Opens a connection to the configured store and brings its schema up to date.
    /// With `bench_routes`, the TechEmpower tables are created too.
    pub fn open(config: &StoreConfig, bench_routes: bool, statement_cache: bool) -> Result<Conn, StoreError> {
        let kind = match config {
            StoreConfig::Sqlite { path } => ConnKind::Sqlite(super::sqlite::open(path, bench_routes)?),
            StoreConfig::Postgres(pg) => {
                ConnKind::Postgres(Box::new(Pg::new(super::postgres::open(pg, bench_routes)?, statement_cache)))
            }
        };
        Ok(Conn { kind, opened: Instant::now(), deadlock_retries: 0 })
    }

    /// A cheap round trip that proves the connection still works, the way requests use it
    /// (on Postgres a prepared statement when DB_STATEMENT_CACHE=on). On SQLite the
    /// statement is prepared once: an idle server pings every second and need not compile
    /// SQL for it.
    pub fn ping(&mut self) -> Result<(), StoreError> {
        match &mut self.kind {
            ConnKind::Sqlite(c) => c
                .prepare_cached(super::sqlite::PING)
                .and_then(|mut s| s.query_row([], |_| Ok(())))
                .map_err(StoreError::from),
            ConnKind::Postgres(pg) => pg.query(&PING, &[]).map(|_| ()).map_err(StoreError::from),
        }
    }
}
