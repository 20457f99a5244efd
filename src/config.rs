//! Environment → validated [`Config`]; nothing else in percore reads the environment.
//!
//! Every setting is declared once in [`SETTINGS`], which drives both `percore --help` and
//! the parser, so the two cannot drift. Values are read once at start-up. A value that does
//! not parse stops the start: [`ConfigError`] names the variable, the value and what was
//! expected, and `main` exits with code 2. Nothing falls back silently — the article's
//! `getEnvInt` turns `SERVER_PORT=80a` into port 8080 without a word; percore refuses it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// One environment variable: its name, its default as shown in `--help`, and what it does.
pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub(crate) help: &'static str,
}

/// Every variable percore reads, in the order `--help` lists them.
pub const SETTINGS: &[Setting] = &[
    Setting { name: "SERVER_HOST", default: "0.0.0.0", help: "address the API listener binds (an IP address)" },
    Setting { name: "SERVER_PORT", default: "8080", help: "port of the API listener (0 picks a free one)" },
    Setting {
        name: "SERVER_READ_TIMEOUT",
        default: "5s",
        help: "time to receive a whole request once its first byte came; then 408",
    },
    Setting { name: "SERVER_WRITE_TIMEOUT", default: "10s", help: "time to write a whole response to a client" },
    Setting {
        name: "SERVER_IDLE_TIMEOUT",
        default: "120s",
        help: "a keep-alive connection with no request in flight is closed after this",
    },
    Setting { name: "HANDLER_TIMEOUT", default: "30s", help: "one request's deadline; past it the client gets 503" },
    Setting {
        name: "SHUTDOWN_DELAY",
        default: "0s",
        help: "after SIGTERM, /readyz is 503 but connections are still accepted and served (closing after each response) for this long before the drain: for balancers that learn from health checks, with no preStop hook",
    },
    Setting { name: "SHUTDOWN_TIMEOUT", default: "25s", help: "drain deadline after SIGTERM/SIGINT (after SHUTDOWN_DELAY)" },
    Setting {
        name: "WORKERS",
        default: "auto",
        help: "per-core workers; auto = CPUs in the affinity mask, capped by the cgroup CPU quota (rounded up)",
    },
    Setting {
        name: "PIN_WORKERS",
        default: "auto",
        help:
            "pin worker i to CPU i of the mask (on/off); auto pins when the mask is a strict subset of the online CPUs",
    },
    Setting {
        name: "WORKER_SLICE",
        default: "off",
        help: "the CPU slice each worker asks of Linux's fair scheduler (6.12+), 100us-100ms, e.g. 100us on a shared node: a waking worker then preempts a neighbour on its CPU at once instead of after the neighbour's slice (lower tails beside busy neighbours, 2-4% more CPU at saturation beside a local Postgres: perf/README.md); off keeps the kernel's",
    },
    Setting {
        name: "IO_DRIVER",
        default: "auto",
        help: "auto, io_uring or epoll; auto falls back to epoll where io_uring is unavailable",
    },
    Setting {
        name: "MAX_CONNECTIONS",
        default: "65536",
        help: "open client connections per process; past it, accepting pauses",
    },
    Setting {
        name: "CONN_BALANCE",
        default: "exact",
        help: "exact: workers' live connections differ by at most one (a busier worker hands a new one over); kernel: the SO_REUSEPORT hash alone",
    },
    Setting {
        name: "MAX_HEADER_BYTES",
        default: "16384",
        help: "largest request head (request line and headers); 431 beyond it",
    },
    Setting { name: "MAX_BODY_BYTES", default: "1048576", help: "largest request body; 413 beyond it" },
    Setting {
        name: "MAX_BODY_MEMORY",
        default: "auto",
        help: "bytes of request bodies held at once, all connections together; past it, 503. auto = half the cgroup memory limit, else a quarter of RAM",
    },
    Setting {
        name: "DATABASE_URL",
        default: "",
        help: "postgres://USER:PASS@HOST:PORT/DB?sslmode=… or sqlite://PATH; wins over DB_HOST and SQLITE_PATH",
    },
    Setting {
        name: "DB_HOST",
        default: "",
        help: "Postgres host; when set (and DATABASE_URL is not), Postgres is the store",
    },
    Setting { name: "DB_PORT", default: "5432", help: "Postgres port" },
    Setting { name: "DB_USER", default: "postgres", help: "Postgres user" },
    Setting { name: "DB_PASSWORD", default: "", help: "Postgres password (never logged)" },
    Setting { name: "DB_NAME", default: "app", help: "Postgres database" },
    Setting {
        name: "DB_SSLMODE",
        default: "disable",
        help: "libpq's sslmode: disable, allow, prefer, require, verify-ca or verify-full (with DATABASE_URL: its sslmode=, else this if set, else prefer)",
    },
    Setting {
        name: "DB_SSLROOTCERT",
        default: "",
        help: "roots a Postgres certificate must lead to: a PEM file, or system (Mozilla's roots, built in; implies verify-full). Given, require checks the chain as verify-ca does",
    },
    Setting { name: "DB_SSLCERT", default: "", help: "client certificate chain (PEM) for Postgres, with DB_SSLKEY" },
    Setting {
        name: "DB_SSLKEY",
        default: "",
        help: "the client certificate's private key (PEM: PKCS#8, RSA or EC), with DB_SSLCERT",
    },
    Setting {
        name: "SQLITE_PATH",
        default: "percore.db",
        help: "the embedded SQLite store, used when no Postgres is configured",
    },
    Setting {
        name: "DB_POOL_SIZE",
        default: "auto",
        help: "blocking database threads, one connection each; auto = workers + 1, at least 3",
    },
    Setting {
        name: "DB_QUEUE_DEPTH",
        default: "1024",
        help: "database jobs waiting for a thread before requests get 503",
    },
    Setting { name: "DB_CONN_MAX_LIFETIME", default: "5m", help: "a database connection older than this is replaced" },
    Setting {
        name: "DB_STATEMENT_CACHE",
        default: "on",
        help: "Postgres: prepare each statement once per connection (on), or send every statement unnamed in one round trip (off), for transaction-mode poolers such as PgBouncer before 1.21",
    },
    Setting {
        name: "DB_PIPELINE_JOBS",
        default: "16",
        help: "Postgres: most jobs a pool thread keeps in flight on its connection, taking more as each finishes (1: one job at a time)",
    },
    Setting {
        name: "DB_THREAD_SCHED",
        default: "batch",
        help: "Linux scheduling policy of the database threads: batch (SCHED_BATCH: a reply that wakes one never preempts a worker or a local Postgres mid-work) or normal",
    },
    Setting {
        name: "DB_BATCH_READS",
        default: "on",
        help: "Postgres: answer user reads that wait together with one = ANY($1) query (on/off)",
    },
    Setting {
        name: "ADMISSION_TARGET",
        default: "5ms",
        help: "a database job waiting this long for a pool thread is late; late for a whole ADMISSION_INTERVAL is a standing queue, and new requests for the store get 503 + Retry-After before any work until it drains (off: never refuse)",
    },
    Setting {
        name: "ADMISSION_INTERVAL",
        default: "100ms",
        help: "how long waits must stay above ADMISSION_TARGET to count as a standing queue; also how long a connection answered 503 by the store's routes goes unread",
    },
    Setting {
        name: "ADMISSION_LOOP_LAG",
        default: "off",
        help: "on: also refuse requests for the store while a worker's loop runs late by ADMISSION_TARGET for an ADMISSION_INTERVAL (shorter waits for accepted requests, less goodput: perf/README.md)",
    },
    Setting {
        name: "TLS_CERT_FILE",
        default: "",
        help: "certificate chain (PEM); with TLS_KEY_FILE, SERVER_PORT speaks TLS 1.2/1.3 (ALPN http/1.1), reloading both files when they change",
    },
    Setting { name: "TLS_KEY_FILE", default: "", help: "the certificate's private key (PEM: PKCS#8, RSA or EC)" },
    Setting {
        name: "TLS_CLIENT_CA_FILE",
        default: "",
        help: "CA certificates (PEM): when set, clients must present a certificate that leads to them (mTLS)",
    },
    Setting {
        name: "TLS_RESUMPTION",
        default: "on",
        help: "on: clients may resume TLS sessions (tickets, and a session cache for TLS 1.2); off: every handshake is a full one",
    },
    Setting {
        name: "DEBUG_ADDR",
        default: "127.0.0.1:6060",
        help: "profiling listener (pprof, flamegraphs); empty disables it",
    },
    Setting {
        name: "BENCH_ROUTES",
        default: "off",
        help: "mount the TechEmpower routes /plaintext /json /db /queries /fortunes /updates",
    },
    Setting { name: "RUST_LOG", default: "info", help: "log filter, env_logger syntax (e.g. info,percore=debug)" },
    Setting { name: "LOG_FORMAT", default: "text", help: "text, or json for one JSON object per line" },
    Setting { name: "ACCESS_LOG", default: "off", help: "on logs one line per request" },
];

/// The validated configuration. Built once by [`Config::from_env`] and shared read-only.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) host: IpAddr,
    pub(crate) port: u16,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) handler_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) shutdown_delay: Duration,
    pub(crate) workers: Workers,
    pub(crate) pin_workers: Toggle,
    /// WORKER_SLICE (`None`: off, the kernel's own).
    pub(crate) worker_slice: Option<Duration>,
    pub(crate) io_driver: DriverChoice,
    pub(crate) max_connections: usize,
    pub(crate) conn_balance: Balance,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body_bytes: usize,
    /// `None` = auto (decided at start from the cgroup or the machine).
    pub(crate) max_body_memory: Option<usize>,
    pub(crate) store: StoreConfig,
    pub(crate) db_pool_size: Option<usize>,
    pub(crate) db_queue_depth: usize,
    pub(crate) db_conn_max_lifetime: Duration,
    pub(crate) db_batch_reads: bool,
    pub(crate) db_pipeline_jobs: usize,
    pub(crate) db_thread_sched: DbThreadSched,
    pub(crate) db_statement_cache: bool,
    /// ADMISSION_TARGET (`None`: off) and ADMISSION_INTERVAL.
    pub(crate) admission: Option<AdmissionConfig>,
    /// ADMISSION_LOOP_LAG: the loop's lateness is a second door (net/lag.rs).
    pub(crate) admission_loop_lag: bool,
    /// TLS_CERT_FILE and TLS_KEY_FILE (and TLS_CLIENT_CA_FILE): the listener speaks TLS.
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) debug_addr: Option<SocketAddr>,
    pub(crate) bench_routes: bool,
    pub(crate) log_filter: String,
    pub(crate) log_format: LogFormat,
    pub(crate) access_log: bool,
}

/// When the doors to the store refuse (codel.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AdmissionConfig {
    pub(crate) target: Duration,
    pub(crate) interval: Duration,
}

fn admission_from(env: &Env<'_>) -> Result<Option<AdmissionConfig>, ConfigError> {
    let target = env.parse("ADMISSION_TARGET", &format!("off, or {DURATION}"), |v| match v {
        "off" => Some(None),
        v => parse_duration(v).filter(|d| !d.is_zero()).map(Some),
    })?;
    let interval = env.duration("ADMISSION_INTERVAL")?;
    Ok(target.map(|target| AdmissionConfig { target, interval }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workers {
    Auto,
    Count(usize),
}

/// A setting that is on, off, or decided from the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Toggle {
    Auto,
    On,
    Off,
}

/// The scheduling policy of the database threads (DB_THREAD_SCHED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DbThreadSched {
    /// SCHED_BATCH: woken threads wait for the running one to block or use up its slice.
    Batch,
    /// SCHED_OTHER, the default of every thread.
    Normal,
}

/// How new connections are spread over the workers (CONN_BALANCE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Balance {
    /// Live connection counts differ by at most one: a worker that accepts while it holds
    /// more than the least-loaded one hands the connection over.
    Exact,
    /// Where the kernel's SO_REUSEPORT hash puts them.
    Kernel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DriverChoice {
    Auto,
    IoUring,
    Epoll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Which store serves the API.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum StoreConfig {
    Sqlite { path: PathBuf },
    Postgres(PgConfig),
}

/// Postgres connection parameters, from DATABASE_URL or the DB_* variables.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PgConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) dbname: String,
    pub(crate) sslmode: SslMode,
    /// The roots the server's certificate must lead to (`sslrootcert`).
    pub(crate) sslrootcert: Option<SslRoots>,
    /// A client certificate chain and its key (`sslcert`, `sslkey`), for `hostssl … cert`.
    pub(crate) sslcert: Option<(FileSetting, FileSetting)>,
}

/// libpq's `sslmode`, with libpq's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plain text only.
    Disable,
    /// Plain text first; TLS if the server refuses a plain connection.
    Allow,
    /// TLS first; plain text if the server offers no TLS or the TLS attempt fails.
    Prefer,
    /// TLS only; the certificate is checked against `sslrootcert` when one is given.
    Require,
    /// TLS only; the chain must lead to `sslrootcert`.
    VerifyCa,
    /// TLS only; the chain must lead to `sslrootcert` and name the host.
    VerifyFull,
}

impl SslMode {
    /// The word libpq uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the roots for a Postgres certificate come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SslRoots {
    /// `system`: Mozilla's root set, built into the binary.
    System,
    File(FileSetting),
}

/// A file named by a setting, with the setting, so a file that cannot be read at start is
/// reported under the name the operator used (`DB_SSLKEY`, or `DATABASE_URL`'s `sslkey`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileSetting {
    pub(crate) path: PathBuf,
    pub(crate) var: &'static str,
}

/// The listener's certificate, key and, for mTLS, the client CAs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_ca: Option<PathBuf>,
    /// TLS_RESUMPTION: session tickets and the TLS 1.2 session cache.
    pub(crate) resumption: bool,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
            StoreConfig::Postgres(pg) => write!(f, "{pg:?}"),
        }
    }
}

/// Shows where a Postgres store is without its password, so it can go in a log line.
impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }
}

/// Why the configuration was refused: one line naming the variable, the value and what is
/// expected.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub(crate) var: &'static str,
    pub(crate) value: String,
    pub(crate) expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: expected {}", self.var, self.value, self.expected)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads every setting from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads every setting through `lookup`, so tests can hand in a map instead of the
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env { lookup: &lookup };
        let config = Config {
            host: env.parse("SERVER_HOST", "an IP address such as 0.0.0.0 or ::", |v| v.parse().ok())?,
            port: env.parse("SERVER_PORT", "a port number 0-65535", |v| v.parse().ok())?,
            read_timeout: env.duration("SERVER_READ_TIMEOUT")?,
            write_timeout: env.duration("SERVER_WRITE_TIMEOUT")?,
            idle_timeout: env.duration("SERVER_IDLE_TIMEOUT")?,
            handler_timeout: env.duration("HANDLER_TIMEOUT")?,
            shutdown_timeout: env.parse("SHUTDOWN_TIMEOUT", DURATION_OR_ZERO, parse_duration)?,
            shutdown_delay: env.parse("SHUTDOWN_DELAY", DURATION_OR_ZERO, parse_duration)?,
            workers: env.parse("WORKERS", "auto or a number of workers 1-1024", |v| match v {
                "auto" => Some(Workers::Auto),
                n => n.parse().ok().filter(|n| (1..=1024).contains(n)).map(Workers::Count),
            })?,
            pin_workers: env.parse("PIN_WORKERS", "auto, on or off", |v| match v {
                "auto" => Some(Toggle::Auto),
                v => parse_bool(v).map(|on| if on { Toggle::On } else { Toggle::Off }),
            })?,
            worker_slice: env.parse("WORKER_SLICE", "off, or a duration from 100us to 100ms", |v| match v {
                "off" => Some(None),
                v => parse_duration(v).filter(|d| (SLICE_SHORTEST..=SLICE_LONGEST).contains(d)).map(Some),
            })?,
            io_driver: env.parse("IO_DRIVER", "auto, io_uring or epoll", |v| match v {
                "auto" => Some(DriverChoice::Auto),
                "io_uring" | "iouring" | "uring" => Some(DriverChoice::IoUring),
                "epoll" => Some(DriverChoice::Epoll),
                _ => None,
            })?,
            max_connections: env.count("MAX_CONNECTIONS", 1, 10_000_000)?,
            conn_balance: env.parse("CONN_BALANCE", "exact or kernel", |v| match v {
                "exact" => Some(Balance::Exact),
                "kernel" => Some(Balance::Kernel),
                _ => None,
            })?,
            max_header_bytes: env.count("MAX_HEADER_BYTES", 1024, 1 << 20)?,
            max_body_bytes: env.count("MAX_BODY_BYTES", 0, 1 << 30)?,
            max_body_memory: env.parse(
                "MAX_BODY_MEMORY",
                "auto or a number of bytes, at least MAX_BODY_BYTES",
                |v| match v {
                    "auto" => Some(None),
                    n => n
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n >= env.count("MAX_BODY_BYTES", 0, 1 << 30).unwrap_or(0))
                        .map(Some),
                },
            )?,
            store: store_from(&env)?,
            db_pool_size: env.parse("DB_POOL_SIZE", "auto or a number of threads 1-1024", |v| match v {
                "auto" => Some(None),
                n => n.parse().ok().filter(|n| (1..=1024).contains(n)).map(Some),
            })?,
            db_queue_depth: env.count("DB_QUEUE_DEPTH", 1, 1 << 24)?,
            db_conn_max_lifetime: env.duration("DB_CONN_MAX_LIFETIME")?,
            db_batch_reads: env.parse("DB_BATCH_READS", "on or off", parse_bool)?,
            db_pipeline_jobs: env.count("DB_PIPELINE_JOBS", 1, 4096)?,
            db_thread_sched: env.parse("DB_THREAD_SCHED", "batch or normal", |v| match v {
                "batch" => Some(DbThreadSched::Batch),
                "normal" | "other" => Some(DbThreadSched::Normal),
                _ => None,
            })?,
            db_statement_cache: env.parse("DB_STATEMENT_CACHE", "on or off", parse_bool)?,
            admission: admission_from(&env)?,
            admission_loop_lag: env.parse("ADMISSION_LOOP_LAG", "on or off", parse_bool)?,
            tls: tls_files(&env)?,
            debug_addr: env.parse("DEBUG_ADDR", "HOST:PORT such as 127.0.0.1:6060, or empty to disable", |v| {
                if v.is_empty() {
                    Some(None)
                } else {
                    v.parse().ok().map(Some)
                }
            })?,
            bench_routes: env.parse("BENCH_ROUTES", "on or off", parse_bool)?,
            log_filter: env.get("RUST_LOG"),
            log_format: env.parse("LOG_FORMAT", "text or json", |v| match v {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                _ => None,
            })?,
            access_log: env.parse("ACCESS_LOG", "on or off", parse_bool)?,
        };
        Ok(config)
    }
}

const DURATION: &str = "a duration above zero such as 500ms, 5s or 2m";
const DURATION_OR_ZERO: &str = "a duration such as 0s, 500ms, 5s or 2m";

/// The environment seen through the defaults of [`SETTINGS`].
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The variable's value, or its declared default when it is unset.
    fn get(&self, var: &'static str) -> String {
        (self.lookup)(var).unwrap_or_else(|| default_of(var).to_owned())
    }

    fn is_set(&self, var: &str) -> bool {
        (self.lookup)(var).is_some()
    }

    fn parse<T>(&self, var: &'static str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, ConfigError> {
        let value = self.get(var);
        parse(value.trim()).ok_or_else(|| ConfigError { var, value, expected: expected.to_owned() })
    }

    fn duration(&self, var: &'static str) -> Result<Duration, ConfigError> {
        self.parse(var, DURATION, |v| parse_duration(v).filter(|d| !d.is_zero()))
    }

    fn count(&self, var: &'static str, min: usize, max: usize) -> Result<usize, ConfigError> {
        let expected = format!("a whole number from {min} to {max}");
        self.parse(var, &expected, |v| v.parse().ok().filter(|n| (min..=max).contains(n)))
    }
}

fn default_of(var: &str) -> &'static str {
    SETTINGS.iter().find(|s| s.name == var).map(|s| s.default).unwrap_or("")
}

/// `on/off`, `true/false`, `1/0`, `yes/no`.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// The kernel's bounds on the slice a thread may ask for (WORKER_SLICE): outside them it
/// clamps, so a value there would not mean what it says.
pub const SLICE_SHORTEST: Duration = Duration::from_micros(100);
pub const SLICE_LONGEST: Duration = Duration::from_millis(100);

/// `100us`, `500ms`, `5s`, `2m`, `1h`, and `0s`. A bare number is refused: it is ambiguous.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = v.split_at(split);
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    match unit {
        "us" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// DATABASE_URL wins; then DB_HOST selects Postgres; else the embedded SQLite file.
fn store_from(env: &Env<'_>) -> Result<StoreConfig, ConfigError> {
    if env.is_set("DATABASE_URL") {
        let url = env.get("DATABASE_URL");
        let parsed = parse_database_url(&url).map_err(|expected| ConfigError {
            var: "DATABASE_URL",
            value: redact_url(&url),
            expected,
        })?;
        return match parsed {
            (StoreConfig::Postgres(pg), tls) => ssl_settings(env, pg, tls).map(StoreConfig::Postgres),
            (sqlite, _) => Ok(sqlite),
        };
    }
    if env.is_set("DB_HOST") {
        let host = env.parse("DB_HOST", "a host name or address", |v| (!v.is_empty()).then(|| v.to_owned()))?;
        let pg = PgConfig {
            host,
            port: env.parse("DB_PORT", "a port number 1-65535", |v| v.parse().ok().filter(|p| *p != 0))?,
            user: env.parse("DB_USER", "a user name", |v| (!v.is_empty()).then(|| v.to_owned()))?,
            password: (env.lookup)("DB_PASSWORD").unwrap_or_default(),
            dbname: env.parse("DB_NAME", "a database name", |v| (!v.is_empty()).then(|| v.to_owned()))?,
            sslmode: SslMode::Disable,
            sslrootcert: None,
            sslcert: None,
        };
        return ssl_settings(env, pg, None).map(StoreConfig::Postgres);
    }
    let path = env.parse("SQLITE_PATH", "a file path", |v| (!v.is_empty()).then(|| PathBuf::from(v)))?;
    Ok(StoreConfig::Sqlite { path })
}

const SSLMODES: &str = "disable, allow, prefer, require, verify-ca or verify-full";

fn parse_sslmode(v: &str) -> Option<SslMode> {
    match v {
        "disable" => Some(SslMode::Disable),
        "allow" => Some(SslMode::Allow),
        "prefer" => Some(SslMode::Prefer),
        "require" => Some(SslMode::Require),
        "verify-ca" => Some(SslMode::VerifyCa),
        "verify-full" => Some(SslMode::VerifyFull),
        _ => None,
    }
}

/// TLS parameters a DATABASE_URL named (its query string), each beside the variables that
/// apply when it does not, as libpq's PGSSLMODE and friends do.
#[derive(Default)]
struct Tls {
    sslmode: Option<SslMode>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

/// Completes `pg` with its TLS settings: a DATABASE_URL's parameters (`url`), else the
/// DB_SSL* variables, else the default (libpq's `prefer` for a URL; the article's `disable`
/// for DB_HOST). libpq's rules hold: verify-ca and verify-full need roots,
/// `sslrootcert=system` means verify-full and refuses a weaker mode, and a client
/// certificate needs its key.
fn ssl_settings(env: &Env<'_>, mut pg: PgConfig, url: Option<Tls>) -> Result<PgConfig, ConfigError> {
    let via_url = url.is_some();
    let url = url.unwrap_or_default();
    let param_or_var = |param: Option<String>, var: &'static str| match param {
        Some(v) => Some((v, "DATABASE_URL")),
        None => (env.lookup)(var).filter(|v| !v.trim().is_empty()).map(|v| (v.trim().to_owned(), var)),
    };
    let explicit = match url.sslmode {
        Some(mode) => Some((mode, "DATABASE_URL")),
        None if env.is_set("DB_SSLMODE") => Some((env.parse("DB_SSLMODE", SSLMODES, parse_sslmode)?, "DB_SSLMODE")),
        None => None,
    };
    pg.sslrootcert = match param_or_var(url.sslrootcert, "DB_SSLROOTCERT") {
        Some((v, _)) if v == "system" => Some(SslRoots::System),
        Some((v, var)) => Some(SslRoots::File(FileSetting { path: PathBuf::from(v), var })),
        None => None,
    };
    let refuse = |var: &'static str, mode: SslMode, expected: &str| ConfigError {
        var,
        value: if var == "DATABASE_URL" { format!("…sslmode={}", mode.as_str()) } else { mode.as_str().to_owned() },
        expected: expected.to_owned(),
    };
    pg.sslmode = match (explicit, &pg.sslrootcert) {
        (Some((mode, var)), Some(SslRoots::System)) if mode != SslMode::VerifyFull => {
            return Err(refuse(
                var,
                mode,
                "verify-full with sslrootcert=system: a weaker mode would not check the host name the system roots vouch for (libpq refuses it too)",
            ))
        }
        (Some((mode, _)), _) => mode,
        (None, Some(SslRoots::System)) => SslMode::VerifyFull,
        (None, _) if via_url => SslMode::Prefer,
        (None, _) => SslMode::Disable,
    };
    if matches!(pg.sslmode, SslMode::VerifyCa | SslMode::VerifyFull) && pg.sslrootcert.is_none() {
        let var = explicit.map_or("DB_SSLMODE", |(_, var)| var);
        return Err(refuse(
            var,
            pg.sslmode,
            "roots to verify against: DB_SSLROOTCERT (or sslrootcert=) naming a PEM file, or system",
        ));
    }
    pg.sslcert = match (param_or_var(url.sslcert, "DB_SSLCERT"), param_or_var(url.sslkey, "DB_SSLKEY")) {
        (Some((cert, cert_var)), Some((key, key_var))) => Some((
            FileSetting { path: PathBuf::from(cert), var: cert_var },
            FileSetting { path: PathBuf::from(key), var: key_var },
        )),
        (None, None) => None,
        (Some((value, var)), None) => {
            return Err(ConfigError { var, value, expected: "a client key beside it: DB_SSLKEY (or sslkey=)".into() })
        }
        (None, Some((value, var))) => {
            return Err(ConfigError {
                var,
                value,
                expected: "a client certificate beside it: DB_SSLCERT (or sslcert=)".into(),
            })
        }
    };
    Ok(pg)
}

/// TLS_CERT_FILE and TLS_KEY_FILE, both or neither; TLS_CLIENT_CA_FILE only with them.
fn tls_files(env: &Env<'_>) -> Result<Option<TlsFiles>, ConfigError> {
    let file = |var: &'static str| (env.lookup)(var).filter(|v| !v.trim().is_empty()).map(|v| PathBuf::from(v.trim()));
    let (cert, key, client_ca) = (file("TLS_CERT_FILE"), file("TLS_KEY_FILE"), file("TLS_CLIENT_CA_FILE"));
    let missing = |var: &'static str, value: &Option<PathBuf>, expected: &str| ConfigError {
        var,
        value: value.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        expected: expected.to_owned(),
    };
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let resumption = env.parse("TLS_RESUMPTION", "on or off", parse_bool)?;
            Ok(Some(TlsFiles { cert, key, client_ca, resumption }))
        }
        (Some(cert), None) => {
            Err(missing("TLS_KEY_FILE", &None, &format!("the key for TLS_CERT_FILE={}", cert.display())))
        }
        (None, Some(key)) => {
            Err(missing("TLS_CERT_FILE", &None, &format!("the certificate for TLS_KEY_FILE={}", key.display())))
        }
        (None, None) if client_ca.is_some() => Err(missing(
            "TLS_CLIENT_CA_FILE",
            &client_ca,
            "TLS_CERT_FILE and TLS_KEY_FILE as well: client certificates need a TLS listener",
        )),
        (None, None) => Ok(None),
    }
}

/// `postgres://user:pass@host:port/db?sslmode=…` or `sqlite://PATH`.
/// A Postgres URL's TLS parameters come back apart, for [`ssl_settings`] to complete.
fn parse_database_url(url: &str) -> Result<(StoreConfig, Option<Tls>), String> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err("sqlite://PATH with a file path".into());
        }
        return Ok((StoreConfig::Sqlite { path: PathBuf::from(path) }, None));
    }
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("a URL starting with postgres://, postgresql:// or sqlite://")?;
    let bad = || "postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=MODE]".to_owned();
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, dbname) = main.split_once('/').ok_or_else(bad)?;
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || !p.contains(']') => (h, p.parse::<u16>().map_err(|_| bad())?),
        _ => (hostport, 5432),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || dbname.is_empty() || port == 0 {
        return Err(bad());
    }
    let mut tls = Tls::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let file = || match percent_decode(value) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(format!("{name} to name a file (found {pair:?})")),
        };
        match name {
            "sslmode" => {
                tls.sslmode = Some(parse_sslmode(value).ok_or_else(|| format!("sslmode to be one of {SSLMODES}"))?)
            }
            "sslrootcert" => tls.sslrootcert = Some(file()?),
            "sslcert" => tls.sslcert = Some(file()?),
            "sslkey" => tls.sslkey = Some(file()?),
            "connect_timeout" | "application_name" => {}
            _ => {
                return Err(format!(
                    "no query parameter other than sslmode, sslrootcert, sslcert and sslkey (found {pair:?})"
                ))
            }
        }
    }
    let pg = PgConfig {
        host: percent_decode(host).ok_or_else(bad)?,
        port,
        user: percent_decode(if user.is_empty() { "postgres" } else { user }).ok_or_else(bad)?,
        password: percent_decode(password).ok_or_else(bad)?,
        dbname: percent_decode(dbname).ok_or_else(bad)?,
        sslmode: SslMode::Prefer,
        sslrootcert: None,
        sslcert: None,
    };
    Ok((StoreConfig::Postgres(pg), Some(tls)))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = crate::http::query::percent_decode(s.as_bytes(), false).ok()?;
    String::from_utf8(bytes.into_owned()).ok()
}

/// A database URL with its password replaced, fit for error messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[userinfo.len() + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The text of `percore --help`.
pub fn help_text() -> String {
    let mut out = format!(
        "percore {} — a thread-per-core HTTP/1.1 API server\n\n\
         usage: percore [--help | --version]\n\n\
         Every setting comes from the environment, is read once at start-up, and an invalid\n\
         value stops the start with exit code 2. Durations look like 500ms, 5s, 2m, 1h.\n\n",
        env!("CARGO_PKG_VERSION")
    );
    let width = SETTINGS.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in SETTINGS {
        let default = if s.default.is_empty() { "(unset)" } else { s.default };
        out.push_str(&format!("  {:width$}  {}\n  {:width$}  default: {}\n", s.name, s.help, "", default));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.port, 8080);
        assert_eq!(c.read_timeout, Duration::from_secs(5));
        assert_eq!(c.write_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.handler_timeout, Duration::from_secs(30));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(c.shutdown_delay, Duration::ZERO);
        assert!(c.db_statement_cache);
        assert_eq!(c.workers, Workers::Auto);
        assert_eq!(c.pin_workers, Toggle::Auto);
        assert_eq!(c.io_driver, DriverChoice::Auto);
        assert_eq!(c.max_connections, 65536);
        assert_eq!(c.max_header_bytes, 16384);
        assert_eq!(c.max_body_bytes, 1048576);
        assert_eq!(c.max_body_memory, None);
        assert_eq!(c.store, StoreConfig::Sqlite { path: "percore.db".into() });
        assert_eq!(c.db_queue_depth, 1024);
        assert_eq!(c.db_conn_max_lifetime, Duration::from_secs(300));
        assert!(c.db_batch_reads);
        assert!(!c.admission_loop_lag);
        assert_eq!(
            c.admission,
            Some(AdmissionConfig { target: Duration::from_millis(5), interval: Duration::from_millis(100) })
        );
        assert_eq!(config(&[("ADMISSION_TARGET", "off")]).unwrap().admission, None);
        assert_eq!(c.db_pipeline_jobs, 16);
        assert_eq!(c.db_thread_sched, DbThreadSched::Batch);
        assert_eq!(c.worker_slice, None);
        assert_eq!(config(&[("WORKER_SLICE", "100us")]).unwrap().worker_slice, Some(Duration::from_micros(100)));
        assert_eq!(config(&[("WORKER_SLICE", "2ms")]).unwrap().worker_slice, Some(Duration::from_millis(2)));
        assert_eq!(c.debug_addr, Some("127.0.0.1:6060".parse().unwrap()));
        assert!(!c.bench_routes);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.conn_balance, Balance::Exact);
        assert!(!c.access_log);
    }

    #[test]
    fn invalid_values_name_the_variable_the_value_and_the_expectation() {
        let cases: &[(&str, &str, &str)] = &[
            ("SERVER_PORT", "80a", "port number"),
            ("SERVER_PORT", "", "port number"),
            ("SERVER_PORT", "70000", "port number"),
            ("SERVER_HOST", "localhost:80", "IP address"),
            ("SERVER_READ_TIMEOUT", "5 seconds", "duration"),
            ("SERVER_READ_TIMEOUT", "5", "duration"),
            ("SERVER_READ_TIMEOUT", "0s", "above zero"),
            ("SERVER_IDLE_TIMEOUT", "-1s", "duration"),
            ("HANDLER_TIMEOUT", "1.5s", "duration"),
            ("SHUTDOWN_TIMEOUT", "soon", "duration"),
            ("SHUTDOWN_DELAY", "5", "duration"),
            ("DB_STATEMENT_CACHE", "sometimes", "on or off"),
            ("WORKERS", "0", "1-1024"),
            ("WORKERS", "two", "1-1024"),
            ("PIN_WORKERS", "maybe", "auto, on or off"),
            ("IO_DRIVER", "kqueue", "io_uring or epoll"),
            ("MAX_CONNECTIONS", "0", "whole number"),
            ("MAX_HEADER_BYTES", "100", "from 1024"),
            ("MAX_BODY_BYTES", "1MB", "whole number"),
            ("MAX_BODY_MEMORY", "1000", "at least MAX_BODY_BYTES"),
            ("MAX_BODY_MEMORY", "lots", "auto or a number of bytes"),
            ("DB_POOL_SIZE", "0", "threads"),
            ("DB_QUEUE_DEPTH", "-5", "whole number"),
            ("DB_PIPELINE_JOBS", "0", "whole number"),
            ("DB_THREAD_SCHED", "fifo", "batch or normal"),
            ("ADMISSION_TARGET", "0s", "off, or a duration above zero"),
            ("ADMISSION_TARGET", "soon", "off, or a duration above zero"),
            ("ADMISSION_INTERVAL", "0ms", "a duration above zero"),
            ("WORKER_SLICE", "50us", "off, or a duration from 100us to 100ms"),
            ("WORKER_SLICE", "1s", "off, or a duration from 100us to 100ms"),
            ("WORKER_SLICE", "short", "off, or a duration from 100us to 100ms"),
            ("ADMISSION_LOOP_LAG", "sometimes", "on or off"),
            ("DEBUG_ADDR", "6060", "HOST:PORT"),
            ("BENCH_ROUTES", "yesplease", "on or off"),
            ("LOG_FORMAT", "xml", "text or json"),
            ("CONN_BALANCE", "even", "exact or kernel"),
            ("ACCESS_LOG", "2", "on or off"),
            ("DATABASE_URL", "mysql://x", "postgres://"),
        ];
        for (var, value, expected) in cases {
            let err = config(&[(var, value)]).expect_err(&format!("{var}={value} must be refused"));
            assert_eq!(err.var, *var);
            assert_eq!(err.value, *value);
            let line = err.to_string();
            assert!(line.contains(var) && line.contains(value) && line.contains(expected), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "s", "5", "5 s", "5S", "5sec", "1.5s", "ms", "9999999999s", "+5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn database_url_wins_and_is_parsed() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:p%40ss@db.example:6543/app?sslmode=disable"),
            ("DB_HOST", "other"),
        ])
        .unwrap();
        let StoreConfig::Postgres(pg) = c.store else { panic!("postgres expected") };
        assert_eq!(
            (pg.host.as_str(), pg.port, pg.user.as_str(), pg.password.as_str()),
            ("db.example", 6543, "u", "p@ss")
        );
        assert_eq!((pg.dbname.as_str(), pg.sslmode), ("app", SslMode::Disable));
        assert!(!format!("{pg:?}").contains("p@ss"), "Debug must not show the password");

        let c = config(&[("DATABASE_URL", "sqlite:///tmp/x.db")]).unwrap();
        assert_eq!(c.store, StoreConfig::Sqlite { path: "/tmp/x.db".into() });
    }

    #[test]
    fn db_host_selects_postgres_with_the_articles_variables() {
        let c = config(&[("DB_HOST", "pg"), ("DB_PASSWORD", "s3cret"), ("DB_NAME", "users")]).unwrap();
        let StoreConfig::Postgres(pg) = c.store else { panic!("postgres expected") };
        assert_eq!(
            (pg.host.as_str(), pg.port, pg.user.as_str(), pg.dbname.as_str()),
            ("pg", 5432, "postgres", "users")
        );
        assert_eq!(pg.sslmode, SslMode::Disable, "the article's default");
        let err = config(&[("DB_HOST", "pg"), ("DB_SSLMODE", "verify_full")]).unwrap_err();
        assert_eq!(err.var, "DB_SSLMODE");
        assert!(err.to_string().contains("verify-full"), "{err}");
    }

    fn pg_of(pairs: &[(&str, &str)]) -> PgConfig {
        match config(pairs).unwrap_or_else(|e| panic!("{pairs:?}: {e}")).store {
            StoreConfig::Postgres(pg) => pg,
            other => panic!("postgres expected, got {other:?}"),
        }
    }

    #[test]
    fn sslmodes_have_libpqs_names_and_defaults() {
        for mode in ["disable", "allow", "prefer", "require"] {
            let pg = pg_of(&[("DATABASE_URL", &format!("postgres://u@h/db?sslmode={mode}"))]);
            assert_eq!(pg.sslmode.as_str(), mode);
            assert_eq!(pg_of(&[("DB_HOST", "h"), ("DB_SSLMODE", mode)]).sslmode.as_str(), mode);
        }
        assert_eq!(pg_of(&[("DATABASE_URL", "postgres://u@h/db")]).sslmode, SslMode::Prefer, "libpq's default");
        assert_eq!(pg_of(&[("DB_HOST", "h")]).sslmode, SslMode::Disable, "the article's default");
        let pg = pg_of(&[("DATABASE_URL", "postgres://u@h/db"), ("DB_SSLMODE", "require")]);
        assert_eq!(pg.sslmode, SslMode::Require, "the variable applies where the URL says nothing");
        let pg = pg_of(&[("DATABASE_URL", "postgres://u@h/db?sslmode=disable"), ("DB_SSLMODE", "require")]);
        assert_eq!(pg.sslmode, SslMode::Disable, "the URL wins");
        let err = config(&[("DATABASE_URL", "postgres://u@h/db?sslmode=on")]).unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
    }

    #[test]
    fn roots_and_client_certificates_follow_libpqs_rules() {
        let pg = pg_of(&[("DATABASE_URL", "postgres://u@h/db?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem")]);
        assert_eq!(pg.sslmode, SslMode::VerifyCa);
        assert_eq!(
            pg.sslrootcert,
            Some(SslRoots::File(FileSetting { path: "/etc/ca.pem".into(), var: "DATABASE_URL" }))
        );
        let pg = pg_of(&[("DB_HOST", "h"), ("DB_SSLMODE", "verify-full"), ("DB_SSLROOTCERT", "/ca.pem")]);
        assert_eq!(pg.sslrootcert, Some(SslRoots::File(FileSetting { path: "/ca.pem".into(), var: "DB_SSLROOTCERT" })));
        // sslrootcert=system means verify-full, and refuses anything weaker.
        assert_eq!(pg_of(&[("DATABASE_URL", "postgres://u@h/db?sslrootcert=system")]).sslmode, SslMode::VerifyFull);
        assert_eq!(pg_of(&[("DB_HOST", "h"), ("DB_SSLROOTCERT", "system")]).sslmode, SslMode::VerifyFull);
        let err = config(&[("DATABASE_URL", "postgres://u@h/db?sslmode=require&sslrootcert=system")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(err.to_string().contains("verify-full"), "{err}");
        let err = config(&[("DB_HOST", "h"), ("DB_SSLMODE", "verify-ca"), ("DB_SSLROOTCERT", "system")]).unwrap_err();
        assert_eq!(err.var, "DB_SSLMODE");
        // Verification needs roots.
        let err = config(&[("DB_HOST", "h"), ("DB_SSLMODE", "verify-full")]).unwrap_err();
        assert_eq!(err.var, "DB_SSLMODE");
        assert!(err.to_string().contains("DB_SSLROOTCERT"), "{err}");
        // A client certificate and its key come together.
        let pg =
            pg_of(&[("DB_HOST", "h"), ("DB_SSLMODE", "require"), ("DB_SSLCERT", "/c.pem"), ("DB_SSLKEY", "/k.pem")]);
        let (cert, key) = pg.sslcert.unwrap();
        assert_eq!(
            (cert.path.to_str(), cert.var, key.path.to_str(), key.var),
            (Some("/c.pem"), "DB_SSLCERT", Some("/k.pem"), "DB_SSLKEY")
        );
        let pg = pg_of(&[("DATABASE_URL", "postgres://u@h/db?sslcert=/c.pem&sslkey=/k.pem")]);
        assert_eq!(pg.sslcert.unwrap().1.var, "DATABASE_URL");
        assert_eq!(config(&[("DB_HOST", "h"), ("DB_SSLCERT", "/c.pem")]).unwrap_err().var, "DB_SSLCERT");
        assert_eq!(config(&[("DB_HOST", "h"), ("DB_SSLKEY", "/k.pem")]).unwrap_err().var, "DB_SSLKEY");
        let err = config(&[("DATABASE_URL", "postgres://u@h/db?sslkey=")]).unwrap_err();
        assert!(err.to_string().contains("sslkey"), "{err}");
        let err = config(&[("DATABASE_URL", "postgres://u@h/db?sslpassword=x")]).unwrap_err();
        assert!(err.to_string().contains("sslrootcert"), "{err}");
    }

    #[test]
    fn the_tls_listener_needs_both_files() {
        assert_eq!(config(&[]).unwrap().tls, None);
        let c = config(&[("TLS_CERT_FILE", "/c.pem"), ("TLS_KEY_FILE", "/k.pem")]).unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles { cert: "/c.pem".into(), key: "/k.pem".into(), client_ca: None, resumption: true })
        );
        let c = config(&[("TLS_CERT_FILE", "/c.pem"), ("TLS_KEY_FILE", "/k.pem"), ("TLS_RESUMPTION", "off")]);
        assert!(!c.unwrap().tls.unwrap().resumption);
        let err = config(&[("TLS_CERT_FILE", "/c.pem"), ("TLS_KEY_FILE", "/k.pem"), ("TLS_RESUMPTION", "maybe")]);
        assert_eq!(err.unwrap_err().var, "TLS_RESUMPTION");
        let c = config(&[("TLS_CERT_FILE", "/c.pem"), ("TLS_KEY_FILE", "/k.pem"), ("TLS_CLIENT_CA_FILE", "/ca.pem")]);
        assert_eq!(c.unwrap().tls.unwrap().client_ca, Some("/ca.pem".into()));
        for (var, missing) in [("TLS_CERT_FILE", "TLS_KEY_FILE"), ("TLS_KEY_FILE", "TLS_CERT_FILE")] {
            let err = config(&[(var, "/x.pem")]).unwrap_err();
            assert_eq!(err.var, missing, "{err}");
            assert!(err.to_string().contains(var) && err.to_string().contains("/x.pem"), "{err}");
        }
        let err = config(&[("TLS_CLIENT_CA_FILE", "/ca.pem")]).unwrap_err();
        assert_eq!(err.var, "TLS_CLIENT_CA_FILE");
    }

    #[test]
    fn a_bad_database_url_is_reported_without_its_password() {
        let err = config(&[("DATABASE_URL", "postgres://u:hunter2@h:notaport/db")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(redact_url("postgres://u:hunter2@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = help_text();
        for s in SETTINGS {
            assert!(help.contains(s.name), "{} missing from --help", s.name);
        }
        assert!(help.contains("default: 16384"));
    }

    #[test]
    fn every_setting_has_a_parser() {
        // A setting set to garbage must be refused or be a free-form string; if a new entry
        // in SETTINGS is never read, this still passes, so check reading via the lookup log.
        let seen = std::cell::RefCell::new(Vec::new());
        let _ = Config::from_lookup(|k| {
            seen.borrow_mut().push(k.to_owned());
            None
        });
        let seen = seen.into_inner();
        for s in SETTINGS {
            let conditional = matches!(
                s.name,
                "DB_PORT"
                    | "DB_USER"
                    | "DB_PASSWORD"
                    | "DB_NAME"
                    | "DB_SSLMODE"
                    | "DB_SSLROOTCERT"
                    | "DB_SSLCERT"
                    | "DB_SSLKEY"
                    | "TLS_RESUMPTION"
            );
            assert!(conditional || seen.iter().any(|k| k == s.name), "{} is declared but never read", s.name);
        }
    }
}
