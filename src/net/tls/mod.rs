//! TLS for every backend: the server's certificate verified against the system's trust store
//! plus the account's `ca_file`, TLS 1.2 at least, and one wording of a failed handshake that
//! says what the user can do.
//!
//! Two implementations sit behind the same three functions (`connector`, `handshake`,
//! `http_config`), chosen once here by the `platform_tls` alias (build.rs):
//! * `native` — native-tls: SChannel on Windows, Security.framework on macOS, and OpenSSL on
//!   Linux/BSD when built with the `native-tls` feature;
//! * `rustls` — rustls with rustls-platform-verifier (the system's trust store, /etc/ssl): the
//!   default on Linux and the BSDs, where OpenSSL's library and its parsed trust store were half
//!   of the agent's resident memory (measured by `make bench`, see README "Benchmarks").

#[cfg(platform_tls)]
mod native;
#[cfg(platform_tls)]
use native as backend;

#[cfg(not(platform_tls))]
mod rustls;
#[cfg(not(platform_tls))]
use self::rustls as backend;

// The Windows error codes are read by the native backend; the table and its tests are
// platform-neutral text handling, compiled everywhere.
#[cfg_attr(not(platform_tls), allow(dead_code))]
mod schannel_errors;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{Io, Stream};
use crate::error::{ErrorKind, ProtoError};

/// The TLS settings for the HTTP client (ureq) of the OAuth2 token requests: the same
/// implementation and trust store as the mail connections.
pub(crate) fn http_config() -> ureq::tls::TlsConfig {
    backend::http_config()
}

/// ureq's TLS connector for the same implementation, after [`super::http_agent`]'s own TCP.
pub(crate) use backend::UreqTls;

/// What went wrong in a handshake, as far as the user can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The certificate chains to no trusted root (or its signature does not verify).
    Untrusted,
    /// Trusted, but issued for another name.
    WrongName,
    /// Names no host in subjectAltName (only in the Common Name, which browsers and rustls no
    /// longer read: old self-made certificates of on-premises servers).
    #[cfg_attr(platform_tls, allow(dead_code))]
    NoAltName,
    /// Not trusted or for another name: the implementation does not say which (OpenSSL's words).
    #[cfg_attr(not(platform_tls), allow(dead_code))]
    UntrustedOrWrongName,
    Expired,
    Revoked,
    /// Revocation could not be checked (Wine 8's crypt32; Windows itself accepts it).
    RevocationUnknown,
    /// Not a certificate for a TLS server (extended key usage).
    WrongUsage,
    /// The port answered, but not with TLS.
    NotTls,
    Other,
}

/// A failed handshake: what it means, and the implementation's own words.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) problem: Problem,
    pub(crate) text: String,
}

/// The sentence for `problem` with `host` (at `endpoint`), naming the `ca_file` in use.
fn advice(
    problem: Problem,
    host: &str,
    endpoint: &str,
    ca_file: Option<&Path>,
    not_tls: &str,
) -> String {
    let untrusted = |also: &str| match ca_file {
        Some(ca) => format!(
            "the certificate of {host} is not trusted, not even with ca_file {}{also}",
            ca.display()
        ),
        None => format!(
            "the certificate of {host} is not trusted{also}; if the server uses a private \
             certificate authority, set ca_file to its certificate"
        ),
    };
    match problem {
        Problem::Untrusted => untrusted(""),
        Problem::UntrustedOrWrongName => untrusted(", or does not name this host"),
        Problem::WrongName => format!(
            "the certificate of {host} is for another name: use the host name the certificate \
             names in `host`"
        ),
        Problem::NoAltName => format!(
            "the certificate of {host} names no host in its subjectAltName field (only in the old \
             Common Name, which browsers and mailpulse no longer accept): the server's \
             administrator must issue one with {host} as a subjectAltName"
        ),
        Problem::Expired => format!(
            "the certificate of {host} has expired or is not valid yet: check this computer's \
             date and time, else the server's administrator must renew it"
        ),
        Problem::Revoked => format!(
            "the certificate of {host} has been revoked by its issuer: do not use this server \
             until its administrator installs a new certificate"
        ),
        Problem::RevocationUnknown => format!(
            "whether the certificate of {host} has been revoked could not be checked (its issuer \
             publishes no revocation list, or it cannot be reached); Windows accepts that for \
             mailpulse, Wine 8 does not: run mailpulse natively or with a newer Wine"
        ),
        Problem::WrongUsage => {
            format!("the certificate of {host} is not meant for servers (wrong extended key usage)")
        }
        Problem::NotTls => format!("{endpoint} does not speak TLS; {not_tls}"),
        Problem::Other => format!("TLS with {endpoint} failed"),
    }
}

/// The TLS settings of one account: certificates verified against the system's trust store plus
/// the account's `ca_file`, TLS 1.2 at least. The connector is built once, on first use: loading
/// the trust store for every connection of every folder would cost memory and CPU for nothing.
pub(crate) struct Tls {
    ca_file: Option<PathBuf>,
    built: Mutex<Option<backend::Connector>>,
}

impl Tls {
    pub(crate) fn new(ca_file: Option<PathBuf>) -> Tls {
        Tls {
            ca_file,
            built: Mutex::new(None),
        }
    }

    fn connector(&self) -> Result<backend::Connector, ProtoError> {
        let mut cached = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let mut extra = Vec::new();
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ProtoError::new(
                    ErrorKind::Tls,
                    format!("cannot read ca_file {}: {e}", path.display()),
                )
            })?;
            extra = pem_certificates(&pem).map_err(|e| {
                ProtoError::new(
                    ErrorKind::Tls,
                    format!(
                        "ca_file {} holds no usable PEM certificate: {e}",
                        path.display()
                    ),
                )
            })?;
        }
        let connector = backend::connector(extra)
            .map_err(|e| ProtoError::new(ErrorKind::Tls, format!("cannot set up TLS: {e}")))?;
        *cached = Some(connector.clone());
        Ok(connector)
    }

    /// The TLS handshake with `host` over `tcp`, within `rt`. `endpoint` names the server in
    /// errors; `not_tls` is the advice when the port does not speak TLS at all.
    pub(crate) async fn connect<S: Io + 'static>(
        &self,
        host: &str,
        tcp: S,
        rt: Duration,
        endpoint: &str,
        not_tls: &str,
    ) -> Result<Stream, ProtoError> {
        let connector = self.connector()?;
        match tokio::time::timeout(rt, backend::handshake(&connector, host, tcp)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(f)) => {
                let advice = advice(f.problem, host, endpoint, self.ca_file.as_deref(), not_tls);
                Err(ProtoError::new(
                    ErrorKind::Tls,
                    format!("{advice} ({})", f.text.trim()),
                ))
            }
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

/// The certificates (DER) of a PEM file: a `ca_file` may hold a chain.
pub(crate) fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start + BEGIN.len()..].find(END) else {
            return Err("a BEGIN CERTIFICATE block has no END".into());
        };
        let body: String = rest[start + BEGIN.len()..start + BEGIN.len() + len]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("certificate {}: not base64 ({e})", certs.len() + 1))?;
        if !is_der_sequence(&der) {
            return Err(format!(
                "certificate {}: not a DER certificate",
                certs.len() + 1
            ));
        }
        certs.push(der);
        rest = &rest[start + BEGIN.len() + len + END.len()..];
    }
    if certs.is_empty() {
        return Err("no BEGIN CERTIFICATE block".into());
    }
    Ok(certs)
}

/// `der` is one DER SEQUENCE, exactly (what every X.509 certificate is on the outside).
fn is_der_sequence(der: &[u8]) -> bool {
    let (Some(&0x30), Some(&first)) = (der.first(), der.get(1)) else {
        return false;
    };
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || der.len() < 2 + n {
            return false;
        }
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, 2 + n)
    };
    der.len() == header + len
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
        assert!(pem_certificates(b"-----BEGIN CERTIFICATE-----\nMAA=\n").is_err());
        // An empty SEQUENCE is DER-shaped: the implementations judge the rest.
        assert_eq!(
            pem_certificates(b"x\n-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
                .unwrap(),
            vec![vec![0x30, 0]]
        );
    }

    /// A plaintext IMAP greeting where TLS was expected: whichever implementation is built in,
    /// the user is told the port does not speak TLS, and what to try.
    #[tokio::test]
    async fn a_plaintext_port_is_told_apart_from_a_certificate_problem() {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(b"* OK IMAP4rev1 ready\r\n").await;
            // Hold the connection until the client has given up.
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut sink).await;
        });
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let endpoint = format!("localhost:{port}");
        let e = Tls::new(None)
            .connect(
                "localhost",
                tcp,
                Duration::from_secs(10),
                &endpoint,
                "try port 143",
            )
            .await
            .expect_err("no TLS session with a plaintext server");
        assert_eq!(e.kind, ErrorKind::Tls);
        assert!(
            e.message
                .starts_with(&format!("{endpoint} does not speak TLS; try port 143 (")),
            "{}",
            e.message
        );
        server.abort();
    }

    #[test]
    fn every_problem_names_the_host_or_the_endpoint() {
        for p in [
            Problem::Untrusted,
            Problem::WrongName,
            Problem::NoAltName,
            Problem::UntrustedOrWrongName,
            Problem::Expired,
            Problem::Revoked,
            Problem::RevocationUnknown,
            Problem::WrongUsage,
        ] {
            assert!(advice(p, "mail.example.org", "x:993", None, "").contains("mail.example.org"));
        }
        let a = advice(Problem::Untrusted, "h", "h:993", None, "");
        assert!(a.contains("set ca_file"), "{a}");
        let a = advice(
            Problem::Untrusted,
            "h",
            "h:993",
            Some(Path::new("/ca.pem")),
            "",
        );
        assert!(a.contains("not even with ca_file /ca.pem"), "{a}");
        let a = advice(Problem::NotTls, "h", "h:143", None, "try STARTTLS");
        assert_eq!(a, "h:143 does not speak TLS; try STARTTLS");
    }
}
