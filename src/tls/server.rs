//! The listener's TLS configuration: TLS 1.3 and 1.2 only, ALPN `http/1.1`, the certificate
//! pair from TLS_CERT_FILE/TLS_KEY_FILE and, with TLS_CLIENT_CA_FILE, client certificates
//! required and verified (mTLS) — and its reload when the files change.
//!
//! Kubernetes updates a mounted Secret by swapping a symlink (`..data`) to a new directory;
//! cert-manager renews by rewriting the Secret. A watcher thread looks at the files once a
//! second (their identity: device, inode, size, modification time, all through the
//! symlinks) and, when they changed, builds a new configuration. If it loads (the chain
//! parses, the key matches it, the CA file parses), it is published: the workers' next
//! handshakes use it, connections already open keep what they negotiated. If not, the
//! failure is logged and counted, and the previous pair keeps serving.
//!
//! Each worker keeps its own `Arc` of the current configuration and compares a generation
//! number (one relaxed load per handshake) to notice a new one: no lock on the handshake
//! path. Resumption state (the ticket key, the session cache) carries over a reload of the
//! certificate, so clients keep resuming; it is replaced when the client CAs change, so a
//! session admitted under the old CAs cannot resume under the new.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{
    NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::SingleCertAndKey;
use rustls::ServerConfig;

use super::describe::{self, Summary};
use super::files;
use super::stats::TlsStats;
use crate::config::{ConfigError, TlsFiles};

/// How often the watcher looks at the files.
pub(crate) const RELOAD_POLL: Duration = Duration::from_secs(1);
/// TLS 1.2 sessions remembered for resumption by session id (TLS 1.3 and most 1.2 clients
/// resume with tickets, which need no memory here).
const SESSION_CACHE: usize = 4096;

/// The listener's TLS, shared by every worker.
pub(crate) struct ServerTls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Mutex<Arc<Configs>>,
    generation: AtomicU64,
    pub(crate) stats: TlsStats,
    /// What the serving certificate is, for the start-up line and the reload log.
    serving: Mutex<Summary>,
}

/// Resumption state, kept across reloads of the certificate; `None` with TLS_RESUMPTION=off.
#[derive(Clone)]
struct Resumption(Option<(Arc<dyn ProducesTickets>, Arc<dyn StoresServerSessions>)>);

impl Resumption {
    fn new(enabled: bool) -> Result<Resumption, String> {
        if !enabled {
            return Ok(Resumption(None));
        }
        let tickets =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| format!("cannot make a ticket key: {e}"))?;
        let sessions: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(SESSION_CACHE);
        Ok(Resumption(Some((tickets, sessions))))
    }

    fn apply(&self, config: &mut ServerConfig) {
        match &self.0 {
            Some((tickets, sessions)) => {
                config.ticketer = tickets.clone();
                config.session_storage = sessions.clone();
            }
            None => {
                config.session_storage = Arc::new(NoServerSessionStorage {});
                config.send_tls13_tickets = 0;
            }
        }
    }
}

/// What new handshakes are configured with: the server's order of cipher suites, and the
/// client's, for a client that puts ChaCha20 before AES-GCM (it has no AES instructions, and
/// AES in software would be slow for it and leak timing) — Go's rule.
pub(crate) struct Configs {
    server_order: Arc<ServerConfig>,
    client_order: Arc<ServerConfig>,
}

impl Configs {
    fn new(server_order: ServerConfig) -> Configs {
        let mut client_order = server_order.clone();
        client_order.ignore_client_order = false;
        Configs { server_order: Arc::new(server_order), client_order: Arc::new(client_order) }
    }

    /// The configuration for a ClientHello that lists `suites`, in its order of preference.
    pub(crate) fn for_client(&self, suites: &[rustls::CipherSuite]) -> Arc<ServerConfig> {
        use rustls::CipherSuite::*;
        let first_aead = suites.iter().find_map(|suite| match suite {
            TLS13_CHACHA20_POLY1305_SHA256
            | TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Some(true),
            TLS13_AES_128_GCM_SHA256
            | TLS13_AES_256_GCM_SHA384
            | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Some(false),
            _ => None,
        });
        match first_aead {
            Some(true) => self.client_order.clone(),
            _ => self.server_order.clone(),
        }
    }
}

/// One loaded configuration and what it came from.
struct Loaded {
    config: ServerConfig,
    summary: Summary,
    stamps: Stamps,
}

impl ServerTls {
    /// Loads the files once, at start: a file that cannot be read, does not parse, or a key
    /// that does not match its certificate stops the start (exit 2), naming the setting.
    pub(crate) fn load(files: &TlsFiles) -> Result<Arc<ServerTls>, ConfigError> {
        let provider = Arc::new(server_provider());
        let resumption = Resumption::new(files.resumption).map_err(|e| refused("TLS_CERT_FILE", &files.cert, e))?;
        let loaded = build(files, &provider, &resumption).map_err(|(var, why)| {
            let path = match var {
                "TLS_KEY_FILE" => &files.key,
                "TLS_CLIENT_CA_FILE" => files.client_ca.as_ref().unwrap_or(&files.cert),
                _ => &files.cert,
            };
            refused(var, path, why)
        })?;
        let tls = ServerTls {
            files: files.clone(),
            provider,
            current: Mutex::new(Arc::new(Configs::new(loaded.config))),
            generation: AtomicU64::new(0),
            stats: TlsStats::default(),
            serving: Mutex::new(loaded.summary.clone()),
        };
        tls.stats.serving_until(loaded.summary.not_after);
        let tls = Arc::new(tls);
        let watcher = tls.clone();
        std::thread::Builder::new()
            .name("percore-tls".into())
            .spawn(move || watcher.watch(loaded.stamps, resumption))
            .map_err(|e| refused("TLS_CERT_FILE", &files.cert, format!("cannot start the reload watcher: {e}")))?;
        Ok(tls)
    }

    /// The configurations new handshakes use, and their generation.
    pub(crate) fn current(&self) -> (u64, Arc<Configs>) {
        let config = self.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Read after the configuration: a generation newer than what was read only makes
        // the caller look again at its next handshake.
        (self.generation.load(Ordering::Acquire), config)
    }

    /// The generation of the current configuration: a worker holding an older one asks
    /// for [`ServerTls::current`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// For the start-up line: what is served, and whether clients must show a certificate.
    pub(crate) fn describe(&self) -> String {
        let serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        let mtls = match &self.files.client_ca {
            Some(ca) => format!(", client certificates required (TLS_CLIENT_CA_FILE={})", ca.display()),
            None => String::new(),
        };
        let resumption = if self.files.resumption { "" } else { ", no session resumption (TLS_RESUMPTION=off)" };
        format!(
            "TLS 1.3/1.2, ALPN http/1.1, certificate {serving}, expires {}{mtls}{resumption}",
            date(serving.not_after)
        )
    }

    /// The watcher thread's life: reload when the files change.
    fn watch(&self, mut stamps: Stamps, mut resumption: Resumption) {
        loop {
            std::thread::sleep(RELOAD_POLL);
            let now = Stamps::of(&self.files);
            if now == stamps {
                continue;
            }
            if now.client_ca != stamps.client_ca {
                match Resumption::new(self.files.resumption) {
                    Ok(fresh) => resumption = fresh,
                    Err(e) => log::warn!("TLS: {e}; resumption state kept"),
                }
            }
            stamps = now;
            match build(&self.files, &self.provider, &resumption) {
                Ok(loaded) => {
                    stamps = loaded.stamps;
                    *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(Configs::new(loaded.config));
                    self.generation.fetch_add(1, Ordering::Release);
                    self.stats.serving_until(loaded.summary.not_after);
                    self.stats.reloaded(true);
                    log::info!(
                        "TLS: new handshakes use the new certificate ({}, expires {}); open connections keep theirs",
                        loaded.summary,
                        date(loaded.summary.not_after)
                    );
                    *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = loaded.summary;
                }
                Err((var, why)) => {
                    self.stats.reloaded(false);
                    let serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
                    log::warn!("TLS: {var} changed but was not loaded ({why}); still serving {serving}");
                }
            }
        }
    }
}

/// The provider the listener is built with: AES-128-GCM first. The key schedule of a TLS 1.3
/// suite runs on its hash, and SHA-256 has hardware instructions on current x86 and ARM
/// where SHA-384 does not: a handshake under AES-128-GCM-SHA256 costs measurably less
/// (perf/README.md) for the same security margin, as Go's server chooses it too. ChaCha20
/// stays offered, for clients without AES instructions.
fn server_provider() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    let mut provider = super::provider();
    provider.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    provider
}

/// Builds a configuration from the files, or says which setting's file is wrong.
fn build(
    files: &TlsFiles,
    provider: &Arc<CryptoProvider>,
    resumption: &Resumption,
) -> Result<Loaded, (&'static str, String)> {
    // Taken before reading, so a change made while reading is seen at the next look.
    let stamps = Stamps::of(files);
    let certified = files::certified_key(&files.cert, &files.key, provider).map_err(|why| {
        let var = if why.contains(&*files.key.to_string_lossy()) && !why.contains("does not belong") {
            "TLS_KEY_FILE"
        } else {
            "TLS_CERT_FILE"
        };
        (var, why)
    })?;
    let leaf = certified.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    let summary = describe::summarize(leaf)
        .ok_or(("TLS_CERT_FILE", format!("the first certificate in {} does not parse", files.cert.display())))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ("TLS_CERT_FILE", e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = files::roots(ca).map_err(|why| ("TLS_CLIENT_CA_FILE", why))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| ("TLS_CLIENT_CA_FILE", format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    // The server's order of suites decides (see server_provider), as Go's does; Configs
    // keeps a copy that follows the client's, for clients without AES instructions.
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    resumption.apply(&mut config);
    Ok(Loaded { config, summary, stamps })
}

fn refused(var: &'static str, path: &Path, why: String) -> ConfigError {
    ConfigError { var, value: path.display().to_string(), expected: format!("a usable PEM file ({why})") }
}

/// What identifies the files' contents without reading them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamps {
    cert: Option<Stamp>,
    key: Option<Stamp>,
    client_ca: Option<Stamp>,
}

type Stamp = (u64, u64, u64, SystemTime);

impl Stamps {
    fn of(files: &TlsFiles) -> Stamps {
        // Through the symlinks: a swapped `..data` link is a different file.
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.size(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
        };
        Stamps {
            cert: stamp(&files.cert),
            key: stamp(&files.key),
            client_ca: files.client_ca.as_deref().and_then(stamp),
        }
    }
}

/// `2026-12-05T00:00:00Z`.
fn date(unix: u64) -> String {
    String::from_utf8_lossy(&crate::clock::Timestamp(unix as i64).rfc3339()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::CipherSuite::*;

    fn configs() -> Configs {
        let cert = CertificateDer::from_pem_slice(include_bytes!("testdata/leaf.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/leaf.key")).unwrap();
        let mut config = ServerConfig::builder_with_provider(Arc::new(server_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.ignore_client_order = true;
        Configs::new(config)
    }

    #[test]
    fn the_server_chooses_aes_128_unless_the_client_puts_chacha20_first() {
        let c = configs();
        let server = |suites: &[rustls::CipherSuite]| c.for_client(suites).ignore_client_order;
        assert!(server(&[TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_128_GCM_SHA256]));
        assert!(server(&[TLS_EMPTY_RENEGOTIATION_INFO_SCSV, TLS13_AES_128_GCM_SHA256]));
        assert!(server(&[]), "nothing known: the server's order");
        assert!(!server(&[TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_128_GCM_SHA256]), "no AES instructions: theirs");
        assert!(!server(&[TLS_EMPTY_RENEGOTIATION_INFO_SCSV, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]));
        let first = c.server_order.crypto_provider().cipher_suites[0].suite();
        assert_eq!(first, TLS13_AES_128_GCM_SHA256, "SHA-256's key schedule has hardware instructions");
    }
}
