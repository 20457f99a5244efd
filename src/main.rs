//! The `percore` binary: arguments, configuration, logging, then [`percore::server::run`].
//! Exit codes: 0 after a clean drain, 1 when the server cannot start or a worker dies,
//! 2 for invalid configuration or arguments.

use std::process::ExitCode;

use percore::config::{self, Config};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--help" | "-h") => {
            print!("{}", config::help_text());
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("percore {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("percore: unknown argument {other:?} (settings come from the environment; see percore --help)");
            return ExitCode::from(2);
        }
        None => {}
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("percore: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    percore::logging::init(&config);
    percore::server::run(config)
}
