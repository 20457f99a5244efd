//! The image and the manifests are part of the product, checked here against the server
//! itself: the Deployment stays Guaranteed with whole CPUs, probes and ports match the
//! server's routes and defaults, every variable the manifests set is a setting percore knows
//! (and parses), shutdown fits the grace period, and the io_uring seccomp profile really
//! lets percore run io_uring — while the same profile without io_uring makes it fall back.

use std::path::Path;

use percore::app::routes::router;
use percore::config::{parse_duration, Config, SETTINGS};
use percore::http::request::Method;
use percore::http::route::Resolved;
use simd_json::prelude::*;
use yaml_rust2::{Yaml, YamlLoader};

fn load(path: &str) -> Yaml {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn deployment() -> Yaml {
    load("k8s/base/deployment.yaml")
}

fn pod(d: &Yaml) -> &Yaml {
    &d["spec"]["template"]["spec"]
}

fn container(d: &Yaml) -> &Yaml {
    let containers = pod(d)["containers"].as_vec().unwrap();
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

/// The ConfigMap's data, the Deployment's plain env and the example Secret: every variable
/// the manifests hand the server.
fn manifest_env() -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (k, v) in load("k8s/base/configmap.yaml")["data"].as_hash().unwrap() {
        env.push((k.as_str().unwrap().to_owned(), v.as_str().expect("ConfigMap values are strings").to_owned()));
    }
    for (k, v) in load("k8s/base/secret.example.yaml")["stringData"].as_hash().unwrap() {
        env.push((k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned()));
    }
    for e in container(&deployment())["env"].as_vec().unwrap() {
        let name = e["name"].as_str().unwrap().to_owned();
        let value = e["value"].as_str().map(str::to_owned);
        if !env.iter().any(|(k, _)| *k == name) {
            env.push((name, value.unwrap_or_else(|| "from-a-secret".into())));
        }
    }
    env
}

fn cpus(q: &Yaml) -> f64 {
    match q {
        Yaml::Integer(n) => *n as f64,
        Yaml::Real(r) => r.parse().unwrap(),
        Yaml::String(s) => match s.strip_suffix('m') {
            Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
            None => s.parse().unwrap(),
        },
        other => panic!("cpu quantity {other:?}"),
    }
}

#[test]
fn the_deployment_is_guaranteed_with_whole_cpus() {
    let d = deployment();
    let r = &container(&d)["resources"];
    for resource in ["cpu", "memory"] {
        assert!(!r["requests"][resource].is_badvalue(), "requests.{resource} set");
        assert_eq!(r["requests"][resource], r["limits"][resource], "requests equal limits for {resource}");
    }
    let cpu = cpus(&r["limits"]["cpu"]);
    assert!(cpu >= 1.0 && cpu.fract() == 0.0, "a whole number of CPUs for the static CPU manager, got {cpu}");
    assert_eq!(d["spec"]["replicas"].as_i64(), Some(3));
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"].as_i64(), Some(0));
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"].as_i64(), Some(1));
    // Sized at start: an in-place resize must restart the container to take effect.
    let policy = container(&d)["resizePolicy"].as_vec().expect("resizePolicy");
    for resource in ["cpu", "memory"] {
        assert!(
            policy.iter().any(|p| p["resourceName"].as_str() == Some(resource)
                && p["restartPolicy"].as_str() == Some("RestartContainer")),
            "{resource} resizes restart the container"
        );
    }
}

#[test]
fn every_variable_the_manifests_set_is_a_setting_percore_knows_and_accepts() {
    let env = manifest_env();
    for (k, _) in &env {
        assert!(SETTINGS.iter().any(|s| s.name == k), "{k} is set by the manifests but percore does not know it");
    }
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
    assert!(config.is_ok(), "the manifests' values do not parse: {:?}", config.err());
}

#[test]
fn probes_ports_and_selectors_match_the_server() {
    let d = deployment();
    let c = container(&d);
    let port = &c["ports"][0];
    let env = manifest_env();
    let server_port = env.iter().find(|(k, _)| k == "SERVER_PORT").map_or("8080".to_owned(), |(_, v)| v.clone());
    assert_eq!(port["containerPort"].as_i64().unwrap().to_string(), server_port, "containerPort is the server's port");
    let default = SETTINGS.iter().find(|s| s.name == "SERVER_PORT").unwrap().default;
    assert_eq!(server_port, default, "the manifests run the server on its default port");
    let containerfile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile")).unwrap();
    assert!(containerfile.lines().any(|l| l.trim() == format!("EXPOSE {server_port}")), "the image exposes the port");
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"].as_str(),
        Some(server_port.as_str())
    );
    assert_eq!(d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"].as_str(), Some("/metrics"));

    let router = router(false);
    for (probe, path) in [("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"], port["name"], "{probe} uses the container's port");
        assert!(matches!(router.resolve(Method::Get, path.as_bytes()), Resolved::Found { .. }), "{path} is a route");
    }
    assert!(matches!(router.resolve(Method::Get, b"/metrics"), Resolved::Found { .. }));

    let labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&d["spec"]["selector"]["matchLabels"], labels);
    let service = load("k8s/base/service.yaml");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], port["name"]);
    assert_eq!(&load("k8s/base/pdb.yaml")["spec"]["selector"]["matchLabels"], labels);
    let hpa = load("k8s/base/hpa.yaml");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], d["metadata"]["name"]);
    assert!(hpa["spec"]["minReplicas"].as_i64().unwrap() >= 2);
}

#[test]
fn shutdown_fits_in_the_grace_period() {
    let d = deployment();
    let grace = pod(&d)["terminationGracePeriodSeconds"].as_i64().unwrap() as u64;
    let pre_stop = container(&d)["lifecycle"]["preStop"]["sleep"]["seconds"].as_i64().unwrap() as u64;
    let env = manifest_env();
    let shutdown = env.iter().find(|(k, _)| k == "SHUTDOWN_TIMEOUT").map_or("25s".to_owned(), |(_, v)| v.clone());
    let shutdown = parse_duration(&shutdown).unwrap().as_secs();
    assert!(
        grace > pre_stop + shutdown,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} + SHUTDOWN_TIMEOUT {shutdown}"
    );
}

#[test]
fn the_pod_runs_locked_down() {
    let d = deployment();
    let p = pod(&d);
    assert_eq!(p["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let uid = p["securityContext"]["runAsUser"].as_i64().unwrap();
    assert!(uid > 0);
    let containerfile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile")).unwrap();
    assert!(
        containerfile.lines().any(|l| l.trim() == format!("USER {uid}:{uid}")),
        "the image's USER is the pod's runAsUser"
    );
    assert_eq!(p["securityContext"]["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
    assert_eq!(p["automountServiceAccountToken"].as_bool(), Some(false));
    let sc = &container(&d)["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));

    let patch = load("k8s/overlays/io-uring/seccomp-patch.yaml");
    let profile = &patch["spec"]["template"]["spec"]["securityContext"]["seccompProfile"];
    assert_eq!(profile["type"].as_str(), Some("Localhost"));
    assert_eq!(profile["localhostProfile"].as_str(), Some("profiles/percore-io-uring.json"));
    let json = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/seccomp/percore-io-uring.json")).unwrap();
    let mut json = json;
    let v = simd_json::to_owned_value(&mut json).unwrap();
    let allowed: Vec<&str> = v["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| r["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()))
        .collect();
    for name in ["io_uring_setup", "io_uring_enter", "io_uring_register", "epoll_wait", "accept4", "futex", "clone"] {
        assert!(allowed.contains(&name), "{name} missing from the profile");
    }
    for name in ["ptrace", "mount", "bpf", "kexec_load", "init_module", "unshare", "setns"] {
        assert!(!allowed.contains(&name), "{name} must stay forbidden");
    }
}

/// Runs percore under the Localhost profile through libseccomp, as a container runtime would.
fn under_profile(without_io_uring: bool, driver: &'static str) -> Option<crate::common::Server> {
    let python = "/usr/bin/python3";
    let has_seccomp =
        std::process::Command::new(python).args(["-c", "import seccomp"]).output().is_ok_and(|o| o.status.success());
    if !has_seccomp {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3-seccomp is needed under CI (apt install python3-seccomp)"
        );
        eprintln!("\n*** python3-seccomp not installed: seccomp profile test SKIPPED ***\n");
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = std::process::Command::new(python);
    cmd.arg(root.join("tests/support/seccomp_exec.py")).arg(root.join("k8s/seccomp/percore-io-uring.json"));
    if without_io_uring {
        for name in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
            cmd.args(["--without", name]);
        }
    }
    cmd.arg("--").arg(env!("CARGO_BIN_EXE_percore"));
    Some(crate::common::Server::start_command(cmd, driver, &[("DEBUG_ADDR", "127.0.0.1:0")], |_| {}))
}

#[test]
fn the_io_uring_profile_runs_percore_on_io_uring_and_its_absence_falls_back_to_epoll() {
    if crate::common::drivers().len() < 2 {
        return; // no io_uring on this machine at all (announced by drivers())
    }
    let Some(s) = under_profile(false, "io_uring") else { return };
    s.wait_ready();
    let r = s.call("POST", "/api/v1/users", Some(r#"{"name":"Sec","email":"sec@example.com"}"#));
    assert_eq!(r.status, 201, "the whole API works under the profile: {}", r.text());
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains("io_driver=\"io_uring\""), "{metrics}");
    drop(s);

    let Some(s) = under_profile(true, "auto") else { return };
    s.wait_ready();
    assert!(s.logs().contains("using epoll"), "{}", s.logs());
    assert!(s.get("/metrics").text().contains("io_driver=\"epoll\""));
    assert_eq!(s.call("POST", "/api/v1/users", Some(r#"{"name":"Sec","email":"sec2@example.com"}"#)).status, 201);
}

#[test]
fn the_tls_overlay_mounts_a_tls_secret_as_a_directory_and_probes_over_https() {
    let patch = load("k8s/overlays/tls/deployment-patch.yaml");
    let c = container(&patch);
    let env: Vec<(String, String)> = c["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
        .collect();
    let mount = &c["volumeMounts"][0];
    let dir = mount["mountPath"].as_str().unwrap();
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    assert!(mount["subPath"].is_badvalue(), "a subPath mount never sees the Secret's updates: no reload");
    for (var, file) in [("TLS_CERT_FILE", "tls.crt"), ("TLS_KEY_FILE", "tls.key")] {
        let value = &env.iter().find(|(k, _)| k == var).unwrap_or_else(|| panic!("{var} set")).1;
        assert_eq!(value, &format!("{dir}/{file}"), "{var}: the kubernetes.io/tls key inside the mount");
        assert!(SETTINGS.iter().any(|s| s.name == var));
    }
    let volume = &pod(&patch)["volumes"][0];
    assert_eq!(volume["name"], mount["name"]);
    assert_eq!(volume["secret"]["secretName"].as_str(), Some("percore-tls"));
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["scheme"].as_str(), Some("HTTPS"), "{probe}");
    }
    // The port is renamed https for every probe and for the Service, together.
    let ops = load("k8s/overlays/tls/https-port.yaml");
    let renamed: Vec<&str> = ops.as_vec().unwrap().iter().map(|op| op["value"].as_str().unwrap()).collect();
    assert_eq!(renamed, ["https"; 4]);
    let service = load("k8s/overlays/tls/service-https.yaml");
    assert_eq!(service[0]["value"]["targetPort"].as_str(), Some("https"));
    assert_eq!(service[0]["value"]["port"].as_i64(), Some(443));
}
