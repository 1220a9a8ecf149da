//! The network layer every backend shares: TCP connect with deadlines and advice, TLS verified
//! against the system's roots plus the account's `ca_file` (built once per account), one wording
//! of TLS failures, and the byte-stream type the protocols run over.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{ErrorKind, ProtoError};

/// Any byte stream a session can run over (TCP, TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}

/// A boxed [`Io`]: what a backend holds once TCP (and TLS) are set up.
pub(crate) type Stream = Box<dyn Io>;

/// Keep messages that quote server output short.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Resolve `host` and open TCP to the first of its addresses that answers, each step within
/// `rt`: the one connect both protocols share, with errors that say what to check. `setting`
/// names where the user wrote host and port ("" for IMAP's own fields, " in url" for EWS), so
/// the hint points at the right field. Socket tuning is left to the caller.
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    rt: Duration,
    setting: &str,
) -> Result<tokio::net::TcpStream, ProtoError> {
    use tokio::time::timeout;
    let addrs: Vec<std::net::SocketAddr> = match timeout(rt, tokio::net::lookup_host((host, port)))
        .await
    {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            return Err(ProtoError::new(
                ErrorKind::Resolve,
                format!(
                    "cannot resolve {host}: {e}; check the host name{setting} and your network connection"
                ),
            ));
        }
        Err(_) => {
            return Err(ProtoError::new(
                ErrorKind::Timeout,
                format!(
                    "{host}:{port}: no answer within {} s while resolving the host name",
                    rt.as_secs()
                ),
            ));
        }
    };
    let mut last = ProtoError::new(ErrorKind::Resolve, format!("{host} has no address"));
    for addr in addrs {
        match timeout(rt, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => {
                let hint = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    format!("; check the port{setting} and that the server is running")
                } else {
                    String::new()
                };
                last = ProtoError::new(
                    ErrorKind::Connect,
                    format!("cannot connect to {host}:{port} ({addr}): {e}{hint}"),
                );
            }
            Err(_) => {
                last = ProtoError::new(
                    ErrorKind::Connect,
                    format!(
                        "cannot connect to {host}:{port} ({addr}): no answer within {} s; a firewall may be dropping the connection",
                        rt.as_secs()
                    ),
                );
            }
        }
    }
    Err(last)
}

/// TCP keep-alive as a second line of defence: kernel probes after `quiet` + 5 s of silence,
/// every 10 s (3 of them where the OS lets us say so). Nothing is sent while traffic flows.
pub(crate) fn set_tcp_keepalive(tcp: &tokio::net::TcpStream, quiet: Duration) {
    let params =
        crate::platform::tcp_keepalive(quiet + Duration::from_secs(5), Duration::from_secs(10));
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&params) {
        tracing::debug!("cannot set TCP keep-alive: {e}");
    }
}

/// The TLS settings of one account: certificates verified against the system's trust store plus
/// the account's `ca_file`, TLS 1.2 at least. The connector is built once, on first use: loading
/// the trust store for every connection of every folder would cost memory and CPU for nothing.
pub(crate) struct Tls {
    ca_file: Option<PathBuf>,
    built: Mutex<Option<native_tls::TlsConnector>>,
}

impl Tls {
    pub(crate) fn new(ca_file: Option<PathBuf>) -> Tls {
        Tls {
            ca_file,
            built: Mutex::new(None),
        }
    }

    fn connector(&self) -> Result<tokio_native_tls::TlsConnector, ProtoError> {
        let mut cached = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref() {
            return Ok(tokio_native_tls::TlsConnector::from(c.clone()));
        }
        let mut builder = native_tls::TlsConnector::builder();
        builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ProtoError::new(
                    ErrorKind::Tls,
                    format!("cannot read ca_file {}: {e}", path.display()),
                )
            })?;
            let certs = pem_certificates(&pem).map_err(|e| {
                ProtoError::new(
                    ErrorKind::Tls,
                    format!(
                        "ca_file {} holds no usable PEM certificate: {e}",
                        path.display()
                    ),
                )
            })?;
            for cert in certs {
                builder.add_root_certificate(cert);
            }
        }
        let connector = builder
            .build()
            .map_err(|e| ProtoError::new(ErrorKind::Tls, format!("cannot set up TLS: {e}")))?;
        *cached = Some(connector.clone());
        Ok(tokio_native_tls::TlsConnector::from(connector))
    }

    /// The TLS handshake with `host` over `tcp`, within `rt`. `endpoint` names the server in
    /// errors; `not_tls` is the advice when the port does not speak TLS at all.
    pub(crate) async fn connect<S>(
        &self,
        host: &str,
        tcp: S,
        rt: Duration,
        endpoint: &str,
        not_tls: &str,
    ) -> Result<tokio_native_tls::TlsStream<S>, ProtoError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let connector = self.connector()?;
        match tokio::time::timeout(rt, connector.connect(host, tcp)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(tls_error(
                &e,
                host,
                endpoint,
                self.ca_file.as_deref(),
                not_tls,
            )),
            Err(_) => Err(ProtoError::new(
                ErrorKind::Timeout,
                format!(
                    "{endpoint}: no answer within {} s while negotiating TLS",
                    rt.as_secs()
                ),
            )),
        }
    }
}

/// One wording of a failed TLS handshake, with what the user can do about it.
fn tls_error(
    e: &native_tls::Error,
    host: &str,
    endpoint: &str,
    ca_file: Option<&Path>,
    not_tls: &str,
) -> ProtoError {
    let text = e.to_string();
    let advice = if let Some(a) = super::schannel_errors::advice(&text, host) {
        a
    } else if text.contains("certificate") {
        match ca_file {
            Some(ca) => format!(
                "the certificate of {host} is not trusted, not even with ca_file {}, or does not \
                 name this host",
                ca.display()
            ),
            None => format!(
                "the certificate of {host} is not trusted; if the server uses a private \
                 certificate authority, set ca_file to its certificate"
            ),
        }
    } else if text.contains("wrong version number") || text.contains("packet length too long") {
        format!("{endpoint} does not speak TLS; {not_tls}")
    } else {
        format!("TLS with {endpoint} failed")
    };
    ProtoError::new(ErrorKind::Tls, format!("{advice} ({})", text.trim()))
}

/// The certificates of a PEM file (a `ca_file` may hold a chain).
pub(crate) fn pem_certificates(pem: &[u8]) -> Result<Vec<native_tls::Certificate>, String> {
    let text = String::from_utf8_lossy(pem);
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let block = &rest[start..start + len + END.len()];
        certs.push(native_tls::Certificate::from_pem(block.as_bytes()).map_err(|e| e.to_string())?);
        rest = &rest[start + len + END.len()..];
    }
    if certs.is_empty() {
        return Err("no BEGIN CERTIFICATE block".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_certificates_need_a_certificate_block() {
        assert!(pem_certificates(b"hello").is_err());
        assert!(
            pem_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }

    #[test]
    fn clip_keeps_two_hundred_characters() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(300);
        assert_eq!(clip(&long).chars().count(), 201);
    }
}
