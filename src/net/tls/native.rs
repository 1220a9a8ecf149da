//! native-tls: SChannel (Windows), Security.framework (macOS), OpenSSL (Linux/BSD with the
//! `native-tls` feature). Each verifies against the system's trust store; `ca_file` adds roots.

use super::{Failure, Problem, schannel_errors};
use crate::net::{Io, Stream};

pub(super) type Connector = native_tls::TlsConnector;

pub(super) fn connector(extra_roots: Vec<Vec<u8>>) -> Result<Connector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    for der in extra_roots {
        let cert = native_tls::Certificate::from_der(&der).map_err(|e| format!("ca_file: {e}"))?;
        builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| e.to_string())
}

pub(super) async fn handshake<S: Io + 'static>(
    connector: &Connector,
    host: &str,
    tcp: S,
) -> Result<Stream, Failure> {
    match tokio_native_tls::TlsConnector::from(connector.clone())
        .connect(host, tcp)
        .await
    {
        Ok(stream) => Ok(Box::new(stream)),
        Err(e) => {
            let text = e.to_string();
            Err(Failure {
                problem: problem(&text),
                text,
            })
        }
    }
}

/// native-tls says what failed only in words (OpenSSL's, or a Windows error code).
fn problem(text: &str) -> Problem {
    if let Some(p) = schannel_errors::problem(text) {
        p
    } else if text.contains("certificate") {
        Problem::UntrustedOrWrongName
    } else if text.contains("wrong version number") || text.contains("packet length too long") {
        Problem::NotTls
    } else {
        Problem::Other
    }
}

pub(crate) type UreqTls = ureq::unversioned::transport::NativeTlsConnector;

pub(super) fn http_config() -> ureq::tls::TlsConfig {
    ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build()
}
