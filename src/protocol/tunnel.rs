//! The tunnel through a proxy (`crate::proxy` chose it): HTTP `CONNECT` (RFC 9110 §9.3.6) or
//! SOCKS5 (RFC 1928, with the user name/password of RFC 1929). What comes back is the TCP stream
//! to the proxy, now carrying the bytes of the mail server's connection: TLS runs end to end
//! over it (the proxy sees only the tunnel), and the keep-alive runs through it like any other
//! traffic, so a proxy that closes idle tunnels is found and learned like a NAT that forgets
//! idle flows.
//!
//! `connect_tcp` is the one TCP connect every backend shares: straight (`net::connect_direct`)
//! or through the tunnel.
//!
//! Errors name the hop that failed: the proxy unreachable, the proxy refusing the tunnel (with
//! its status), the proxy wanting credentials, the server unreachable from the proxy.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ProxyKind;
use crate::error::{ErrorKind, ProtoError};
use crate::proxy::{Hop, Purpose};
use crate::secret::Secret;

/// TCP to `host:port` the way `proxy` says — straight, or through the tunnel of an HTTP or
/// SOCKS5 proxy (`crate::proxy`, [`tunnel`]) — each step within `rt`: the one connect every backend shares.
/// `setting` names where the user wrote host and port ("" for IMAP's own fields, " in url" for
/// EWS and Graph), so a hint points at the right field. Socket tuning is left to the caller
/// (through a proxy it tunes the connection to the proxy: the one this machine's NAT sees).
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    rt: Duration,
    setting: &str,
    proxy: &crate::config::ProxySetting,
    purpose: crate::proxy::Purpose,
) -> Result<tokio::net::TcpStream, ProtoError> {
    match crate::proxy::route_async(proxy, purpose, host, port).await? {
        (Some(hop), _) => tunnel(&hop, host, port, rt, purpose).await,
        (None, note) => {
            if let Some(note) = note {
                tracing::debug!("{host}:{port}: direct, {note}");
            }
            super::net::connect_direct(host, port, rt, setting).await
        }
    }
}

/// The most a proxy's answer to CONNECT may hold before its blank line.
const MAX_HEAD: usize = 16 << 10;

/// TCP to the proxy, then the tunnel to `host:port` through it, each within `rt`.
pub(crate) async fn tunnel(
    hop: &Hop,
    host: &str,
    port: u16,
    rt: Duration,
    purpose: Purpose,
) -> Result<TcpStream, ProtoError> {
    let name = hop.name();
    let mut tcp = super::net::connect_direct(&hop.url.host, hop.url.port, rt, "")
        .await
        .map_err(|e| {
            ProtoError::new(
                e.kind,
                format!(
                    "cannot reach {name} (from {}): {}",
                    hop.source,
                    e.message
                        .replace(
                            "; check the port and that the server is running",
                            "; check the proxy setting and that the proxy is running"
                        )
                        .replace(
                            "; check the host name and your network connection",
                            "; check the proxy setting"
                        )
                ),
            )
        })?;
    let _ = tcp.set_nodelay(true);
    let asked = async {
        match hop.url.kind {
            ProxyKind::Http => http_connect(&mut tcp, hop, host, port, purpose).await,
            ProxyKind::Socks5 | ProxyKind::Socks5h => socks5(&mut tcp, hop, host, port).await,
        }
    };
    match tokio::time::timeout(rt, asked).await {
        Ok(Ok(())) => {
            tracing::debug!(
                "tunnel to {host}:{port} through {name} (from {})",
                hop.source
            );
            Ok(tcp)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProtoError::new(
            ErrorKind::Timeout,
            format!(
                "{name}: no answer within {} s to the request for a tunnel to {host}:{port}",
                rt.as_secs()
            ),
        )),
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `CONNECT host:port`, Basic credentials sent up front when a user is set; reads the answer's
/// head byte by byte (nothing of the tunnel's first bytes — an IMAP greeting — is consumed).
async fn http_connect(
    tcp: &mut TcpStream,
    hop: &Hop,
    host: &str,
    port: u16,
    purpose: Purpose,
) -> Result<(), ProtoError> {
    use base64::Engine as _;
    let name = hop.name();
    let target = authority(host, port);
    if target.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ProtoError::new(
            ErrorKind::Config,
            format!("{target:?} cannot be asked of a proxy"),
        ));
    }
    let mut request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: mailpulse/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let credentials = match (&hop.url.username, &hop.password) {
        (Some(user), Some(pw)) => Some(Secret::new(
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", pw.expose())),
        )),
        _ => None,
    };
    let mut bytes = request.clone().into_bytes();
    if let Some(c) = &credentials {
        bytes
            .extend_from_slice(format!("Proxy-Authorization: Basic {}\r\n", c.expose()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    request.clear();
    let lost = |e: std::io::Error| {
        ProtoError::new(
            ErrorKind::Disconnected,
            format!("{name} closed the connection while asked for a tunnel to {target} ({e})"),
        )
    };
    let written = tcp.write_all(&bytes).await;
    // The request held the credentials: nothing of it stays in memory.
    bytes.iter_mut().for_each(|b| *b = 0);
    written.map_err(lost)?;
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{name} answered the tunnel request with more than {MAX_HEAD} bytes of header"
                ),
            ));
        }
        let b = tcp.read_u8().await.map_err(lost)?;
        head.push(b);
        if head.len() == 5 && &head[..] != b"HTTP/" {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{name} did not answer in HTTP; if it is a SOCKS proxy, write socks5://{}",
                    hop.url.endpoint()
                ),
            ));
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let code: u16 = parts.next().and_then(|c| c.parse().ok()).ok_or_else(|| {
        ProtoError::new(
            ErrorKind::Protocol,
            format!(
                "{name} answered the tunnel request with {:?}",
                super::net::clip(status_line)
            ),
        )
    })?;
    let reason = super::net::clip(parts.next().unwrap_or_default().trim());
    if (200..300).contains(&code) {
        return Ok(());
    }
    let offered: Vec<String> = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authenticate"))
        .filter_map(|(_, v)| v.split_whitespace().next().map(str::to_ascii_lowercase))
        .collect();
    let status = format!("{code} {reason}").trim().to_owned();
    Err(match code {
        407 => proxy_auth_error(hop, &status, &offered),
        403 | 405 => {
            let advice = match purpose {
                Purpose::Imap => format!(
                    " — many proxies only allow port 443; ask for port {port} to be allowed, \
                     or use the Graph or EWS backend (HTTPS)"
                ),
                _ => " — ask the proxy's administrator to allow this server".into(),
            };
            ProtoError::new(
                ErrorKind::Connect,
                format!("{name} refused the tunnel to {target} ({status}){advice}"),
            )
        }
        502..=504 => ProtoError::new(
            ErrorKind::Connect,
            format!(
                "{name} could not reach {target} ({status}): check the server's name and port, \
                 or the server is down"
            ),
        ),
        _ => ProtoError::new(
            ErrorKind::Connect,
            format!("{name} answered {status} to the request for a tunnel to {target}"),
        ),
    })
}

/// A 407: one error that says what to do (the engine does not retry an `Auth` error until
/// something changes, so a proxy that wants credentials is never hammered).
fn proxy_auth_error(hop: &Hop, status: &str, offered: &[String]) -> ProtoError {
    let name = hop.name();
    let basic = offered.is_empty() || offered.iter().any(|s| s == "basic");
    let message = match (&hop.url.username, &hop.password) {
        (Some(user), Some(_)) => format!(
            "{name} refused the user {user:?} and its password ({status}); store the right one \
             with `mailpulse password set --proxy`"
        ),
        (Some(user), None) => format!(
            "{name} wants a password ({status}) and the keyring holds none for {user:?}: store \
             it with `mailpulse password set --proxy`"
        ),
        (None, _) if basic => format!(
            "{name} wants a user name and password ({status}): write the user into the proxy \
             setting (\"http://USER@{}\") and store the password with `mailpulse password set \
             --proxy`",
            hop.url.endpoint()
        ),
        (None, _) => format!(
            "{name} wants Windows sign-in ({status}; it offers {}), which mailpulse cannot \
             answer: ask for Basic authentication or an exception for the mail server",
            offered.join(", ")
        ),
    };
    ProtoError::new(ErrorKind::Auth, message)
}

/// SOCKS5 (tokio-socks): the server's name sent to the proxy (`socks5h`), or resolved here.
async fn socks5(tcp: &mut TcpStream, hop: &Hop, host: &str, port: u16) -> Result<(), ProtoError> {
    use tokio_socks::tcp::Socks5Stream;
    let name = hop.name();
    let target: tokio_socks::TargetAddr<'static> = match hop.url.kind {
        ProxyKind::Socks5h => tokio_socks::TargetAddr::Domain(host.to_owned().into(), port),
        _ => {
            let addr = tokio::net::lookup_host((host, port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    ProtoError::new(
                        ErrorKind::Resolve,
                        format!(
                            "cannot resolve {host} here; if only the SOCKS proxy can, write \
                             socks5h://{}",
                            hop.url.endpoint()
                        ),
                    )
                })?;
            tokio_socks::TargetAddr::Ip(addr)
        }
    };
    let result = match (&hop.url.username, &hop.password) {
        (Some(user), Some(pw)) => {
            Socks5Stream::connect_with_password_and_socket(&mut *tcp, target, user, pw.expose())
                .await
                .map(drop)
        }
        _ => Socks5Stream::connect_with_socket(&mut *tcp, target)
            .await
            .map(drop),
    };
    result.map_err(|e| socks_error(&name, hop, host, port, e))
}

fn socks_error(name: &str, hop: &Hop, host: &str, port: u16, e: tokio_socks::Error) -> ProtoError {
    use tokio_socks::Error as E;
    let target = authority(host, port);
    match e {
        E::Io(io) => ProtoError::new(
            ErrorKind::Disconnected,
            format!("{name} closed the connection while asked for a tunnel to {target} ({io})"),
        ),
        E::NoAcceptableAuthMethods | E::PasswordAuthFailure(_) => ProtoError::new(
            ErrorKind::Auth,
            match &hop.url.username {
                Some(user) => format!(
                    "{name} refused the user {user:?} and its password; store the right one \
                     with `mailpulse password set --proxy`"
                ),
                None => format!(
                    "{name} wants a user name and password: write the user into the proxy \
                     setting (\"socks5://USER@{}\") and store the password with `mailpulse \
                     password set --proxy`",
                    hop.url.endpoint()
                ),
            },
        ),
        E::ConnectionNotAllowedByRuleset => ProtoError::new(
            ErrorKind::Connect,
            format!(
                "{name} refused the connection to {target} (not allowed by its rules); ask its \
                 administrator to allow it"
            ),
        ),
        E::HostUnreachable | E::NetworkUnreachable | E::ConnectionRefused | E::TtlExpired => {
            ProtoError::new(
                ErrorKind::Connect,
                format!("{name} could not reach {target} ({e}): check the server's name and port"),
            )
        }
        other => ProtoError::new(
            ErrorKind::Protocol,
            format!("{name} failed to open a tunnel to {target}: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyUrl;

    #[test]
    fn a_407_says_what_to_do_and_is_an_auth_error() {
        let url = ProxyUrl::parse("http://proxy.corp:3128", true).unwrap().0;
        let hop = Hop {
            url,
            password: None,
            source: "the config".into(),
        };
        let e = proxy_auth_error(&hop, "407 Proxy Authentication Required", &["basic".into()]);
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(
            e.message.contains("http://USER@proxy.corp:3128"),
            "{}",
            e.message
        );
        let e = proxy_auth_error(&hop, "407", &["negotiate".into(), "ntlm".into()]);
        assert!(e.message.contains("negotiate, ntlm"), "{}", e.message);
    }
}
