//! rustls (on ring) with rustls-platform-verifier: on Linux and the BSDs, the system's trust
//! store (the files OpenSSL would read, found the same way) loaded on the first handshake,
//! plus the account's `ca_file`. TLS 1.2 and 1.3 only, as rustls never offers less.

use std::sync::{Arc, OnceLock};

use rustls::CertificateError;
use rustls::pki_types::{CertificateDer, ServerName};

use super::{Failure, Problem};
use crate::net::{Io, Stream};

pub(super) type Connector = tokio_rustls::TlsConnector;

/// ring, not rustls' default aws-lc-rs: a few hundred KiB of code against aws-lc's megabytes
/// (and its C build), for an agent that runs all day. rustls 0.23.48 deprecates ring's provider
/// because it has no post-quantum key exchange (X25519MLKEM768); see docs/ARCHITECTURE.md.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accounts without a `ca_file` share one connector: one parsed trust store per process, and
/// one session cache, so a reconnect resumes the TLS session.
static SYSTEM_ONLY: OnceLock<Connector> = OnceLock::new();

pub(super) fn connector(extra_roots: Vec<Vec<u8>>) -> Result<Connector, String> {
    if extra_roots.is_empty()
        && let Some(c) = SYSTEM_ONLY.get()
    {
        return Ok(c.clone());
    }
    let shared = extra_roots.is_empty();
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra_roots.into_iter().map(CertificateDer::from),
        provider(),
    )
    .map_err(|e| match e {
        rustls::Error::General(text) => text,
        other => format!("ca_file: {other}"),
    })?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous() // not dangerous: the platform verifier verifies
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let connector = Connector::from(Arc::new(config));
    if shared {
        return Ok(SYSTEM_ONLY.get_or_init(|| connector).clone());
    }
    Ok(connector)
}

pub(super) async fn handshake<S: Io + 'static>(
    connector: &Connector,
    host: &str,
    tcp: S,
) -> Result<Stream, Failure> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| Failure {
        problem: Problem::Other,
        text: format!("{host} is not a host name: {e}"),
    })?;
    match connector.connect(name, tcp).await {
        Ok(stream) => Ok(Box::new(stream)),
        Err(e) => Err(Failure {
            problem: problem(&e),
            text: e.to_string(),
        }),
    }
}

/// rustls says what failed in its error type, carried inside the `io::Error`.
fn problem(e: &std::io::Error) -> Problem {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return Problem::Other;
    };
    match tls {
        rustls::Error::InvalidCertificate(c) => {
            match c {
                CertificateError::NotValidForNameContext { presented, .. }
                    if presented.is_empty() =>
                {
                    Problem::NoAltName
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Problem::WrongName,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => Problem::Expired,
                CertificateError::Revoked => Problem::Revoked,
                CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. } => Problem::WrongUsage,
                // The platform verifier reports a wrong extended key usage as its own error.
                CertificateError::Other(o) if o.to_string().contains("extended key usage") => {
                    Problem::WrongUsage
                }
                _ => Problem::Untrusted,
            }
        }
        // The first bytes were not a TLS record: a plaintext greeting or an HTTP answer.
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            Problem::NotTls
        }
        _ => Problem::Other,
    }
}

pub(crate) type UreqTls = ureq::unversioned::transport::RustlsConnector;

pub(super) fn http_config() -> ureq::tls::TlsConfig {
    ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .unversioned_rustls_crypto_provider(provider())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_errors_are_told_apart() {
        let cert = |c| io(rustls::Error::InvalidCertificate(c));
        assert_eq!(
            problem(&cert(CertificateError::UnknownIssuer)),
            Problem::Untrusted
        );
        let name = || ServerName::try_from("mail.example.org").unwrap();
        assert_eq!(
            problem(&cert(CertificateError::NotValidForNameContext {
                expected: name(),
                presented: vec!["other.example.org".into()],
            })),
            Problem::WrongName
        );
        assert_eq!(
            problem(&cert(CertificateError::NotValidForNameContext {
                expected: name(),
                presented: vec![],
            })),
            Problem::NoAltName
        );
        assert_eq!(
            problem(&cert(CertificateError::NotValidForName)),
            Problem::WrongName
        );
        assert_eq!(problem(&cert(CertificateError::Expired)), Problem::Expired);
        assert_eq!(problem(&cert(CertificateError::Revoked)), Problem::Revoked);
        assert_eq!(
            problem(&io(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            ))),
            Problem::NotTls
        );
        assert_eq!(
            problem(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            Problem::Other
        );
    }

    /// An old self-made certificate that names its host only in the Common Name, served by
    /// OpenSSL: refused (as browsers refuse it), with what the administrator must change.
    #[tokio::test]
    async fn a_certificate_without_subject_alt_name_is_refused_with_its_reason() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "old CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf.signed_by(&key, &issuer).unwrap();
        let identity =
            native_tls::Identity::from_pkcs8(leaf.pem().as_bytes(), key.serialize_pem().as_bytes())
                .unwrap();
        let acceptor = native_tls::TlsAcceptor::new(identity).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            // The client gives up in the handshake: the error is the client's to report.
            let _ = acceptor.accept(tcp);
        });
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let e = super::super::Tls::new(Some(ca_file))
            .connect(
                "localhost",
                tcp,
                std::time::Duration::from_secs(10),
                "localhost:993",
                "",
            )
            .await
            .expect_err("a certificate without subjectAltName is not accepted");
        assert!(
            e.message.starts_with(
                "the certificate of localhost names no host in its subjectAltName field"
            ),
            "{}",
            e.message
        );
        server.join().unwrap();
    }
}
