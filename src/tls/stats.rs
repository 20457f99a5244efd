//! The listener's TLS counters for /metrics: handshakes by version and kind, handshake
//! failures by reason, certificate reloads, and the serving certificate's not-after time.
//!
//! Process-wide atomics: they change once per connection (a handshake) or once per reload,
//! never per request, so sharing them across cores costs the request path nothing.

use std::sync::atomic::{AtomicU64, Ordering};

labelled! {
    /// Why a handshake did not complete (percore_tls_handshake_failures_total).
    pub(crate) enum Failure / FAILURE_REASONS {
        /// The client spoke plain HTTP to the TLS port (answered 400 in plain text).
        PlainHttp = "plain_http",
        /// Not done within SERVER_READ_TIMEOUT, or cut by the drain.
        Timeout = "timeout",
        /// The client closed or reset the connection mid-handshake.
        Closed = "closed",
        /// The client offers no version this server speaks (TLS 1.2 and 1.3 only).
        ProtocolVersion = "protocol_version",
        /// No cipher suite, key exchange group or signature scheme in common.
        NoSharedCipher = "no_shared_cipher",
        /// The client's ALPN list lacks `http/1.1`.
        NoAlpn = "no_alpn",
        /// TLS_CLIENT_CA_FILE is set and the client presented no certificate.
        NoCertificate = "no_certificate",
        /// The client's certificate does not lead to TLS_CLIENT_CA_FILE (or is expired, …).
        BadCertificate = "bad_certificate",
        /// The client aborted with an alert (typically: it does not trust this certificate).
        ClientAlert = "client_alert",
        /// Bytes that are not a TLS handshake.
        Malformed = "malformed",
        Other = "other",
    }
}

impl Failure {
    /// The reason a rustls error stands for.
    pub(crate) fn of(e: &rustls::Error) -> Failure {
        use rustls::{Error, PeerIncompatible};
        match e {
            Error::NoCertificatesPresented => Failure::NoCertificate,
            Error::InvalidCertificate(_) => Failure::BadCertificate,
            Error::NoApplicationProtocol => Failure::NoAlpn,
            Error::AlertReceived(_) => Failure::ClientAlert,
            Error::PeerIncompatible(
                PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::Tls13RequiredForQuic
                | PeerIncompatible::SupportedVersionsExtensionRequired
                // Only clients older than TLS 1.2 leave it out (rustls looks for it first).
                | PeerIncompatible::SignatureAlgorithmsExtensionRequired,
            ) => Failure::ProtocolVersion,
            Error::PeerIncompatible(_) => Failure::NoSharedCipher,
            Error::InvalidMessage(_) | Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
                Failure::Malformed
            }
            Error::PeerMisbehaved(_) | Error::DecryptError => Failure::Malformed,
            _ => Failure::Other,
        }
    }
}

/// `version` × `resumed` of `percore_tls_handshakes_total`.
pub(crate) const HANDSHAKE_KINDS: [(&str, &str); 4] =
    [("TLSv1.2", "false"), ("TLSv1.2", "true"), ("TLSv1.3", "false"), ("TLSv1.3", "true")];

#[derive(Default)]
pub(crate) struct TlsStats {
    handshakes: [AtomicU64; HANDSHAKE_KINDS.len()],
    failures: [AtomicU64; FAILURE_REASONS.len()],
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    /// The serving certificate's not-after, seconds since the epoch.
    expiry: AtomicU64,
}

impl TlsStats {
    pub(crate) fn handshake(&self, tls13: bool, resumed: bool) {
        let i = usize::from(tls13) * 2 + usize::from(resumed);
        self.handshakes[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, why: Failure) {
        self.failures[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reloaded(&self, ok: bool) {
        let counter = if ok { &self.reloads } else { &self.reload_failures };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn serving_until(&self, not_after: u64) {
        self.expiry.store(not_after, Ordering::Relaxed);
    }

    /// What /metrics shows.
    pub(crate) fn read(&self) -> TlsCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TlsCounts {
            handshakes: std::array::from_fn(|i| load(&self.handshakes[i])),
            failures: std::array::from_fn(|i| load(&self.failures[i])),
            reloads: load(&self.reloads),
            reload_failures: load(&self.reload_failures),
            expiry: load(&self.expiry),
        }
    }
}

/// A reading of [`TlsStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsCounts {
    pub(crate) handshakes: [u64; HANDSHAKE_KINDS.len()],
    pub(crate) failures: [u64; FAILURE_REASONS.len()],
    pub(crate) reloads: u64,
    pub(crate) reload_failures: u64,
    pub(crate) expiry: u64,
}
