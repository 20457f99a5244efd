//! The schema, as embedded, versioned migrations for each store.
//!
//! Each store runs the migrations it has not recorded in `percore_schema`, in order, each
//! in its own transaction with its version row, under a lock that makes replicas starting
//! at once take turns (SQLite: `BEGIN IMMEDIATE`; Postgres: a transaction-scoped advisory
//! lock). A migration, once released, is never edited: a change is a new version.
//!
//! [`BENCH_MIGRATIONS`] (the TechEmpower `world` and `fortune` tables) are applied only
//! when BENCH_ROUTES is on, so a production database never grows benchmark tables; their
//! versions start at 1001 to stay out of the API's sequence.

pub struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
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

/// The 12 fortunes of the TechEmpower specification, the same rows for both stores.
macro_rules! insert_fortunes {
    () => {
        "
        INSERT INTO fortune (id, message) VALUES
            (1, 'fortune: No such file or directory'),
            (2, 'A computer scientist is someone who fixes things that aren''t broken.'),
            (3, 'After enough decimal places, nobody gives a damn.'),
            (4, 'A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1'),
            (5, 'A computer program does what you tell it to do, not what you want it to do.'),
            (6, 'Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen'),
            (7, 'Any program that runs right is obsolete.'),
            (8, 'A list is only as strong as its weakest link. — Donald Knuth'),
            (9, 'Feature: A bug with seniority.'),
            (10, 'Computers make very fast, very accurate mistakes.'),
            (11, '<script>alert(\"This should not be displayed in a browser alert box.\");</script>'),
            (12, 'フレームワークのベンチマーク')
        ON CONFLICT DO NOTHING;
        "
    };
}

/// The TechEmpower tables: 10,000 worlds with random numbers 1–10,000, and the 12
/// fortunes of the benchmark's specification. A database TechEmpower's own script created
/// (perf/bench.py's private one) already has them: they are kept as they are.
pub(crate) const BENCH_MIGRATIONS: &[Migration] = &[Migration {
    version: 1001,
    name: "techempower world and fortune",
    sqlite: concat!(
        "
        CREATE TABLE world (id INTEGER PRIMARY KEY, randomnumber INTEGER NOT NULL);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
        INSERT INTO world (id, randomnumber) SELECT i, abs(random()) % 10000 + 1 FROM n;
        CREATE TABLE fortune (id INTEGER PRIMARY KEY, message TEXT NOT NULL);",
        insert_fortunes!()
    ),
    postgres: concat!(
        "
        CREATE TABLE IF NOT EXISTS world (id INTEGER PRIMARY KEY, randomnumber INTEGER NOT NULL);
        INSERT INTO world (id, randomnumber) SELECT g, floor(random() * 10000 + 1)::int FROM generate_series(1, 10000) g
            WHERE NOT EXISTS (SELECT 1 FROM world);
        CREATE TABLE IF NOT EXISTS fortune (id INTEGER PRIMARY KEY, message VARCHAR(2048) NOT NULL);",
        insert_fortunes!()
    ),
}];

/// The guide's example resource (docs/adding-a-resource.md), only with its feature, so no
/// production database gets its table; its versions start at 2001, out of the API's way.
/// (A real resource's migration is the next version of [`MIGRATIONS`].)
#[cfg(feature = "example-resource")]
pub(crate) const EXAMPLE_MIGRATIONS: &[Migration] = &[Migration {
    version: 2001,
    name: "products",
    sqlite: "CREATE TABLE products (id INTEGER PRIMARY KEY AUTOINCREMENT,
             name TEXT NOT NULL, price_cents INTEGER NOT NULL CHECK (price_cents >= 0));",
    postgres: "CREATE TABLE products (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
               name TEXT NOT NULL, price_cents BIGINT NOT NULL CHECK (price_cents >= 0));",
}];
#[cfg(not(feature = "example-resource"))]
pub(crate) const EXAMPLE_MIGRATIONS: &[Migration] = &[];

/// The migrations a store needs: the API's, and the benchmark's when its routes are on.
pub(crate) fn wanted(bench_routes: bool) -> impl Iterator<Item = &'static Migration> {
    MIGRATIONS.iter().chain(BENCH_MIGRATIONS.iter().filter(move |_| bench_routes)).chain(EXAMPLE_MIGRATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_by_one_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
        for (i, m) in BENCH_MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, 1001 + i as i64, "{}", m.name);
        }
        for (i, m) in EXAMPLE_MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, 2001 + i as i64, "{}", m.name);
        }
        assert_eq!(wanted(false).count(), MIGRATIONS.len() + EXAMPLE_MIGRATIONS.len());
        assert_eq!(wanted(true).count(), MIGRATIONS.len() + BENCH_MIGRATIONS.len() + EXAMPLE_MIGRATIONS.len());
    }
}
