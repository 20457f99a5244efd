//! The schema, as embedded, versioned migrations for each store.
//!
//! Each store runs the migrations it has not recorded in `percore_schema`, in order, each
//! in its own transaction with its version row, under a lock that makes replicas starting
//! at once take turns (SQLite: `BEGIN IMMEDIATE`; Postgres: a transaction-scoped advisory
//! lock). A migration, once released, is never edited: a change is a new version.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "users, orders, preferences",
    sqlite: "
        CREATE TABLE users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            email TEXT NOT NULL,
            created_at INTEGER NOT NULL DEFAULT (unixepoch())
        );
        CREATE UNIQUE INDEX users_email_key ON users (lower(email));
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            item TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity >= 1),
            price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
            created_at INTEGER NOT NULL DEFAULT (unixepoch())
        );
        CREATE INDEX orders_user_id ON orders (user_id, id);
        CREATE TABLE preferences (
            user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            data TEXT NOT NULL,
            updated_at INTEGER NOT NULL DEFAULT (unixepoch())
        );
    ",
    postgres: "
        CREATE TABLE users (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX users_email_key ON users (lower(email));
        CREATE TABLE orders (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            item TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity >= 1),
            price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX orders_user_id ON orders (user_id, id);
        CREATE TABLE preferences (
            user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            data JSONB NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
    ",
}];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_by_one_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
    }
}
