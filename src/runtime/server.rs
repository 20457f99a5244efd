//! Starts the workers, one per planned CPU, and owns the process's life: start-up, the wait
//! for a signal, the drain, the exit code.
//!
//! Listeners are bound here, before any worker exists, so a taken port fails the start at
//! once with a clear message. Each worker thread pins itself (when the plan says so), builds
//! its runtime and reports back; only when all have reported does the server say it is
//! listening. On SIGTERM/SIGINT every worker is told to drain, the listening sockets are
//! shut so the kernel refuses new connections at once, and the process exits 0 when the
//! last connection is gone — or when SHUTDOWN_TIMEOUT runs out, saying how many it cut.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::app::Env;
use crate::config::Config;
use crate::db::Pool;
use crate::doorbell::Doorbell;
use crate::net::listener;
use crate::net::shared::Shared;
use crate::obs::access_log;
use crate::obs::profiler;
use crate::obs::threads::{self, Role};
use crate::runtime::cpus::{self, Machine};
use crate::runtime::driver;
use crate::runtime::shutdown::Signals;
use crate::runtime::worker;

/// How often the main thread looks at its workers while waiting for a signal.
const POLL: Duration = Duration::from_millis(100);

enum Report {
    Started(usize),
    Failed(usize, String),
    Finished(usize),
}

/// Serves until a signal ends the drain. `tls` is what [`crate::tls::load`] read from the
/// files the configuration names.
pub fn run(config: Config, tls: crate::tls::Loaded) -> ExitCode {
    let started = Instant::now();
    match serve(config, tls, started) {
        Ok(code) => code,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// A started server: what the wait for a signal and the drain need of it.
struct Running {
    shared: Arc<Shared>,
    db: Arc<Pool>,
    signals: Signals,
    /// The workers' reports: started, failed, finished.
    inbox: mpsc::Receiver<Report>,
    workers: usize,
}

fn serve(config: Config, tls: crate::tls::Loaded, started: Instant) -> Result<ExitCode, String> {
    let _registered = threads::register(Role::Main);
    let running = start(config, tls, started)?;
    let signal = wait_for_signal(&running)?;
    drain(&running, signal)
}

/// Plans the CPUs, binds the listeners, starts the workers and, once all of them run, the
/// database threads; logs what was started.
fn start(config: Config, tls: crate::tls::Loaded, started: Instant) -> Result<Running, String> {
    let machine = Machine::probe().map_err(|e| format!("cannot read this process's CPU affinity: {e}"))?;
    let plan = cpus::plan(config.workers, config.pin_workers, &machine);
    let choice = driver::choose(config.io_driver).map_err(|e| format!("IO_DRIVER=io_uring, but {e}"))?;
    if let Some(why) = &choice.fallback_reason {
        log::warn!("{why}; using epoll");
    }
    let addr = SocketAddr::new(config.host, config.port);
    let listeners = listener::bind_all(addr, plan.workers()).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listeners[0].local_addr().map_err(|e| e.to_string())?;
    let signals = Signals::block().map_err(|e| format!("cannot block SIGTERM/SIGINT: {e}"))?;

    let db = Pool::new(&config, plan.workers());
    let access_log = match config.access_log {
        true => Some(access_log::start_writer().map_err(|e| format!("cannot start the access log writer: {e}"))?),
        false => None,
    };
    let (body_memory, body_memory_from) = body_memory(&config);
    let listener_tls = tls.listener.clone();
    let shared = Arc::new(Shared::new(config, access_log, body_memory, plan.workers(), tls.listener));
    let env = Arc::new(Env {
        lifecycle: shared.lifecycle.clone(),
        id_seed: shared.id_seed,
        bench_routes: shared.config.bench_routes,
        pool: db.clone(),
        io_driver: choice.driver.name(),
        tls: listener_tls.clone(),
        scrapes: (0..plan.workers()).map(|_| Doorbell::default()).collect(),
    });
    let debug = match shared.config.debug_addr {
        Some(addr) => {
            let pinned_cpus = plan.cpus.iter().map(|&c| plan.pinned.then_some(c)).collect();
            let status = crate::runtime::status::source(env.clone(), shared.clone(), pinned_cpus);
            Some(profiler::start(addr, status).map_err(|e| format!("cannot listen on DEBUG_ADDR {addr}: {e}"))?)
        }
        None => None,
    };
    let inbox = start_workers(&plan, choice.driver, &env, &shared, listeners)?;
    crate::db::thread::spawn(&db, &shared.config, tls.postgres)
        .map_err(|e| format!("cannot start the database pool: {e}"))?;
    let sched = match shared.config.db_thread_sched {
        crate::config::DbThreadSched::Batch => " (SCHED_BATCH)",
        crate::config::DbThreadSched::Normal => "",
    };
    log::info!("store: {:?}, {} database threads{sched}", shared.config.store, db.threads);
    log::info!("request bodies may hold {} MiB at once ({body_memory_from})", body_memory >> 20);
    log::info!(
        "percore {} started in {:.1} ms: {}, {}, {} connection balance",
        env!("CARGO_PKG_VERSION"),
        started.elapsed().as_secs_f64() * 1000.0,
        plan.describe(),
        choice.driver,
        match shared.config.conn_balance {
            crate::config::Balance::Exact => "exact",
            crate::config::Balance::Kernel => "kernel",
        }
    );
    if let Some(addr) = debug {
        log::info!("profiling on http://{addr}/debug/pprof/");
    }
    match &listener_tls {
        Some(tls) => {
            log::info!("listener speaks {}", tls.describe());
            log::info!("listening on https://{local}");
        }
        None => log::info!("listening on http://{local}"),
    }
    Ok(Running { shared, db, signals, inbox, workers: plan.workers() })
}

/// MAX_BODY_MEMORY, or what `auto` makes of the cgroup or the machine, and where it came from.
fn body_memory(config: &Config) -> (usize, String) {
    use crate::runtime::memory::{auto_body_memory, Source};
    match config.max_body_memory {
        Some(bytes) => (bytes, "MAX_BODY_MEMORY".to_owned()),
        None => match auto_body_memory(std::path::Path::new("/"), config.max_body_bytes) {
            (bytes, Source::Cgroup(limit)) => (bytes, format!("half the cgroup's {} MiB", limit >> 20)),
            (bytes, Source::Ram(ram)) => (bytes, format!("a quarter of {} MiB of RAM", ram >> 20)),
            (bytes, Source::Unknown) => (bytes, "no cgroup limit or RAM size found".to_owned()),
        },
    }
}

/// One thread per planned CPU, pinned if the plan says so, each running its worker; returns
/// once every one has reported that it runs.
fn start_workers(
    plan: &cpus::CpuPlan,
    io_driver: driver::IoDriver,
    env: &Arc<Env>,
    shared: &Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
) -> Result<mpsc::Receiver<Report>, String> {
    let (reports, inbox) = mpsc::channel();
    for (id, listener) in listeners.into_iter().enumerate() {
        let (env, shared, reports) = (env.clone(), shared.clone(), reports.clone());
        let (cpu, pinned) = (plan.cpus[id], plan.pinned);
        std::thread::Builder::new()
            .name(format!("percore-w{id}"))
            .spawn(move || {
                let _registered = threads::register(Role::Worker(id));
                if pinned && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                    log::warn!("worker {id}: could not pin to CPU {cpu}");
                }
                if let Some(slice) = shared.config.worker_slice {
                    ask_for_slice(id, slice);
                }
                let result = worker::run(id, io_driver, env, shared, listener, || {
                    let _ = reports.send(Report::Started(id));
                });
                let _ = reports.send(match result {
                    Ok(()) => Report::Finished(id),
                    Err(e) => Report::Failed(id, e.to_string()),
                });
            })
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
    }
    for _ in 0..plan.workers() {
        match inbox.recv() {
            Ok(Report::Started(_)) => {}
            Ok(Report::Failed(id, e)) => return Err(format!("worker {id} could not start: {e}")),
            Ok(Report::Finished(id)) => return Err(format!("worker {id} stopped during start-up")),
            Err(_) => return Err("the workers stopped during start-up".to_owned()),
        }
    }
    Ok(inbox)
}

/// WORKER_SLICE, on the calling worker thread; what became of it is logged once, by worker 0
/// (ignored or refused, the worker serves as it would have anyway).
fn ask_for_slice(id: usize, slice: std::time::Duration) {
    use crate::runtime::slice::{apply, Outcome};
    let quietly = id != 0;
    match apply(slice) {
        Ok(Outcome::Applied) if !quietly => log::info!("workers run in CPU slices of {slice:?} (WORKER_SLICE)"),
        Ok(Outcome::Ignored) if !quietly => {
            log::info!(
                "WORKER_SLICE={slice:?} has no effect: this kernel keeps its own slices (Linux 6.12+ takes them)"
            )
        }
        Err(e) if !quietly => {
            log::warn!("WORKER_SLICE={slice:?} was refused by the kernel: {e}; workers keep its slice")
        }
        _ => {}
    }
}

/// Serves until SIGTERM or SIGINT, which it returns; a worker that stops meanwhile ends the
/// process (so it can be restarted). Releases the start-up code pages once start-up is over.
fn wait_for_signal(running: &Running) -> Result<&'static str, String> {
    let Running { db, signals, inbox, .. } = running;
    let mut startup_pages_held = true;
    loop {
        if let Some(signal) = signals.wait(POLL) {
            return Ok(signal);
        }
        // Once every pool thread has connected (and migrations are done), start-up is over.
        if startup_pages_held && db.health.connected() == db.threads {
            startup_pages_held = false;
            match crate::runtime::startup_pages::release() {
                Ok(bytes) => log::debug!("start-up over: released {} KiB of start-up code pages", bytes >> 10),
                Err(e) => log::debug!("start-up over: cannot release start-up code pages: {e}"),
            }
        }
        if let Ok(report) = inbox.try_recv() {
            let what = match report {
                Report::Failed(id, e) => format!("worker {id} failed: {e}"),
                Report::Finished(id) | Report::Started(id) => format!("worker {id} stopped"),
            };
            return Err(format!("{what}; exiting so the process can be restarted"));
        }
    }
}

/// After `signal`: SHUTDOWN_DELAY (not ready, still serving), then the drain until every
/// worker is done or SHUTDOWN_TIMEOUT; a second signal exits at once with status 1.
fn drain(running: &Running, signal: &str) -> Result<ExitCode, String> {
    let Running { shared, signals, inbox, workers, .. } = running;
    let delay = shared.config.shutdown_delay;
    if !delay.is_zero() {
        log::info!(
            "{signal} received: not ready; still accepting and serving for SHUTDOWN_DELAY ({delay:?}), {} connections open",
            shared.open_connections()
        );
        shared.lifecycle.start_closing();
        let until = Instant::now() + delay;
        // A wait can end early (another signal, such as the profiler's): wait out the rest.
        while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            if let Some(again) = signals.wait(left) {
                log::warn!(
                    "{again} received during SHUTDOWN_DELAY: exiting now, cutting {} connections",
                    shared.open_connections()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let shutdown_timeout = shared.config.shutdown_timeout;
    log::info!(
        "{signal} received: draining (up to {shutdown_timeout:?}), {} connections open",
        shared.open_connections()
    );
    // Each worker notices within a sweep tick, takes what is queued on its listener and
    // shuts it; until then new connections are still answered (with Connection: close).
    shared.lifecycle.start_draining();
    let deadline = Instant::now() + shutdown_timeout;
    let mut running = *workers;
    while running > 0 {
        let now = Instant::now();
        if now >= deadline {
            log::warn!(
                "SHUTDOWN_TIMEOUT ({shutdown_timeout:?}) reached: cutting {} connections",
                shared.open_connections()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(again) = signals.wait(Duration::ZERO) {
            log::warn!(
                "{again} received while draining: exiting now, cutting {} connections",
                shared.open_connections()
            );
            return Ok(ExitCode::FAILURE);
        }
        match inbox.recv_timeout(POLL.min(deadline - now)) {
            Ok(Report::Finished(_)) => running -= 1,
            Ok(Report::Failed(id, e)) => {
                log::error!("worker {id} failed while draining: {e}");
                running -= 1;
            }
            Ok(Report::Started(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    log::info!("drained: all connections closed, exiting");
    Ok(ExitCode::SUCCESS)
}
