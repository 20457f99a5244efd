//! A fresh PostgreSQL database per test server, on the server named by PERCORE_TEST_PG_URL
//! (default `postgres://postgres@127.0.0.1:5432/test`), dropped when the test ends.
//!
//! Outside CI a missing PostgreSQL skips the Postgres half of the suite with a loud
//! message; under CI=true it fails the run.

use std::sync::atomic::{AtomicUsize, Ordering};

pub fn admin_url() -> String {
    std::env::var("PERCORE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a fresh database, or returns None when no PostgreSQL answers (outside CI).
    pub fn create() -> Option<TestDatabase> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let admin = admin_url();
        let mut client = match postgres::Client::connect(&admin, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "PostgreSQL is required under CI ({admin}): {e}");
                eprintln!("\n*** PostgreSQL unavailable at {admin} ({e}): Postgres tests SKIPPED ***\n");
                return None;
            }
        };
        let name = format!("percore_t_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).expect("drop a leftover test database");
        client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a test database");
        Some(TestDatabase { url: with_database(&admin, &name), name })
    }

    /// A client on this database, for checking what the server wrote.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&admin_url(), postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// A PostgreSQL cluster of this test's own (initdb in a temp directory, its own port), so a
/// test can stop and start it without disturbing the shared server the rest of the suite
/// uses. Needs root (to run the server as `postgres`) and the server binaries.
pub struct PrivateCluster {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    pub port: u16,
    /// Extra server settings (`name=value`), given at every start.
    settings: Vec<String>,
}

impl PrivateCluster {
    pub fn create() -> Option<PrivateCluster> {
        PrivateCluster::create_with(&[])
    }

    /// A private cluster started with extra settings, e.g.
    /// `shared_preload_libraries=pg_stat_statements`, which only a restart can change.
    pub fn create_with(settings: &[&str]) -> Option<PrivateCluster> {
        PrivateCluster::create_prepared(settings, |_| {})
    }

    /// A private cluster whose data directory `prepare` fills in (certificates, pg_hba.conf)
    /// between initdb and the first start.
    pub fn create_prepared(settings: &[&str], prepare: impl FnOnce(&std::path::Path)) -> Option<PrivateCluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists());
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let Some(bin) = bin.filter(|_| root) else {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "a private PostgreSQL cluster is required under CI");
            eprintln!("\n*** no PostgreSQL server binaries or not root: stop/start test SKIPPED ***\n");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("percore-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).output().unwrap();
        let port = free_port();
        let settings = settings.iter().map(|s| s.to_string()).collect();
        let cluster = PrivateCluster { dir, bin, port, settings };
        cluster.pg(&["initdb", "-A", "trust", "-U", "postgres", "--no-sync", "-D"]);
        prepare(&cluster.dir);
        std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(&cluster.dir).output().unwrap();
        cluster.start();
        Some(cluster)
    }

    fn pg(&self, args: &[&str]) {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(self.bin.join(args[0])).args(&args[1..]).arg(&self.dir);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn start(&self) {
        let mut opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        for setting in &self.settings {
            opts.push_str(" -c ");
            opts.push_str(setting);
        }
        let log = self.dir.join("log");
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-w", "-o", &opts, "-l"])
            .arg(&log)
            .arg("-D")
            .arg(&self.dir)
            .arg("start");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn stop(&self) {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-w", "-m", "fast", "-D"])
            .arg(&self.dir)
            .arg("stop");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// Its data directory, where it also listens on a Unix socket.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// An admin client over the Unix socket (which `local … trust` admits whatever the
    /// host lines of pg_hba.conf demand).
    pub fn admin(&self, database: &str) -> postgres::Client {
        postgres::Config::new()
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname(database)
            .connect(postgres::NoTls)
            .expect("connect over the private cluster's socket")
    }

    /// Re-reads its configuration files (pg_hba.conf, the TLS certificate), as SIGHUP does.
    pub fn reload(&self) {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl")).arg("-D").arg(&self.dir).arg("reload");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "pg_ctl reload: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The URL of database `name` on this cluster.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(&self.dir)
            .arg("stop");
        let _ = cmd.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
