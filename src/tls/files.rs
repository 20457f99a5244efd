//! PEM files to rustls's types: a certificate chain, a private key (PKCS#8, PKCS#1 RSA or
//! SEC1 EC), a set of roots. Each failure says which file and what was wrong with it, in
//! words an operator can act on; the caller adds which setting named the file.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

/// Every certificate in the file, in order (the leaf first, for a chain).
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate (BEGIN CERTIFICATE) in {}", path.display()));
    }
    Ok(certs)
}

/// The first private key in the file.
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("no private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) in {}", path.display())
        }
        e => pem_error(path, e),
    })
}

/// A chain and its key, checked against each other: a key that does not match its
/// certificate would fail every handshake, so it is refused here instead.
pub(crate) fn certified_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let chain = certificates(cert)?;
    let key_der = private_key(key)?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("the key in {} cannot sign: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("the key in {} does not belong to the certificate in {}", key.display(), cert.display())
        }
        e => format!("{} and {}: {e}", cert.display(), key.display()),
    })?;
    Ok(Arc::new(certified))
}

/// The certificates of a PEM file as trust anchors.
pub(crate) fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|e| format!("a certificate in {} is not a usable root: {e}", path.display()))?;
    }
    Ok(store)
}

/// Mozilla's root set, built into the binary: what `sslrootcert=system` means here.
pub(crate) fn system_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => format!("cannot read {}: {io}", path.display()),
        e => format!("{} is not valid PEM: {e:?}", path.display()),
    }
}
