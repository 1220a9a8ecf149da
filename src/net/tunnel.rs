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
//!
//! Proxy sign-in: Basic with the setting's user and the stored password; NTLM (and on Windows
//! Negotiate, with the logged-on user's own credentials when no user is set) answered on the
//! connection it authenticates.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ProxyKind;
use crate::error::{ErrorKind, ProtoError};
use crate::platform::ConnectionSignIn;
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
            super::connect_direct(host, port, rt, setting).await
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
    let mut tcp = super::connect_direct(&hop.url.host, hop.url.port, rt, "")
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
            ProxyKind::Http => http_connect(&mut tcp, hop, host, port, purpose, rt).await,
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

/// `CONNECT host:port`. A 407 is answered with the best sign-in the proxy offers and mailpulse
/// can give ([`connection_sign_in`]), on the same connection ([`sign_in`]). Basic credentials go
/// with the first request only to a proxy already seen asking for them, so a password never
/// travels in the clear to a proxy that wants NTLM or Negotiate.
async fn http_connect(
    tcp: &mut TcpStream,
    hop: &Hop,
    host: &str,
    port: u16,
    purpose: Purpose,
    rt: Duration,
) -> Result<(), ProtoError> {
    let target = authority(host, port);
    if target.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ProtoError::new(
            ErrorKind::Config,
            format!("{target:?} cannot be asked of a proxy"),
        ));
    }
    let endpoint = hop.url.endpoint();
    let up_front = match basic(hop) {
        Some(mut b) if wants_basic(&endpoint) => Some(b.step(None).map(Secret::new)),
        _ => None,
    }
    .transpose()
    .map_err(|e| ProtoError::new(ErrorKind::Auth, e))?;
    let head = ask(tcp, hop, &target, up_front.as_ref().map(|t| ("Basic", t))).await?;
    if head.is_success() {
        return Ok(());
    }
    if head.code != 407 {
        return Err(status_error(hop, &head, &target, port, purpose));
    }
    let offered = head.offered();
    let offers_basic = offered.is_empty() || offered.iter().any(|s| s == "basic");
    if up_front.is_some() && offers_basic {
        return Err(refused(hop, "Basic", &head.status));
    }
    let auth = match connection_sign_in(hop, &offered) {
        Ok(Some(auth)) => auth,
        Ok(None) => match basic(hop) {
            Some(b) if offers_basic => {
                remember_basic(&endpoint);
                b
            }
            _ => return Err(proxy_auth_error(hop, &head.status, &offered)),
        },
        Err(e) => {
            return Err(ProtoError::new(
                ErrorKind::Auth,
                format!(
                    "{}: the Windows sign-in it asks for ({}) failed: {e}",
                    hop.name(),
                    head.status
                ),
            ));
        }
    };
    sign_in(tcp, hop, &target, port, purpose, rt, auth, &head).await
}

/// Proxies (`host:port`) seen asking for Basic: their next tunnels send the credentials with
/// the first request, one round trip less.
static BASIC_PROXIES: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn wants_basic(endpoint: &str) -> bool {
    BASIC_PROXIES.lock().is_ok_and(|set| set.contains(endpoint))
}

fn remember_basic(endpoint: &str) {
    if let Ok(mut set) = BASIC_PROXIES.lock() {
        set.insert(endpoint.to_owned());
    }
}

/// Basic with the setting's user and the stored password, when both are there.
fn basic(hop: &Hop) -> Option<Box<dyn ConnectionSignIn>> {
    match (&hop.url.username, &hop.password) {
        (Some(user), Some(pw)) => Some(Box::new(Basic(Secret::new(format!(
            "{user}:{}",
            pw.expose()
        ))))),
        _ => None,
    }
}

/// `user:password`, sent base64-encoded.
struct Basic(Secret);

impl ConnectionSignIn for Basic {
    fn scheme(&self) -> &'static str {
        "Basic"
    }

    fn step(&mut self, challenge: Option<&str>) -> Result<String, String> {
        use base64::Engine as _;
        match challenge {
            None => Ok(base64::engine::general_purpose::STANDARD.encode(self.0.expose())),
            Some(_) => Err("Basic has one step".into()),
        }
    }
}

/// The proxy's answer to one CONNECT, up to its blank line.
struct Head {
    code: u16,
    /// "407 Proxy Authentication Required", clipped.
    status: String,
    /// HTTP/1.0, or `Connection: close`: the proxy closes the connection after this answer.
    closes: bool,
    headers: Vec<(String, String)>,
}

impl Head {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The authentication schemes a 407 offers, lower-case.
    fn offered(&self) -> Vec<String> {
        self.values("proxy-authenticate")
            .filter_map(|v| v.split_whitespace().next().map(str::to_ascii_lowercase))
            .collect()
    }

    /// The token after `scheme` in a `Proxy-Authenticate` header (`NTLM TlRMTVNT…`).
    fn challenge(&self, scheme: &str) -> Option<&str> {
        self.values("proxy-authenticate").find_map(|v| {
            let (s, token) = v.trim().split_once(' ')?;
            s.eq_ignore_ascii_case(scheme).then_some(token.trim())
        })
    }

    /// The body's length when the connection stays open after it (what a connection-based
    /// sign-in needs); `None` when the proxy closes it or its end cannot be known without
    /// parsing chunks.
    fn body_length_if_kept(&self) -> Option<usize> {
        if self.closes || self.values("transfer-encoding").next().is_some() {
            return None;
        }
        match self.values("content-length").next() {
            Some(n) => n.trim().parse().ok(),
            None => Some(0),
        }
    }
}

/// One `CONNECT`, with `authorization` (scheme and token: Basic, NTLM, Negotiate) when given;
/// the answer's head read byte by byte (nothing of the tunnel's first bytes — an IMAP
/// greeting — is consumed).
async fn ask(
    tcp: &mut TcpStream,
    hop: &Hop,
    target: &str,
    authorization: Option<(&str, &Secret)>,
) -> Result<Head, ProtoError> {
    let name = hop.name();
    let mut bytes = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: mailpulse/{}\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    if let Some((scheme, token)) = authorization {
        bytes.extend_from_slice(
            format!("Proxy-Authorization: {scheme} {}\r\n", token.expose()).as_bytes(),
        );
    }
    bytes.extend_from_slice(b"\r\n");
    let lost = |e: std::io::Error| {
        ProtoError::new(
            ErrorKind::Disconnected,
            format!("{name} closed the connection while asked for a tunnel to {target} ({e})"),
        )
    };
    let written = tcp.write_all(&bytes).await;
    // The request may hold credentials: nothing of it stays in memory.
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
    Head::parse(&String::from_utf8_lossy(&head), &name)
}

impl Head {
    /// A head as read (status line and header lines; the blank line may follow).
    fn parse(head: &str, name: &str) -> Result<Head, ProtoError> {
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let code: u16 = parts.next().and_then(|c| c.parse().ok()).ok_or_else(|| {
            ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{name} answered the tunnel request with {:?}",
                    super::clip(status_line)
                ),
            )
        })?;
        let reason = super::clip(parts.next().unwrap_or_default().trim());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let closes = version == "HTTP/1.0"
            || headers.iter().any(|(k, v)| {
                (k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("proxy-connection"))
                    && v.eq_ignore_ascii_case("close")
            });
        Ok(Head {
            code,
            status: format!("{code} {reason}").trim().to_owned(),
            closes,
            headers,
        })
    }
}

/// The most of a 407's body read (and dropped) to keep its connection for the sign-in.
const MAX_SKIPPED_BODY: usize = 1 << 20;

/// Read and drop `n` bytes of a 407's body.
async fn skip_body(tcp: &mut TcpStream, hop: &Hop, n: usize) -> Result<(), ProtoError> {
    let mut rest = tokio::io::AsyncReadExt::take(&mut *tcp, n as u64);
    let copied = tokio::io::copy(&mut rest, &mut tokio::io::sink())
        .await
        .map_err(|e| {
            ProtoError::new(
                ErrorKind::Disconnected,
                format!(
                    "{} closed the connection during the sign-in ({e})",
                    hop.name()
                ),
            )
        })?;
    if copied < n as u64 {
        return Err(ProtoError::new(
            ErrorKind::Disconnected,
            format!("{} closed the connection during the sign-in", hop.name()),
        ));
    }
    Ok(())
}

/// The sign-in a 407 asks for, when mailpulse can answer it: the OS's own (Windows: SSPI,
/// Negotiate or NTLM, with the logged-on user's credentials when the setting names no user),
/// else NTLM with the setting's user and the stored password.
fn connection_sign_in(
    hop: &Hop,
    offered: &[String],
) -> Result<Option<Box<dyn ConnectionSignIn>>, String> {
    let identity = match (&hop.url.username, &hop.password) {
        (Some(user), Some(pw)) => Some((user.as_str(), pw.expose())),
        // A user without a password: the error says to store it.
        (Some(_), None) => return Ok(None),
        (None, _) => None,
    };
    match crate::platform::system_sign_in(offered, &hop.url.host, identity) {
        Ok(Some(os)) => return Ok(Some(os)),
        Ok(None) => {}
        // With a user and password, mailpulse's own NTLM may still do.
        Err(e) if identity.is_some() && offered.iter().any(|s| s == "ntlm" || s == "negotiate") => {
            tracing::warn!(
                "{}: the Windows sign-in failed ({e}); NTLM by mailpulse instead",
                hop.name()
            );
        }
        Err(e) => return Err(e),
    }
    // NTLM as itself, or inside Negotiate (SPNEGO's servers — IIS, ISA/TMG, Squid's negotiate
    // wrapper — take raw NTLM tokens there, as browsers without Kerberos send them).
    let scheme = if offered.iter().any(|s| s == "ntlm") {
        "NTLM"
    } else if offered.iter().any(|s| s == "negotiate") {
        "Negotiate"
    } else {
        return Ok(None);
    };
    Ok(identity.map(|(user, password)| {
        Box::new(Ntlm {
            scheme,
            user: user.to_owned(),
            password: Secret::new(password.to_owned()),
            answered: false,
        }) as Box<dyn ConnectionSignIn>
    }))
}

/// NTLM with a user and password ([`super::ntlm`]), on every OS, under the scheme the proxy
/// offers ("NTLM", or "Negotiate").
struct Ntlm {
    scheme: &'static str,
    user: String,
    password: Secret,
    answered: bool,
}

impl ConnectionSignIn for Ntlm {
    fn scheme(&self) -> &'static str {
        self.scheme
    }

    fn step(&mut self, challenge: Option<&str>) -> Result<String, String> {
        match challenge {
            None => Ok(super::ntlm::negotiate()),
            Some(_) if self.answered => Err("the proxy challenged the NTLM answer again".into()),
            Some(c) => {
                self.answered = true;
                super::ntlm::authenticate(c, &self.user, &self.password)
            }
        }
    }
}

/// Answer the proxy's connection-based sign-in: the tunnel asked for again with each token,
/// on the same connection (on a new one for the first token when the proxy closed the one of
/// its 407), until the proxy opens the tunnel or refuses.
#[allow(clippy::too_many_arguments)]
async fn sign_in(
    tcp: &mut TcpStream,
    hop: &Hop,
    target: &str,
    port: u16,
    purpose: Purpose,
    rt: Duration,
    mut auth: Box<dyn ConnectionSignIn>,
    first: &Head,
) -> Result<(), ProtoError> {
    let name = hop.name();
    let scheme = auth.scheme();
    match first.body_length_if_kept() {
        Some(n) if n <= MAX_SKIPPED_BODY => skip_body(tcp, hop, n).await?,
        _ => {
            *tcp = super::connect_direct(&hop.url.host, hop.url.port, rt, "").await?;
            let _ = tcp.set_nodelay(true);
        }
    }
    let mut challenge: Option<String> = None;
    // NTLM takes two legs, Kerberos one; a third challenge is a proxy going round in circles.
    for _ in 0..3 {
        let token = auth.step(challenge.as_deref()).map_err(|e| {
            ProtoError::new(
                ErrorKind::Auth,
                format!("{name}: the {scheme} sign-in failed: {e}"),
            )
        })?;
        let head = ask(tcp, hop, target, Some((scheme, &Secret::new(token)))).await?;
        if head.is_success() {
            tracing::debug!("{name}: signed in with {scheme}");
            return Ok(());
        }
        if head.code != 407 {
            return Err(status_error(hop, &head, target, port, purpose));
        }
        match head.challenge(scheme) {
            // Basic's 407 names a realm, not a next step: the password was refused.
            Some(c) if !c.is_empty() && scheme != "Basic" => {
                match head.body_length_if_kept() {
                    Some(n) if n <= MAX_SKIPPED_BODY => skip_body(tcp, hop, n).await?,
                    _ => {
                        return Err(ProtoError::new(
                            ErrorKind::Protocol,
                            format!(
                                "{name} closed the connection in the middle of the {scheme} \
                                 sign-in ({}); it cannot be signed in to this way",
                                head.status
                            ),
                        ));
                    }
                }
                challenge = Some(c.to_owned());
            }
            _ => return Err(refused(hop, scheme, &head.status)),
        }
    }
    Err(ProtoError::new(
        ErrorKind::Protocol,
        format!("{name} kept asking for more {scheme} sign-in steps"),
    ))
}

/// The proxy refused the credentials of a sign-in: what to do about it.
fn refused(hop: &Hop, scheme: &str, status: &str) -> ProtoError {
    let name = hop.name();
    let message = match &hop.url.username {
        Some(user) => format!(
            "{name} refused the {scheme} sign-in of the user {user:?} ({status}); store the right \
             password with `mailpulse password set --proxy`"
        ),
        None => format!(
            "{name} refused the {scheme} sign-in of this Windows user ({status}); write a user \
             into the proxy setting (\"http://DOMAIN%5CUSER@{}\") and store its password with \
             `mailpulse password set --proxy`",
            hop.url.endpoint()
        ),
    };
    ProtoError::new(ErrorKind::Auth, message)
}

/// A proxy's answer other than 2xx and 407, as the hop that failed and what to do.
fn status_error(hop: &Hop, head: &Head, target: &str, port: u16, purpose: Purpose) -> ProtoError {
    let name = hop.name();
    let status = &head.status;
    match head.code {
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
    }
}

/// A 407 that mailpulse has nothing to answer with: one error that says what to do (the engine
/// does not retry an `Auth` error until something changes, so a proxy that wants credentials is
/// never hammered).
fn proxy_auth_error(hop: &Hop, status: &str, offered: &[String]) -> ProtoError {
    let name = hop.name();
    let with_password = offered.is_empty()
        || offered
            .iter()
            .any(|s| s == "basic" || s == "ntlm" || s == "negotiate");
    let message = match (&hop.url.username, &hop.password) {
        (Some(user), None) if with_password => format!(
            "{name} wants a password ({status}) and the keyring holds none for {user:?}: store \
             it with `mailpulse password set --proxy`"
        ),
        (None, _) if with_password => format!(
            "{name} wants a user name and password ({status}): write the user into the proxy \
             setting (\"http://USER@{0}\", in a Windows domain \"http://DOMAIN%5CUSER@{0}\") \
             and store the password with `mailpulse password set --proxy`",
            hop.url.endpoint()
        ),
        _ => format!(
            "{name} wants a sign-in mailpulse cannot give ({status}; it offers {}): ask for \
             Basic, NTLM or Negotiate authentication, or an exception for the mail server",
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
        assert!(
            e.message.contains("DOMAIN%5CUSER@proxy.corp:3128"),
            "{}",
            e.message
        );
        let e = proxy_auth_error(&hop, "407", &["negotiate".into()]);
        assert!(
            e.message.contains("DOMAIN%5CUSER@proxy.corp:3128"),
            "{}",
            e.message
        );
        let e = proxy_auth_error(&hop, "407", &["digest".into()]);
        assert!(e.message.contains("it offers digest"), "{}", e.message);
    }

    fn head(text: &str) -> Head {
        Head::parse(text, "the proxy p:1").unwrap()
    }

    #[test]
    fn a_407_names_its_schemes_challenges_and_whether_its_connection_stays() {
        let h = head(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\n\
             proxy-authenticate: NTLM TlRMTVNTUAACAAAA\r\nProxy-Authenticate: Basic realm=\"x y\"\r\n\
             Content-Length: 12",
        );
        assert_eq!(h.offered(), ["negotiate", "ntlm", "basic"]);
        assert_eq!(h.challenge("ntlm"), Some("TlRMTVNTUAACAAAA"));
        assert_eq!(h.challenge("Negotiate"), None);
        assert_eq!(h.body_length_if_kept(), Some(12));
        let h = head("HTTP/1.1 407 x\r\nConnection: close\r\nContent-Length: 12");
        assert_eq!(h.body_length_if_kept(), None);
        let h = head("HTTP/1.1 407 x\r\nTransfer-Encoding: chunked");
        assert_eq!(h.body_length_if_kept(), None);
        let h = head("HTTP/1.0 407 x\r\nContent-Length: 1");
        assert_eq!(h.body_length_if_kept(), None);
        let h = head("HTTP/1.1 407 x\r\nContent-Length: lots");
        assert_eq!(h.body_length_if_kept(), None);
        let h = head("HTTP/1.1 200 Connection established\r\nProxy-Connection: close\r\n\r\n");
        assert!(h.is_success() && h.closes && h.status == "200 Connection established");
        assert!(Head::parse("HTTP/1.1 abc\r\n", "the proxy p:1").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Whatever a proxy (or whoever answers in its place) sends as a head: parsed or an
        /// error, never a panic; its schemes, challenges and body length read without one too.
        #[test]
        fn any_answer_head_is_read_or_refused_never_a_panic(
            status in "HTTP/1\\.[01] [0-9]{0,4}[^\r\n]{0,300}",
            headers in proptest::collection::vec(("[A-Za-z-]{0,20}", "[^\r\n]{0,80}"), 0..12),
        ) {
            let mut text = status;
            for (k, v) in &headers {
                text.push_str(&format!("\r\n{k}:{v}"));
            }
            if let Ok(h) = Head::parse(&text, "the proxy p:1") {
                let _ = (h.is_success(), h.offered(), h.body_length_if_kept());
                let _ = (h.challenge("NTLM"), h.challenge("Negotiate"), h.challenge("Basic"));
            }
        }
    }
}
