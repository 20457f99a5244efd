"""TechEmpower's Rust leaders as anchors for the database tests, and the PostgreSQL they and
percore run against in those tests.

The entries are built from a snapshot of TechEmpower/FrameworkBenchmarks (Round 23 was the
last; the repository was archived 2026-03) in the scratch directory; nothing of theirs is
committed here, only this recipe. Their git dependencies are taken from snapshots of their
own repositories at the revisions the entries pin (may_postgres 917ed78; xitca-web
bd86c7c). Where the machine has no network, the snapshots come from the workplace's mirror:

    PERCORE_TFB_REPO          TechEmpower/FrameworkBenchmarks (a git directory)
    PERCORE_MAY_POSTGRES_REPO Xudong-Huang/may_postgres
    PERCORE_XITCA_REPO        HFQR/xitca-web

The recipe changes only what a private run needs: the database host in each entry's URL
(TechEmpower's `tfb-database` becomes 127.0.0.1 on the private port), the git
dependencies become paths to those snapshots, actix's toolchain pin goes (the machine has
one toolchain), and xitca-web's ORM binaries (diesel, toasty: other tests, their own git
dependencies) are cut from its manifest. Build flags are each entry's dockerfile's; actix's
allocator (snmalloc) builds with cmake (apt install cmake), as its dockerfile installs it.

The database: a private PostgreSQL cluster (the machine's server version) on
127.0.0.1:5488, with TechEmpower's postgresql.conf (its PostgreSQL 18 `io_workers` line
dropped) and create-postgres.sql, user benchmarkdbuser, database hello_world, and
pg_stat_statements loaded, so statements per request can be counted.
"""

import atexit
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

PORT = 5488
URL = f"postgres://benchmarkdbuser:benchmarkdbpass@127.0.0.1:{PORT}/hello_world"
ADMIN_URL = f"postgres://postgres@127.0.0.1:{PORT}/hello_world"
MIRROR = Path("/work/.mirror")
REPOS = {
    "tfb": os.environ.get("PERCORE_TFB_REPO", str(MIRROR / "TechEmpower+FrameworkBenchmarks" / "repo")),
    "may_postgres": os.environ.get("PERCORE_MAY_POSTGRES_REPO", str(MIRROR / "Xudong-Huang+may_postgres" / "repo")),
    "xitca": os.environ.get("PERCORE_XITCA_REPO", str(MIRROR / "HFQR+xitca-web" / "repo")),
}

# Each entry: its folder under frameworks/Rust, the binary, the cargo arguments and
# RUSTFLAGS of its dockerfile (xitca-web's come from its .cargo/config.toml).
ENTRIES = {
    "tfb-may-minihttp": ("may-minihttp", "may-minihttp", [], "-C target-cpu=native"),
    "tfb-xitca-web": (
        "xitca-web",
        "xitca-web",
        ["--bin", "xitca-web", "--features", "io-uring,pg,router,template,zero-copy,perf-json,perf-allocator"],
        None,
    ),
    "tfb-actix": ("actix", "tfb-http", ["--bin", "tfb-http"], "-C target-cpu=native"),
}
# The port every entry listens on (0.0.0.0:8080, fixed in their sources).
ENTRY_PORT = 8080
# TechEmpower's own URLs for the entries (benchmark_config.json).
PATHS = {"/db": "/db", "/queries?queries=20": "/queries?q=20", "/fortunes": "/fortunes", "/updates?queries=20": "/updates?q=20"}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def archive(repo, rev, subdir, dest):
    """Unpacks `subdir` of `repo` at `rev` into `dest` (a snapshot has no work tree)."""
    if not Path(repo).exists():
        raise RuntimeError(f"no snapshot at {repo} (set PERCORE_TFB_REPO and friends)")
    dest.mkdir(parents=True, exist_ok=True)
    strip = len(Path(subdir).parts) if subdir else 0
    git = subprocess.Popen(["git", "--git-dir", repo, "archive", rev] + ([subdir] if subdir else []), stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", f"--strip-components={strip}", "-C", str(dest)], stdin=git.stdout, check=True)
    if git.wait() != 0:
        raise RuntimeError(f"git archive {rev} {subdir} failed in {repo}")


def build(name, scratch, log):
    """Builds one entry in `scratch`/tfb; returns its binary."""
    folder, binary, args, rustflags = ENTRIES[name]
    root = scratch / "tfb"
    crate = root / folder
    out = crate / "target" / "release" / binary
    if not crate.exists():
        archive(REPOS["tfb"], "HEAD", f"frameworks/Rust/{folder}", crate)
        patch(folder, crate, root)
    log(f"-- building {name} from TechEmpower's snapshot (first time: several minutes)")
    env = dict(os.environ)
    env.pop("RUSTFLAGS", None)
    if rustflags:
        env["RUSTFLAGS"] = rustflags
    run(["cargo", "build", "--release", "--quiet"] + args, cwd=crate, env=env)
    return str(out)


def patch(folder, crate, root):
    for source in glob.glob(str(crate / "src" / "**" / "*.rs"), recursive=True):
        text = Path(source).read_text()
        if "@tfb-database/" in text:
            Path(source).write_text(text.replace("@tfb-database/", f"@127.0.0.1:{PORT}/"))
    manifest = crate / "Cargo.toml"
    toml = manifest.read_text()
    if folder == "may-minihttp":
        archive(REPOS["may_postgres"], "917ed78", "", root / "may_postgres")
        toml = re.sub(r'may_postgres = \{ git = "[^"]+", rev = "[^"]+"', 'may_postgres = { path = "../may_postgres"', toml)
    elif folder == "actix":
        (crate / "rust-toolchain.toml").unlink(missing_ok=True)
    elif folder == "xitca-web":
        archive(REPOS["xitca"], "bd86c7c", "", root / "xitca-src")
        kept = []
        for block in re.split(r"\n(?=\[)", toml):
            if block.startswith("[[bin]]") and ("diesel" in block or "toasty" in block):
                continue
            kept.append(block)
        toml = "\n".join(kept)
        toml = "\n".join(line for line in toml.splitlines() if not re.match(r"^(diesel|toasty|xitca-postgres-diesel|xitca-postgres-toasty|toasty-core|toasty-sql)\s*=", line))
        for crate_name, path in (("xitca-postgres", "postgres"), ("xitca-router", "router"), ("xitca-web", "web")):
            toml = re.sub(rf'^{crate_name} = \{{ git = [^\n]+$', f'{crate_name} = {{ path = "../xitca-src/{path}" }}', toml, flags=re.M)
    manifest.write_text(toml)


class Database:
    """The private cluster: started fresh, stopped when the harness exits."""

    def __init__(self, scratch, log):
        self.dir = scratch / "tfb-pg"
        self.log = log
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if not versions:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.bin = Path(versions[-1])

    def as_postgres(self, cmd, **kw):
        return run(["runuser", "-u", "postgres", "--"] + cmd, **kw)

    def start(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        shutil.chown(self.dir, "postgres", "postgres")
        self.log(f"-- a private PostgreSQL on 127.0.0.1:{PORT} with TechEmpower's postgresql.conf and schema")
        self.as_postgres([str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        conf = subprocess.run(["git", "--git-dir", REPOS["tfb"], "show", "HEAD:toolset/databases/postgres/postgresql.conf"], check=True, capture_output=True, text=True).stdout
        conf = "\n".join(line for line in conf.splitlines() if not line.startswith("io_workers"))
        with open(self.dir / "data" / "postgresql.conf", "a") as f:
            f.write(f"\n# TechEmpower's postgresql.conf\n{conf}\n# this run\nport = {PORT}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n")
        self.as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "start"])
        atexit.register(self.stop)
        run(["psql", f"postgres://postgres@127.0.0.1:{PORT}/postgres", "-qc", "CREATE USER benchmarkdbuser SUPERUSER PASSWORD 'benchmarkdbpass'", "-qc", "CREATE DATABASE hello_world OWNER benchmarkdbuser"])
        schema = subprocess.run(["git", "--git-dir", REPOS["tfb"], "show", "HEAD:toolset/databases/postgres/create-postgres.sql"], check=True, capture_output=True, text=True).stdout
        run(["psql", URL, "-q", "-v", "ON_ERROR_STOP=1"], input=schema)
        run(["psql", URL, "-qc", "VACUUM ANALYZE"])

    def stop(self):
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)

    def postmaster_pid(self):
        return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
