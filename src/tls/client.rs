//! The Postgres side: a rustls client configuration with libpq's meaning of `sslmode`.
//!
//! | mode | the server's certificate |
//! | --- | --- |
//! | allow, prefer, require | not checked; with `sslrootcert` given, its chain must lead there (libpq's rule) |
//! | verify-ca | its chain must lead to `sslrootcert` |
//! | verify-full | that, and it must name the host (a DNS name or an IP address SAN) |
//!
//! Whether to fall back to plain text (allow, prefer) is the connection's business
//! ([`crate::db::postgres`]); this file only decides what a handshake accepts. A refused
//! certificate is described in the error — subject, names, issuer, serial, and what did
//! not match — because that error is what the log line and /readyz show the operator.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};

use super::describe;
use super::files;
use crate::config::{ConfigError, FileSetting, PgConfig, SslMode, SslRoots};

/// What a handshake checks of the server's certificate.
#[derive(Debug)]
enum Check {
    /// Nothing but that the server holds the key of the certificate it shows.
    Nothing,
    /// The chain leads to these roots.
    Chain(RootCertStore),
    /// The chain leads to these roots and the certificate names the host.
    Full(RootCertStore),
}

/// The TLS configuration for `pg`, or `None` under `sslmode=disable`. Reads the roots and
/// the client certificate now: a file that cannot be read or does not parse is a
/// configuration error, named by the setting that gave it (exit 2 at start).
pub(crate) fn postgres(pg: &PgConfig) -> Result<Option<Arc<ClientConfig>>, ConfigError> {
    if pg.sslmode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(super::provider());
    let roots = match &pg.sslrootcert {
        None => None,
        Some(SslRoots::System) => Some(files::system_roots()),
        Some(SslRoots::File(file)) => Some(files::roots(&file.path).map_err(|why| unreadable(file, &why))?),
    };
    let check = match (pg.sslmode, roots) {
        (SslMode::VerifyFull, Some(roots)) => Check::Full(roots),
        (_, Some(roots)) => Check::Chain(roots),
        (_, None) => Check::Nothing,
    };
    let verifier = Arc::new(PgVerifier { check, mode: pg.sslmode, provider: provider.clone() });
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError { var: "DB_SSLMODE", value: pg.sslmode.as_str().into(), expected: e.to_string() })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &pg.sslcert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = files::certificates(&cert.path).map_err(|why| unreadable(cert, &why))?;
            let private = files::private_key(&key.path).map_err(|why| unreadable(key, &why))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| ConfigError {
                var: key.var,
                value: key.path.display().to_string(),
                expected: format!("the private key of the certificate in {} ({e})", cert.path.display()),
            })?
        }
    };
    Ok(Some(Arc::new(config)))
}

fn unreadable(file: &FileSetting, why: &str) -> ConfigError {
    ConfigError {
        var: file.var,
        value: file.path.display().to_string(),
        expected: format!("a readable PEM file ({why})"),
    }
}

/// libpq's checks of a Postgres server's certificate, and a description of the certificate
/// when they refuse it.
#[derive(Debug)]
struct PgVerifier {
    check: Check,
    mode: SslMode,
    provider: Arc<CryptoProvider>,
}

impl PgVerifier {
    fn refuse(&self, end_entity: &CertificateDer<'_>, why: Error) -> Error {
        let shown = match describe::summarize(end_entity) {
            Some(summary) => summary.to_string(),
            None => "unparsable".to_owned(),
        };
        let why = match why {
            Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                "its chain does not lead to a root of sslrootcert".to_owned()
            }
            other => other.to_string(),
        };
        let message = format!("sslmode={} refused the server's certificate ({shown}): {why}", self.mode.as_str());
        Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(message)))))
    }
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let (roots, name) = match &self.check {
            Check::Nothing => return Ok(ServerCertVerified::assertion()),
            Check::Chain(roots) => (roots, false),
            Check::Full(roots) => (roots, true),
        };
        let algorithms = self.provider.signature_verification_algorithms.all;
        let parsed = ParsedCertificate::try_from(end_entity).map_err(|e| self.refuse(end_entity, e))?;
        verify_server_cert_signed_by_trust_anchor(&parsed, roots, intermediates, now, algorithms)
            .map_err(|e| self.refuse(end_entity, e))?;
        if name {
            verify_server_name(&parsed, server_name).map_err(|e| self.refuse(end_entity, e))?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A refusal, as the error chain carries it up to the log line.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}
