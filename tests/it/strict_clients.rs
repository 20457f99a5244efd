//! Every response percore sends, read by a strict HTTP/1.1 client nobody on this project
//! wrote: h11 (PyPI), driven by tests/support/h11_client.py — every route and every
//! refusal, on GET and HEAD, alone and pipelined, HTTP/1.1 and 1.0, on both drivers. A
//! response it rejects fails the test.

use std::process::Command;

use crate::common::each_driver;

/// The Python that has h11; `.ci/run` installs it. Outside CI a missing h11 skips loudly.
fn python_with_h11() -> Option<&'static str> {
    let ok = Command::new("python3").args(["-c", "import h11"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "h11 is required under CI (pip install h11)");
        eprintln!("\n*** python3 with h11 unavailable (pip install h11): strict-client test SKIPPED ***\n");
        return None;
    }
    Some("python3")
}

#[test]
fn h11_reads_every_response_percore_sends() {
    let Some(python) = python_with_h11() else { return };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/h11_client.py");
    let env = [("BENCH_ROUTES", "1"), ("SERVER_READ_TIMEOUT", "1s"), ("MAX_BODY_BYTES", "1000")];
    each_driver(&env, |s| {
        s.wait_ready();
        let out = Command::new(python).arg(script).arg(s.addr.to_string()).output().expect("run the h11 client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "h11 rejected responses ({}):\n{stdout}\n{stderr}", s.driver);
        let summary = stdout.lines().last().unwrap_or_default();
        let read: usize = summary.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(read > 150, "the client read too few responses to mean anything ({}): {summary}", s.driver);
        eprintln!("{}: {summary}", s.driver);
    });
}
