//! Certificates made at test time by the `openssl` CLI: CAs, server and client certificates
//! (P-256 by default; RSA where a test asks), each a PEM file beside its key, in a
//! directory of the test's own that goes away with it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Pki {
    pub dir: PathBuf,
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy)]
pub enum Usage {
    Server,
    Client,
}

/// The key of a certificate.
#[derive(Clone, Copy)]
pub enum KeyKind {
    /// P-256, PKCS#8 (`BEGIN PRIVATE KEY`).
    Ec,
    /// P-256, SEC1 (`BEGIN EC PRIVATE KEY`).
    EcSec1,
    /// RSA 2048, PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    RsaPkcs1,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl (apt install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "percore-pki-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A self-signed CA named `CN=<cn>`, files `<name>.pem` and `<name>.key`.
    pub fn ca(&self, name: &str, cn: &str) -> Pair {
        let pair = Pair { cert: self.path(&format!("{name}.pem")), key: self.path(&format!("{name}.key")) };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            s(&pair.key),
            "-out",
            s(&pair.cert),
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pair
    }

    /// A certificate `CN=<cn>` with the subjectAltNames `sans` (`DNS:x`, `IP:1.2.3.4`),
    /// issued by `ca`, with serial `serial`.
    pub fn leaf(&self, ca: &Pair, name: &str, cn: &str, sans: &[&str], serial: u32, usage: Usage) -> Pair {
        self.leaf_with(ca, name, cn, sans, serial, usage, KeyKind::Ec)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn leaf_with(
        &self,
        ca: &Pair,
        name: &str,
        cn: &str,
        sans: &[&str],
        serial: u32,
        usage: Usage,
        kind: KeyKind,
    ) -> Pair {
        let pair = Pair { cert: self.path(&format!("{name}.pem")), key: self.path(&format!("{name}.key")) };
        let csr = self.path(&format!("{name}.csr"));
        let ext = self.path(&format!("{name}.ext"));
        let newkey: &[&str] = match kind {
            KeyKind::Ec | KeyKind::EcSec1 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyKind::RsaPkcs1 => &["-newkey", "rsa:2048"],
        };
        let mut args = vec!["req"];
        args.extend_from_slice(newkey);
        args.extend_from_slice(&["-nodes", "-keyout", s(&pair.key), "-out", s(&csr), "-subj"]);
        let subj = format!("/CN={cn}");
        args.push(&subj);
        openssl(&args);
        let mut extensions = String::from("basicConstraints=critical,CA:FALSE\n");
        extensions.push_str(match usage {
            Usage::Server => "extendedKeyUsage=serverAuth\n",
            Usage::Client => "extendedKeyUsage=clientAuth\n",
        });
        if !sans.is_empty() {
            extensions.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        std::fs::write(&ext, extensions).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&ca.cert),
            "-CAkey",
            s(&ca.key),
            "-set_serial",
            &serial.to_string(),
            "-days",
            "30",
            "-extfile",
            s(&ext),
            "-out",
            s(&pair.cert),
        ]);
        // Rewritten in the older formats a key file may come in.
        match kind {
            KeyKind::Ec => {}
            KeyKind::EcSec1 => openssl(&["ec", "-in", s(&pair.key), "-out", s(&pair.key)]),
            KeyKind::RsaPkcs1 => openssl(&["rsa", "-traditional", "-in", s(&pair.key), "-out", s(&pair.key)]),
        }
        pair
    }

    /// The certificate's serial as `openssl x509 -serial` prints it (hexadecimal).
    pub fn serial(cert: &Path) -> String {
        let out = Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(cert).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("serial=").to_owned()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}
