//! Log output: env_logger with RUST_LOG, as text for people or one JSON object per line
//! (LOG_FORMAT=json) for log collectors.

use std::io::Write;

use serde::Serialize;

use crate::config::{Config, LogFormat};

#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    level: &'a str,
    target: &'a str,
    message: &'a str,
}

/// Installs the logger, and a panic hook that logs through it (one line, in the chosen
/// format) instead of printing to stderr on its own.
pub fn init(config: &Config) {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&config.log_filter);
    if config.log_format == LogFormat::Json {
        builder.format(|buf, record| {
            let time = buf.timestamp_millis().to_string();
            let message = record.args().to_string();
            let line =
                JsonLine { time: &time, level: record.level().as_str(), target: record.target(), message: &message };
            let json = simd_json::serde::to_string(&line).unwrap_or_default();
            writeln!(buf, "{json}")
        });
    }
    builder.init();
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = crate::catch::panic_message(info.payload());
        log::error!("panic in thread {} at {location}: {message}", thread.name().unwrap_or("?"));
    }));
}
