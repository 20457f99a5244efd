//! The binary's command line and configuration errors.

use std::process::Command;

fn percore(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_percore"));
    cmd.env_clear().args(args).env("DEBUG_ADDR", "").env("SERVER_PORT", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run percore")
}

#[test]
fn help_lists_every_setting_with_its_default() {
    let out = percore(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for s in percore::config::SETTINGS {
        assert!(help.contains(s.name), "--help lacks {}", s.name);
    }
    for default in [
        "0.0.0.0",
        "8080",
        "5s",
        "10s",
        "120s",
        "30s",
        "25s",
        "65536",
        "16384",
        "1048576",
        "percore.db",
        "127.0.0.1:6060",
    ] {
        assert!(help.contains(default), "--help lacks the default {default}");
    }
}

#[test]
fn version() {
    let out = percore(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), format!("percore {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn invalid_configuration_exits_2_naming_the_variable_the_value_and_the_expectation() {
    for (var, value, expected) in [
        ("SERVER_PORT", "80a", "port number"),
        ("SERVER_READ_TIMEOUT", "5 seconds", "duration"),
        ("WORKERS", "0", "number of workers"),
        ("IO_DRIVER", "kqueue", "io_uring or epoll"),
        ("MAX_BODY_BYTES", "lots", "whole number"),
        ("DB_SSLMODE", "verify_full", "verify-full"),
        ("DB_SSLROOTCERT", "/nonexistent/root.crt", "No such file"),
        ("TLS_CERT_FILE", "/nonexistent/cert.pem", "No such file"),
    ] {
        let env: Vec<(&str, &str)> = match var {
            "DB_SSLMODE" => vec![(var, value), ("DB_HOST", "db")],
            "DB_SSLROOTCERT" => vec![(var, value), ("DB_HOST", "db"), ("DB_SSLMODE", "verify-ca")],
            "TLS_CERT_FILE" => vec![(var, value), ("TLS_KEY_FILE", "/nonexistent/key.pem")],
            _ => vec![(var, value)],
        };
        let out = percore(&[], &env);
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(var) && err.contains(value) && err.contains(expected), "{err}");
    }
}

#[test]
fn unknown_arguments_exit_2() {
    let out = percore(&["--port", "80"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("--help"));
}

#[test]
fn a_taken_port_fails_the_start_with_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = percore(&[], &[("SERVER_HOST", "127.0.0.1"), ("SERVER_PORT", &port)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("cannot listen"));
}
