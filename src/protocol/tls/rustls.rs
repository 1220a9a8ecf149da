//! rustls (on ring) with rustls-platform-verifier: on Linux and the BSDs, the system's trust
//! store (the files OpenSSL would read, found the same way) loaded on the first handshake,
//! plus the account's `ca_file`. TLS 1.2 and 1.3 only, as rustls never offers less.

use std::sync::{Arc, OnceLock};

use rustls::CertificateError;
use rustls::pki_types::{CertificateDer, ServerName};

use super::{Failure, Problem};
use crate::protocol::net::{Io, Stream};

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
}
