//! What a certificate says, in words: its subject, the names it is valid for, its issuer,
//! serial and not-after time. For /metrics (the serving certificate's expiry) and for the
//! log line that explains a refused handshake (expected host against the names presented).
//! Pure: DER in, text out.

use std::fmt;

use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// The parts of a certificate a person checks first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub(crate) names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub(crate) not_after: u64,
    /// Hexadecimal, as `openssl x509 -serial` prints it.
    pub(crate) serial: String,
}

/// `None` when the bytes are not an X.509 certificate.
pub(crate) fn summarize(der: &[u8]) -> Option<Summary> {
    let cert = Certificate::from_der(der).ok()?;
    let tbs = &cert.tbs_certificate;
    let names = match tbs.get::<SubjectAltName>() {
        Ok(Some((_, san))) => san.0.iter().filter_map(general_name).collect(),
        _ => Vec::new(),
    };
    Some(Summary {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        names,
        not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
        serial: tbs.serial_number.as_bytes().iter().map(|b| format!("{b:02X}")).collect(),
    })
}

fn general_name(name: &GeneralName) -> Option<String> {
    match name {
        GeneralName::DnsName(dns) => Some(dns.to_string()),
        GeneralName::IpAddress(ip) => match ip.as_bytes() {
            &[a, b, c, d] => Some(std::net::Ipv4Addr::new(a, b, c, d).to_string()),
            bytes => <[u8; 16]>::try_from(bytes).ok().map(|b| std::net::Ipv6Addr::from(b).to_string()),
        },
        _ => None,
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subject \"{}\"", self.subject)?;
        if !self.names.is_empty() {
            write!(f, ", names [{}]", self.names.join(", "))?;
        }
        write!(f, ", issued by \"{}\", serial {}", self.issuer, self.serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_certificate_has_no_summary() {
        assert_eq!(summarize(b""), None);
        assert_eq!(summarize(b"\x30\x03\x02\x01\x01"), None);
    }

    #[test]
    fn a_certificate_is_described_by_its_subject_names_issuer_and_expiry() {
        // A self-signed P-256 certificate for percore.test and 127.0.0.1, valid until
        // 2036-12-02 23:57:40 UTC, made once with `openssl req -x509 -set_serial 500`
        // (the tests that speak TLS make theirs at test time).
        let pem = include_str!("testdata/leaf.pem");
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
            .unwrap();
        let s = summarize(&der).unwrap();
        assert_eq!(s.subject, "CN=percore.test");
        assert_eq!(s.issuer, "CN=percore test CA");
        assert_eq!(s.names, ["percore.test", "127.0.0.1"]);
        assert_eq!(s.not_after, 2111875092);
        assert_eq!(s.serial, "01F4");
        assert_eq!(
            s.to_string(),
            "subject \"CN=percore.test\", names [percore.test, 127.0.0.1], issued by \"CN=percore test CA\", serial 01F4"
        );
    }
}
