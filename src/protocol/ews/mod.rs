//! Exchange Web Services: SOAP over HTTPS behind the same [`Connector`]/[`Session`] pair as
//! IMAP, so the engine (keep-alive timer, dead-connection detection, backoff, catch-up, dedupe)
//! is unchanged.
//!
//! - the last-item query / keep-alive is `FindItem` (shallow, newest first by
//!   `DateTimeReceived`, one entry) on the request connection;
//! - push is a streaming subscription: `Subscribe` then `GetStreamingEvents`, whose chunked answer
//!   (notifications, heartbeats, a final `Closed`) is read by a task on a second connection;
//!   a missing heartbeat for twice its period (at most the keep-alive interval) plus the response
//!   timeout is a dead connection; a lost subscription is renewed, then `FindItem` catches up;
//! - a server that refuses streaming is polled with the same `FindItem` every interval;
//! - nothing is ever changed: no `UpdateItem`, no `MarkAsRead`, no body fetched.
//!
//! UIDs: EWS item ids are opaque strings, but the engine dedupes by a number that grows with
//! arrival. The UID is the item's `DateTimeReceived` in seconds since 2020-01-01 times four,
//! plus one plus a slot (0..=3) for items received in the same second, handed out in order of first
//! sighting by one map per account that lives as long as the agent. So the UID is stable across
//! reconnects (catch-up announces each lost item once, nothing twice) and across restarts up to
//! the slot (a restart starts the slots afresh, which can only make a UID smaller, never announce
//! an old item). Limits: a fifth message in the same second shares the fourth's UID, and the
//! scheme runs out in 2054 — long after Microsoft switches EWS off.

pub mod autodiscover;
pub mod http;
pub mod ntlm;
pub mod xml;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use self::http::{Conn, Head, HttpError};
use self::xml::{El, EwsError};
use super::{Connector, FolderInfo, ProtoError, Session, Wake};
use crate::config::{Account, AuthMethod, KeepAlive};
use crate::event::{ErrorKind, MailItem};
use crate::secret::{self, Secret};

/// The largest ordinary answer we read (FindItem pages are a few kB).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Items per FindItem page while catching up.
const PAGE: u32 = 25;
/// At most this many pages (1000 items) in one catch-up.
const MAX_PAGES: u32 = 40;
/// `ConnectionTimeout` of GetStreamingEvents, in minutes (the maximum the protocol allows).
const STREAM_MINUTES: u32 = 30;
/// 2020-01-01T00:00:00Z, the origin of the UID scheme.
const UID_EPOCH: i64 = 1_577_836_800;
/// How often a pull subscription is asked for events.
const PULL_EVERY: Duration = Duration::from_secs(10);
/// A pull subscription expires when not asked for this long.
const PULL_TIMEOUT_MINUTES: u32 = 30;
/// The longest `ErrorServerBusy` back-off hint honoured as given.
const MAX_BACK_OFF: Duration = Duration::from_secs(300);

/// The Exchange well-known folder a configured folder name stands for (`INBOX` → `inbox`).
pub fn distinguished_folder(name: &str) -> Option<&'static str> {
    const KNOWN: &[&str] = &[
        "inbox",
        "junkemail",
        "deleteditems",
        "sentitems",
        "drafts",
        "outbox",
        "archiveinbox",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name.trim()))
        .copied()
}

/// Keep messages that quote server output short.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Item id → UID (see the module documentation).
#[derive(Debug, Default)]
struct UidMap {
    ids: HashMap<String, u32>,
    slots: HashMap<i64, u8>,
}

impl UidMap {
    fn uid(&mut self, id: &str, secs: i64) -> u32 {
        if let Some(uid) = self.ids.get(id) {
            return *uid;
        }
        let used = self.slots.entry(secs).or_insert(0);
        let slot = (*used).min(3) as u64;
        *used = used.saturating_add(1);
        let base = (secs - UID_EPOCH).max(0) as u64;
        let uid = (base * 4 + slot + 1).min(u32::MAX as u64) as u32;
        self.ids.insert(id.to_owned(), uid);
        if self.ids.len() > 20_000 {
            // Forget the oldest half: only recent items are ever compared again.
            let mut uids: Vec<u32> = self.ids.values().copied().collect();
            uids.sort_unstable();
            let cut = uids[uids.len() / 2];
            self.ids.retain(|_, u| *u >= cut);
            let cut_secs = (cut as i64 - 1) / 4 + UID_EPOCH;
            self.slots.retain(|s, _| *s >= cut_secs);
        }
        uid
    }

    /// UIDs for one answer's items, handed out oldest first (ties by id) so that the same
    /// answer always yields the same UIDs.
    fn assign(&mut self, items: Vec<xml::Item>) -> Vec<MailItem> {
        let mut items: Vec<(i64, xml::Item)> = items
            .into_iter()
            .map(|i| (i.received.map_or(0, |d| d.timestamp()), i))
            .collect();
        items.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        items
            .into_iter()
            .map(|(secs, i)| MailItem {
                uid: self.uid(&i.id, secs),
                from: i.from,
                subject: i.subject,
                date: i.received,
                seen: i.is_read,
            })
            .collect()
    }
}

/// How a password account authenticates, once the server said what it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer,
    /// NTLM, in an `NTLM` or a `Negotiate` header.
    Ntlm(&'static str),
}

pub struct EwsConnector {
    shared: Arc<Shared>,
}

struct Shared {
    account: Account,
    keepalive: KeepAlive,
    url: Result<url::Url, String>,
    /// A password typed into Settings but not stored yet ("Test connection").
    password: Option<Secret>,
    tokens: crate::oauth::TokenSource,
    tls: Mutex<Option<native_tls::TlsConnector>>,
    /// Exchange Online's `X-BackEndOverrideCookie`, sent back to reach the same back end.
    cookie: Mutex<Option<String>>,
    uids: Mutex<UidMap>,
    warned_plain: AtomicBool,
    /// What the server offered, learnt once for `auth = "password"`.
    scheme: Mutex<Option<Scheme>>,
    /// `ErrorServerBusy` asked not to send anything before then (and how long it asked for).
    busy_until: Mutex<Option<(Instant, Duration)>>,
}

impl EwsConnector {
    pub fn new(account: Account, keepalive: KeepAlive) -> Self {
        EwsConnector {
            shared: Arc::new(Shared::new(account, keepalive, None)),
        }
    }

    /// Use this password instead of the account's password source.
    pub fn with_password(mut self, password: Secret) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.password = Some(password);
        }
        self
    }
}

impl Shared {
    fn new(account: Account, keepalive: KeepAlive, password: Option<Secret>) -> Shared {
        let url = url::Url::parse(&account.ews_url()).map_err(|e| e.to_string());
        Shared {
            tokens: crate::oauth::TokenSource::new(account.clone()),
            url,
            account,
            keepalive,
            password,
            tls: Mutex::new(None),
            cookie: Mutex::new(None),
            uids: Mutex::new(UidMap::default()),
            warned_plain: AtomicBool::new(false),
            scheme: Mutex::new(None),
            busy_until: Mutex::new(None),
        }
    }

    fn rt(&self) -> Duration {
        self.keepalive.response_timeout()
    }

    fn url(&self) -> Result<&url::Url, ProtoError> {
        self.url.as_ref().map_err(|e| {
            ProtoError::new(
                ErrorKind::Config,
                format!("the EWS url {:?} is not a URL: {e}", self.account.ews_url()),
            )
        })
    }

    fn host(&self) -> String {
        self.url
            .as_ref()
            .ok()
            .and_then(|u| u.host_str())
            .unwrap_or(&self.account.host)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    }

    fn port(&self) -> u16 {
        self.url
            .as_ref()
            .ok()
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(443)
    }

    fn endpoint(&self) -> String {
        format!("{}:{}", self.host(), self.port())
    }

    fn timeout_error(&self, what: &str) -> ProtoError {
        ProtoError::new(
            ErrorKind::Timeout,
            format!(
                "{}: no answer within {} s while {what}: the connection is dead",
                self.endpoint(),
                self.rt().as_secs()
            ),
        )
    }

    async fn secret(&self, refused: Option<&Secret>) -> Result<Secret, ProtoError> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        if self.account.auth == AuthMethod::Bearer {
            self.tokens.token(refused).await
        } else {
            secret::password(&self.account).await
        }
    }

    fn tls_connector(&self) -> Result<tokio_native_tls::TlsConnector, ProtoError> {
        let mut cached = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref() {
            return Ok(tokio_native_tls::TlsConnector::from(c.clone()));
        }
        let mut builder = native_tls::TlsConnector::builder();
        builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
        if let Some(path) = &self.account.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ProtoError::new(
                    ErrorKind::Tls,
                    format!("cannot read ca_file {}: {e}", path.display()),
                )
            })?;
            let certs = super::imap::pem_certificates(&pem).map_err(|e| {
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

    fn tls_error(&self, e: native_tls::Error) -> ProtoError {
        let text = e.to_string();
        let host = self.host();
        let advice = if text.contains("certificate") {
            match &self.account.ca_file {
                Some(ca) => format!(
                    "the certificate of {host} is not trusted, not even with ca_file {}, or does not name this host",
                    ca.display()
                ),
                None => format!(
                    "the certificate of {host} is not trusted; if the server uses a private \
                     certificate authority, set ca_file to its certificate"
                ),
            }
        } else if text.contains("wrong version number") || text.contains("packet length too long") {
            format!(
                "{} does not speak TLS; check the port in url",
                self.endpoint()
            )
        } else {
            format!("TLS with {} failed", self.endpoint())
        };
        ProtoError::new(ErrorKind::Tls, format!("{advice} ({})", text.trim()))
    }

    /// A new connection: resolve, TCP with the deadline, TLS (verified) for https.
    async fn connect(&self) -> Result<Conn, ProtoError> {
        let url = self.url()?;
        let host = self.host();
        let port = self.port();
        let rt = self.rt();
        let tcp = super::connect_tcp(&host, port, rt, " in url").await?;
        let _ = tcp.set_nodelay(true);
        let params = socket2::TcpKeepalive::new()
            .with_time(self.keepalive.interval() + Duration::from_secs(5))
            .with_interval(Duration::from_secs(10));
        if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&params) {
            tracing::debug!("cannot set TCP keep-alive: {e}");
        }
        if url.scheme() == "http" {
            if !self.warned_plain.swap(true, Ordering::Relaxed) {
                tracing::warn!(account = %self.account.name, "plain http: the password travels unencrypted to {}", self.endpoint());
            }
            return Ok(Conn::new(Box::new(tcp)));
        }
        let connector = self.tls_connector()?;
        let stream = match timeout(rt, connector.connect(&host, tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(self.tls_error(e)),
            Err(_) => return Err(self.timeout_error("negotiating TLS")),
        };
        Ok(Conn::new(Box::new(stream)))
    }

    fn remember_cookie(&self, head: &Head) {
        for c in head.all("set-cookie") {
            if let Some(v) = c.split(';').next()
                && v.trim_start().starts_with("X-BackEndOverrideCookie=")
            {
                *self.cookie.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.trim().to_owned());
            }
        }
    }

    fn http_error(&self, e: HttpError, what: &str) -> ProtoError {
        let endpoint = self.endpoint();
        match e {
            HttpError::Io(io) => match io.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => ProtoError::new(
                    ErrorKind::Disconnected,
                    format!("{endpoint}: connection lost ({io}) while {what}"),
                ),
                _ => ProtoError::new(
                    ErrorKind::Disconnected,
                    format!("{endpoint}: {io} while {what}"),
                ),
            },
            HttpError::Malformed(m) => ProtoError::new(
                ErrorKind::Protocol,
                format!("{endpoint}: malformed answer while {what}: {}", clip(&m)),
            ),
        }
    }

    /// An EWS error code as a [`ProtoError`] the user can act on.
    fn ews_error(&self, e: &EwsError, what: &str) -> ProtoError {
        let endpoint = self.endpoint();
        let text = if e.text.is_empty() {
            String::new()
        } else {
            format!(" ({})", clip(&e.text))
        };
        match e.code.as_str() {
            "ErrorServerBusy" => ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{endpoint}: the server is busy (ErrorServerBusy) and asked to wait {} s",
                    e.back_off
                        .unwrap_or(Duration::from_secs(30))
                        .min(MAX_BACK_OFF)
                        .as_secs_f64()
                        .ceil()
                ),
            ),
            "ErrorFolderNotFound" | "ErrorAccessDenied" | "ErrorItemNotFound" => ProtoError::new(
                ErrorKind::Folder,
                format!("{endpoint}: {}{text} while {what}", e.code),
            ),
            "ErrorNonExistentMailbox"
            | "ErrorMailboxStoreUnavailable"
            | "ErrorMailboxMoveInProgress" => ProtoError::new(
                ErrorKind::Auth,
                format!(
                    "{endpoint}: {}{text} while {what}; check the user name",
                    e.code
                ),
            ),
            _ => ProtoError::new(
                ErrorKind::Protocol,
                format!("{endpoint}: {}{text} while {what}", e.code),
            ),
        }
    }
}

/// Why a call failed: an EWS error code the caller may act on, or anything else.
#[derive(Debug)]
enum CallError {
    Ews(EwsError),
    Proto(ProtoError),
}

impl From<ProtoError> for CallError {
    fn from(e: ProtoError) -> Self {
        CallError::Proto(e)
    }
}

/// One HTTP connection to the EWS endpoint, with the account's authentication.
struct Http {
    shared: Arc<Shared>,
    conn: Option<Conn>,
    secret: Option<Secret>,
    scheme: Option<Scheme>,
}

impl Http {
    fn new(shared: Arc<Shared>) -> Http {
        Http {
            shared,
            conn: None,
            secret: None,
            scheme: None,
        }
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let (Some(secret), Some(scheme)) = (&self.secret, self.scheme) {
            let value = match scheme {
                Scheme::Basic => format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!(
                        "{}:{}",
                        self.shared.account.username,
                        secret.expose()
                    ))
                ),
                Scheme::Bearer => format!("Bearer {}", secret.expose()),
                Scheme::Ntlm(_) => String::new(),
            };
            if !value.is_empty() {
                h.push(("Authorization", value));
            }
        }
        let user = &self.shared.account.username;
        if user.contains('@') {
            // Exchange Online routes by mailbox; ignored on-premises.
            h.push(("X-AnchorMailbox", user.clone()));
            h.push(("X-PreferServerAffinity", "true".into()));
        }
        if let Some(c) = self
            .shared
            .cookie
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            h.push(("Cookie", c));
        }
        h
    }

    /// Send `body` and read the answer's head, authenticating as needed: reconnects when
    /// there is no connection, retries once on a pooled connection the server had closed, runs
    /// the NTLM handshake on a new connection, and (for `auth = "password"`) learns from the
    /// first 401 which scheme the server offers.
    async fn request(&mut self, what: &str, body: &str) -> Result<Head, ProtoError> {
        let shared = self.shared.clone();
        if self.secret.is_none() {
            self.secret = Some(shared.secret(None).await?);
        }
        if self.scheme.is_none() {
            self.scheme = match shared.account.auth {
                AuthMethod::Bearer => Some(Scheme::Bearer),
                AuthMethod::Basic => Some(Scheme::Basic),
                AuthMethod::Ntlm => Some(Scheme::Ntlm("NTLM")),
                _ => *shared.scheme.lock().unwrap_or_else(|p| p.into_inner()),
            };
        }
        let path = {
            let url = shared.url()?;
            match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            }
        };
        let host_header = match shared.url()?.port() {
            Some(p) => format!("{}:{p}", shared.url()?.host_str().unwrap_or_default()),
            None => shared.url()?.host_str().unwrap_or_default().to_owned(),
        };
        let mut refreshed = false;
        let mut retried = false;
        // The NTLM leg this request is at: None, Some(false) = type 1 sent, Some(true) = type 3.
        let mut ntlm_leg: Option<bool> = None;
        let mut ntlm_answer: Option<String> = None;
        for _ in 0..6 {
            if self.conn.is_none() {
                self.conn = Some(shared.connect().await?);
                ntlm_leg = None;
            }
            let mut headers = self.headers();
            let authed = self.conn.as_ref().is_some_and(|c| c.authed);
            if let Some(Scheme::Ntlm(prefix)) = self.scheme
                && !authed
            {
                let token = match ntlm_answer.take() {
                    Some(t) => {
                        ntlm_leg = Some(true);
                        t
                    }
                    None => {
                        ntlm_leg = Some(false);
                        ntlm::negotiate()
                    }
                };
                headers.push(("Authorization", format!("{prefix} {token}")));
            }
            let conn = self.conn.as_mut().expect("connected above");
            let reused = conn.used;
            let sent = async {
                conn.post(&path, &host_header, &headers, body.as_bytes())
                    .await?;
                conn.read_head().await
            };
            let head = match timeout(shared.rt(), sent).await {
                Err(_) => {
                    self.conn = None;
                    return Err(shared.timeout_error(what));
                }
                Ok(Err(HttpError::Io(e))) if reused && !retried && ntlm_leg != Some(true) => {
                    tracing::debug!(
                        "{}: the kept connection was closed ({e}); reconnecting",
                        shared.endpoint()
                    );
                    self.conn = None;
                    retried = true;
                    continue;
                }
                Ok(Err(e)) => {
                    self.conn = None;
                    return Err(shared.http_error(e, what));
                }
                Ok(Ok(head)) => head,
            };
            shared.remember_cookie(&head);
            if head.status != 401 {
                if ntlm_leg.is_some()
                    && let Some(c) = self.conn.as_mut()
                {
                    c.authed = true;
                }
                return Ok(head);
            }
            // Read the 401's body so the connection stays usable, then decide.
            let _ = self.body(&head, what).await;
            let offered: Vec<&str> = head.all("www-authenticate").collect();
            match self.scheme {
                None => {
                    let has = |name: &str| {
                        offered.iter().any(|v| {
                            v.split_whitespace()
                                .next()
                                .is_some_and(|s| s.eq_ignore_ascii_case(name))
                        })
                    };
                    let scheme = if has("NTLM") {
                        Scheme::Ntlm("NTLM")
                    } else if has("Negotiate") {
                        Scheme::Ntlm("Negotiate")
                    } else {
                        Scheme::Basic
                    };
                    tracing::debug!(account = %shared.account.name, "{} offers {offered:?}: using {scheme:?}", shared.endpoint());
                    *shared.scheme.lock().unwrap_or_else(|p| p.into_inner()) = Some(scheme);
                    self.scheme = Some(scheme);
                    continue;
                }
                Some(Scheme::Ntlm(prefix)) if ntlm_leg == Some(false) => {
                    let challenge = offered.iter().find_map(|v| {
                        let (name, token) = v.split_once(' ')?;
                        name.eq_ignore_ascii_case(prefix).then(|| token.trim())
                    });
                    let Some(challenge) = challenge else {
                        return Err(ProtoError::new(
                            ErrorKind::Auth,
                            format!(
                                "{} does not accept NTLM (it offers {}); set auth = \"basic\" or \"bearer\"",
                                shared.host(),
                                offered.join(", ")
                            ),
                        ));
                    };
                    if self.conn.is_none() {
                        return Err(ProtoError::new(
                            ErrorKind::Protocol,
                            format!(
                                "{}: the server closed the connection in the middle of the NTLM handshake",
                                shared.endpoint()
                            ),
                        ));
                    }
                    let secret = self.secret.clone().expect("fetched above");
                    let answer = ntlm::authenticate(challenge, &shared.account.username, &secret)
                        .map_err(|m| {
                        ProtoError::new(ErrorKind::Protocol, format!("{}: {m}", shared.endpoint()))
                    })?;
                    ntlm_answer = Some(answer);
                    continue;
                }
                Some(Scheme::Bearer) if !refreshed && shared.password.is_none() => {
                    tracing::info!(account = %shared.account.name, "the server refused the access token; getting a fresh one");
                    let old = self.secret.take();
                    self.secret = Some(shared.tokens.token(old.as_ref()).await?);
                    refreshed = true;
                    continue;
                }
                _ => {}
            }
            let schemes: Vec<String> = offered
                .iter()
                .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
                .collect();
            self.secret = None;
            let user = &shared.account.username;
            let host = shared.host();
            let message = match self.scheme {
                Some(Scheme::Bearer) => format!(
                    "{host} rejected the OAuth2 token of {user:?} (HTTP 401); check the user name and that the token grants EWS access (EWS.AccessAsUser.All)"
                ),
                Some(Scheme::Basic)
                    if !schemes.is_empty()
                        && !schemes.iter().any(|s| s.eq_ignore_ascii_case("basic")) =>
                {
                    format!(
                        "{host} does not accept Basic authentication (it offers {}); set auth = \"ntlm\" or \"bearer\"",
                        schemes.join(", ")
                    )
                }
                Some(Scheme::Ntlm(_)) => format!(
                    "{host} rejected the NTLM login of {user:?} (HTTP 401); check the user name (DOMAIN\\user or user@domain) and the password"
                ),
                _ => format!(
                    "{host} rejected the login of {user:?} (HTTP 401); check the user name (often DOMAIN\\user or user@domain) and the password"
                ),
            };
            return Err(ProtoError::new(ErrorKind::Auth, message));
        }
        Err(ProtoError::new(
            ErrorKind::Auth,
            format!(
                "{}: authentication did not finish; check auth in the account settings",
                shared.endpoint()
            ),
        ))
    }

    /// The body of the answer whose head was read.
    async fn body(&mut self, head: &Head, what: &str) -> Result<Vec<u8>, ProtoError> {
        let shared = self.shared.clone();
        let Some(conn) = self.conn.as_mut() else {
            return Err(ProtoError::new(
                ErrorKind::Disconnected,
                format!("{}: the connection was lost", shared.endpoint()),
            ));
        };
        let r = timeout(shared.rt(), conn.read_body(head, MAX_BODY)).await;
        let body = match r {
            Err(_) => {
                self.conn = None;
                return Err(shared.timeout_error(what));
            }
            Ok(Err(e)) => {
                self.conn = None;
                return Err(shared.http_error(e, what));
            }
            Ok(Ok(b)) => b,
        };
        if head.closes() {
            self.conn = None;
        }
        Ok(body)
    }

    /// A call with one response message: that message (checked), or why not.
    async fn call(&mut self, what: &str, body: &str) -> Result<El, CallError> {
        let busy = *self
            .shared
            .busy_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((until, asked)) = busy
            && until > Instant::now()
        {
            // Honour the hint: nothing is sent before it ran out (the engine retries later).
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{}: the server is busy (ErrorServerBusy) and asked to wait {} s",
                    self.shared.endpoint(),
                    asked.as_secs_f64().ceil()
                ),
            )
            .into());
        }
        let result = self.call_once(what, body).await;
        if let Err(CallError::Ews(e)) = &result
            && e.code == "ErrorServerBusy"
        {
            let asked = e
                .back_off
                .unwrap_or(Duration::from_secs(30))
                .min(MAX_BACK_OFF);
            *self
                .shared
                .busy_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now() + asked, asked));
        }
        result
    }

    async fn call_once(&mut self, what: &str, body: &str) -> Result<El, CallError> {
        let head = self.request(what, body).await?;
        let bytes = self.body(&head, what).await?;
        let shared = self.shared.clone();
        let endpoint = shared.endpoint();
        if !(head.status == 200 || head.status == 500) {
            let message = match head.status {
                404 => format!(
                    "{endpoint}: there is no EWS at {} (HTTP 404); check url",
                    shared.account.ews_url()
                ),
                503 | 429 => format!(
                    "{endpoint}: the server is busy (HTTP {} {}) while {what}",
                    head.status, head.reason
                ),
                s => format!("{endpoint}: HTTP {s} {} while {what}", head.reason),
            };
            return Err(ProtoError::new(ErrorKind::Protocol, message).into());
        }
        let malformed = |m: String| {
            CallError::Proto(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{endpoint}: malformed answer while {what}: {}; is {} an EWS endpoint?",
                    clip(&m),
                    shared.account.ews_url()
                ),
            ))
        };
        let root = xml::parse(&bytes).map_err(malformed)?;
        let op = match xml::body(&root) {
            Ok(op) => op,
            Err(Ok(fault)) => return Err(CallError::Ews(fault)),
            Err(Err(m)) => return Err(malformed(m)),
        };
        let messages = xml::messages(op).map_err(malformed)?;
        let first = messages
            .first()
            .ok_or_else(|| malformed("no response message".into()))?;
        let message = xml::check(first).map_err(CallError::Ews)?;
        Ok(message.clone())
    }

    /// [`call`](Self::call) with EWS errors turned into [`ProtoError`]s.
    async fn call_p(&mut self, what: &str, body: &str) -> Result<El, ProtoError> {
        match self.call(what, body).await {
            Ok(m) => Ok(m),
            Err(CallError::Proto(e)) => Err(e),
            Err(CallError::Ews(e)) => Err(self.shared.ews_error(&e, what)),
        }
    }

    /// A pull subscription: (id, watermark).
    async fn subscribe_pull(&mut self, folder: &str) -> Result<(String, String), CallError> {
        let m = self
            .call(
                "subscribing to new mail (pull)",
                &xml::subscribe_pull(folder, PULL_TIMEOUT_MINUTES),
            )
            .await?;
        let text = |n: &str| {
            m.child_text(n)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        match (text("SubscriptionId"), text("Watermark")) {
            (Some(id), Some(w)) => Ok((id, w)),
            _ => Err(CallError::Proto(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{}: Subscribe answered without a SubscriptionId and Watermark",
                    self.shared.endpoint()
                ),
            ))),
        }
    }

    async fn subscribe(&mut self, folder: &str) -> Result<String, CallError> {
        let m = self
            .call("subscribing to new mail", &xml::subscribe_streaming(folder))
            .await?;
        m.child_text("SubscriptionId")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CallError::Proto(ProtoError::new(
                    ErrorKind::Protocol,
                    format!(
                        "{}: Subscribe answered without a SubscriptionId",
                        self.shared.endpoint()
                    ),
                ))
            })
    }
}

#[async_trait]
impl Connector for EwsConnector {
    async fn open(&self, folder: &str) -> Result<(Box<dyn Session>, FolderInfo), ProtoError> {
        let shared = self.shared.clone();
        let Some(id) = distinguished_folder(folder) else {
            return Err(ProtoError::new(
                ErrorKind::Folder,
                format!("{folder:?} is not an Exchange well-known folder (e.g. \"INBOX\")"),
            ));
        };
        let mut http = Http::new(shared.clone());
        let m = http
            .call_p("opening the folder", &xml::get_folder(id))
            .await?;
        let folder_el = m.child("Folders").and_then(|f| f.children.first());
        let folder_id = folder_el
            .and_then(|f| f.child("FolderId"))
            .and_then(|f| f.attr("Id"))
            .unwrap_or(id)
            .to_owned();
        let exists = folder_el
            .and_then(|f| f.child_text("TotalCount"))
            .and_then(|t| t.trim().parse::<u32>().ok())
            .unwrap_or(0);
        // FNV-1a of the folder's id: a mailbox recreated under the same name is a new folder.
        let uid_validity = folder_id.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        }) | 1;
        let (rx, task) = match http.subscribe(id).await {
            Ok(sub) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let stream = Http::new(shared.clone());
                (
                    Some(rx),
                    Some(tokio::spawn(stream_task(stream, id, sub, tx))),
                )
            }
            Err(CallError::Ews(e)) => {
                tracing::info!(
                    account = %shared.account.name,
                    "{} refuses streaming notifications ({}): trying a pull subscription",
                    shared.endpoint(), e.code
                );
                (None, None)
            }
            Err(CallError::Proto(e)) => return Err(e),
        };
        let pull = if rx.is_none() {
            match http.subscribe_pull(id).await {
                Ok(p) => Some(p),
                Err(CallError::Ews(e)) => {
                    tracing::info!(
                        account = %shared.account.name,
                        "{} refuses pull subscriptions too ({}): polling with FindItem every interval",
                        shared.endpoint(), e.code
                    );
                    None
                }
                Err(CallError::Proto(e)) => return Err(e),
            }
        } else {
            None
        };
        let info = FolderInfo {
            uid_validity,
            exists,
            can_push: rx.is_some() || pull.is_some(),
        };
        Ok((
            Box::new(EwsSession {
                http,
                folder: id,
                rx,
                task,
                pull,
                last_alive: Instant::now(),
                last_beat: None,
                period: None,
            }),
            info,
        ))
    }
}

/// What the stream task reports.
#[derive(Debug)]
enum Msg {
    /// An envelope arrived (heartbeat or the stream (re)opened: `fresh`).
    Alive {
        at: Instant,
        fresh: bool,
    },
    /// New mail (or the subscription was renewed: catch up).
    Changed,
    Failed(ProtoError),
}

struct EwsSession {
    http: Http,
    folder: &'static str,
    rx: Option<mpsc::UnboundedReceiver<Msg>>,
    task: Option<JoinHandle<()>>,
    /// A pull subscription (id, watermark) when the server does not stream.
    pull: Option<(String, String)>,
    last_alive: Instant,
    last_beat: Option<Instant>,
    /// The observed heartbeat period.
    period: Option<Duration>,
}

impl Drop for EwsSession {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl EwsSession {
    async fn find(&mut self, max: u32, offset: u32) -> Result<(Vec<MailItem>, bool), ProtoError> {
        let m = self
            .http
            .call_p(
                "querying the newest item",
                &xml::find_items(self.folder, max, offset),
            )
            .await?;
        let root = m.child("RootFolder");
        let last = root
            .and_then(|r| r.attr("IncludesLastItemInRange"))
            .is_none_or(|v| v == "true");
        let items = root
            .and_then(|r| r.child("Items"))
            .map(xml::items)
            .unwrap_or_default();
        let mut map = self
            .http
            .shared
            .uids
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok((map.assign(items), last))
    }

    /// Pull mode: `GetEvents` every [`PULL_EVERY`] until new mail, `max`, or `stop`.
    async fn pull_wait(
        &mut self,
        max: Duration,
        stop: &CancellationToken,
    ) -> Result<Wake, ProtoError> {
        let until = Instant::now() + max;
        loop {
            let step = PULL_EVERY.min(until.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = sleep(step) => {}
                _ = stop.cancelled() => return Ok(Wake::Interrupted),
            }
            if Instant::now() >= until {
                // The engine's keep-alive query follows at once; no GetEvents needed.
                return Ok(Wake::Timeout);
            }
            if self.get_events().await? {
                return Ok(Wake::Changed);
            }
        }
    }

    /// One round of `GetEvents` (more while the server says MoreEvents); whether new mail came.
    async fn get_events(&mut self) -> Result<bool, ProtoError> {
        let mut changed = false;
        for _ in 0..10 {
            let Some((sub, watermark)) = self.pull.clone() else {
                return Ok(changed);
            };
            let m = match self
                .http
                .call("asking for events", &xml::get_events(&sub, &watermark))
                .await
            {
                Ok(m) => m,
                Err(CallError::Ews(e)) if e.is_subscription_lost() => {
                    tracing::info!(
                        "{}: pull subscription lost ({}); subscribing again",
                        self.http.shared.endpoint(),
                        e.code
                    );
                    self.pull = match self.http.subscribe_pull(self.folder).await {
                        Ok(p) => Some(p),
                        Err(CallError::Proto(e)) => return Err(e),
                        Err(CallError::Ews(e)) => {
                            return Err(self.http.shared.ews_error(&e, "subscribing again"));
                        }
                    };
                    // Catch up with FindItem; the old watermark is not reused.
                    return Ok(true);
                }
                Err(CallError::Ews(e)) => {
                    return Err(self.http.shared.ews_error(&e, "asking for events"));
                }
                Err(CallError::Proto(e)) => return Err(e),
            };
            let Some(n) = m.child("Notification") else {
                return Ok(changed);
            };
            let mut last = watermark;
            for event in &n.children {
                if let Some(w) = event.child_text("Watermark") {
                    last = w.trim().to_owned();
                }
                changed |= event.name == "NewMailEvent" || event.name == "CreatedEvent";
            }
            self.pull = Some((sub, last));
            if n.child_text("MoreEvents").map(str::trim) != Some("true") {
                break;
            }
        }
        Ok(changed)
    }

    /// How long without any envelope means the stream is dead: twice the heartbeat period or
    /// the keep-alive interval, whichever is shorter, plus the response timeout — but never less
    /// than one and a half periods, so that a server whose heartbeats are rarer than the
    /// keep-alive interval is not declared dead between two of them.
    fn dead_after(&self) -> Duration {
        let ka = &self.http.shared.keepalive;
        let base = match self.period {
            Some(p) => (p * 2).min(ka.interval()).max(p * 3 / 2),
            None => ka.interval(),
        };
        base + ka.response_timeout()
    }

    fn alive(&mut self, at: Instant, fresh: bool) {
        if !fresh && let Some(prev) = self.last_beat {
            let gap = at.saturating_duration_since(prev);
            if gap > Duration::from_millis(100) {
                self.period = Some(gap);
            }
        }
        self.last_beat = Some(at);
        self.last_alive = self.last_alive.max(at);
    }
}

#[async_trait]
impl Session for EwsSession {
    async fn last_item(&mut self) -> Result<Option<MailItem>, ProtoError> {
        // Four entries, so that all items received in the newest second get their slots together.
        let (items, _) = self.find(4, 0).await?;
        Ok(items.into_iter().max_by_key(|i| i.uid))
    }

    async fn newest_uid(&mut self) -> Result<Option<u32>, ProtoError> {
        let (items, _) = self.find(1, 0).await?;
        Ok(items.iter().map(|i| i.uid).max())
    }

    async fn items_after(&mut self, uid: u32) -> Result<Vec<MailItem>, ProtoError> {
        let mut all = Vec::new();
        let floor_secs = (uid.saturating_sub(1) / 4) as i64 + UID_EPOCH;
        for page in 0..MAX_PAGES {
            let (items, last) = self.find(PAGE, page * PAGE).await?;
            let n = items.len();
            let older = items
                .iter()
                .any(|i| i.date.is_none_or(|d| d.timestamp() < floor_secs));
            all.extend(items);
            if last || older || n < PAGE as usize {
                break;
            }
        }
        all.retain(|i| i.uid > uid);
        all.sort_by_key(|i| i.uid);
        all.dedup_by_key(|i| i.uid);
        Ok(all)
    }

    async fn count_after(&mut self, uid: u32) -> Result<u32, ProtoError> {
        Ok(self.items_after(uid).await?.len() as u32)
    }

    async fn wait(&mut self, max: Duration, stop: &CancellationToken) -> Result<Wake, ProtoError> {
        let endpoint = self.http.shared.endpoint();
        if self.rx.is_none() && self.pull.is_some() {
            return self.pull_wait(max, stop).await;
        }
        let Some(mut rx) = self.rx.take() else {
            // No push: just wait (the engine polls on Timeout).
            tokio::select! {
                _ = sleep(max) => return Ok(Wake::Timeout),
                _ = stop.cancelled() => return Ok(Wake::Interrupted),
            }
        };
        let until = Instant::now() + max;
        let result = loop {
            let dead_at = self.last_alive + self.dead_after();
            tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    Some(Msg::Alive { at, fresh }) => self.alive(at, fresh),
                    Some(Msg::Changed) => {
                        self.last_alive = Instant::now();
                        break Ok(Wake::Changed);
                    }
                    Some(Msg::Failed(e)) => break Err(e),
                    None => break Err(ProtoError::new(
                        ErrorKind::Disconnected,
                        format!("{endpoint}: the notification stream ended"),
                    )),
                },
                _ = sleep_until(dead_at) => break Err(ProtoError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{endpoint}: no heartbeat on the notification stream for {} s: the connection is dead",
                        self.dead_after().as_secs()
                    ),
                )),
                _ = stop.cancelled() => break Ok(Wake::Interrupted),
                _ = sleep_until(until) => break Ok(Wake::Timeout),
            }
        };
        self.rx = Some(rx);
        result
    }

    async fn close(mut self: Box<Self>) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// How one GetStreamingEvents answer ended.
enum StreamEnd {
    /// `ConnectionStatus Closed` or the answer ended: ask again.
    Closed,
    /// The subscription is gone: subscribe again and catch up.
    Lost(EwsError),
    /// `ErrorServerBusy`: wait this long, then ask again.
    Busy(Duration),
}

/// Reads notifications on its own connection until the session ends (it is aborted then).
async fn stream_task(
    mut http: Http,
    folder: &'static str,
    mut subscription: String,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let shared = http.shared.clone();
    // A server that ends every stream at once must not be asked again in a tight loop.
    let mut pause = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let end = stream_once(&mut http, &subscription, &tx).await;
        if started.elapsed() < Duration::from_secs(1) {
            tracing::debug!(account = %shared.account.name, "the notification stream ended at once; asking again in {} s", pause.as_secs());
            sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(60));
        } else {
            pause = Duration::from_secs(1);
        }
        match end {
            Ok(StreamEnd::Closed) => {
                tracing::debug!(account = %shared.account.name, "notification stream closed by the server; asking again");
            }
            Ok(StreamEnd::Busy(d)) => {
                let d = d.min(MAX_BACK_OFF);
                tracing::info!(account = %shared.account.name, "{}: server busy; waiting {} ms as it asks", shared.endpoint(), d.as_millis());
                http.conn = None;
                sleep(d).await;
            }
            Ok(StreamEnd::Lost(e)) => {
                tracing::info!(account = %shared.account.name, "{}: subscription lost ({}); subscribing again", shared.endpoint(), e.code);
                http.conn = None;
                match http.subscribe(folder).await {
                    Ok(s) => {
                        subscription = s;
                        // Catch up with FindItem (the old watermark is not reused).
                        if tx.send(Msg::Changed).is_err() {
                            return;
                        }
                    }
                    Err(CallError::Proto(e)) => {
                        let _ = tx.send(Msg::Failed(e));
                        return;
                    }
                    Err(CallError::Ews(e)) => {
                        let _ = tx.send(Msg::Failed(shared.ews_error(&e, "subscribing again")));
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        }
    }
}

/// What one envelope of the stream said.
fn stream_envelope(
    bytes: &[u8],
    endpoint: &str,
    changed: &mut bool,
) -> Result<Option<StreamEnd>, ProtoError> {
    let malformed = |m: String| {
        ProtoError::new(
            ErrorKind::Protocol,
            format!("{endpoint}: malformed notification: {}", clip(&m)),
        )
    };
    let root = xml::parse(bytes).map_err(malformed)?;
    let op = match xml::body(&root) {
        Ok(op) => op,
        Err(Ok(e)) if e.is_subscription_lost() => return Ok(Some(StreamEnd::Lost(e))),
        Err(Ok(e)) if e.code == "ErrorServerBusy" => {
            return Ok(Some(StreamEnd::Busy(
                e.back_off.unwrap_or(Duration::from_secs(30)),
            )));
        }
        Err(Ok(e)) => {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{endpoint}: {} ({}) on the notification stream",
                    e.code,
                    clip(&e.text)
                ),
            ));
        }
        Err(Err(m)) => return Err(malformed(m)),
    };
    let mut end = None;
    for message in xml::messages(op).map_err(malformed)? {
        match xml::check(message) {
            Err(e) if e.is_subscription_lost() => return Ok(Some(StreamEnd::Lost(e))),
            Err(e) if e.code == "ErrorServerBusy" => {
                return Ok(Some(StreamEnd::Busy(
                    e.back_off.unwrap_or(Duration::from_secs(30)),
                )));
            }
            Err(e) => {
                return Err(ProtoError::new(
                    ErrorKind::Protocol,
                    format!(
                        "{endpoint}: {} ({}) on the notification stream",
                        e.code,
                        clip(&e.text)
                    ),
                ));
            }
            Ok(m) => {
                if let Some(list) = m.child("Notifications") {
                    for n in &list.children {
                        if n.children
                            .iter()
                            .any(|e| e.name == "NewMailEvent" || e.name == "CreatedEvent")
                        {
                            *changed = true;
                        }
                    }
                }
                if m.child_text("ConnectionStatus").map(str::trim) == Some("Closed") {
                    end = Some(StreamEnd::Closed);
                }
            }
        }
    }
    Ok(end)
}

async fn stream_once(
    http: &mut Http,
    subscription: &str,
    tx: &mpsc::UnboundedSender<Msg>,
) -> Result<StreamEnd, ProtoError> {
    let shared = http.shared.clone();
    let endpoint = shared.endpoint();
    let what = "opening the notification stream";
    let head = http
        .request(
            what,
            &xml::get_streaming_events(subscription, STREAM_MINUTES),
        )
        .await?;
    if !head.chunked() || head.status != 200 {
        // A whole answer: an error, or a server that does not stream (one envelope).
        let body = http.body(&head, what).await?;
        let mut changed = false;
        if head.status != 200 && head.status != 500 {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{endpoint}: HTTP {} {} while {what}",
                    head.status, head.reason
                ),
            ));
        }
        let end = stream_envelope(&body, &endpoint, &mut changed)?;
        if changed {
            let _ = tx.send(Msg::Changed);
        }
        return Ok(end.unwrap_or(StreamEnd::Closed));
    }
    let _ = tx.send(Msg::Alive {
        at: Instant::now(),
        fresh: true,
    });
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let conn = http.conn.as_mut().ok_or_else(|| {
            ProtoError::new(
                ErrorKind::Disconnected,
                format!("{endpoint}: the connection was lost"),
            )
        })?;
        // No deadline here: the session's wait() watches the heartbeats.
        let chunk = match conn.read_chunk(MAX_BODY).await {
            Ok(c) => c,
            Err(e) => {
                http.conn = None;
                return Err(shared.http_error(e, "reading the notification stream"));
            }
        };
        let Some(chunk) = chunk else {
            if head.closes() {
                http.conn = None;
            }
            return Ok(StreamEnd::Closed);
        };
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_BODY {
            http.conn = None;
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!("{endpoint}: a notification over {MAX_BODY} bytes"),
            ));
        }
        while let Some(end) = xml::envelope_end(&buf) {
            let envelope: Vec<u8> = buf.drain(..end).collect();
            let mut changed = false;
            let outcome = stream_envelope(&envelope, &endpoint, &mut changed);
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    http.conn = None;
                    return Err(e);
                }
            };
            let _ = tx.send(Msg::Alive {
                at: Instant::now(),
                fresh: false,
            });
            if changed && tx.send(Msg::Changed).is_err() {
                return Ok(StreamEnd::Closed);
            }
            if let Some(end) = outcome {
                // Read the rest of the answer so the connection can be used again.
                let rest = async {
                    while conn_chunk(http).await?.is_some() {}
                    Ok::<_, HttpError>(())
                };
                if !matches!(timeout(shared.rt(), rest).await, Ok(Ok(()))) || head.closes() {
                    http.conn = None;
                }
                return Ok(end);
            }
        }
    }
}

async fn conn_chunk(http: &mut Http) -> Result<Option<Vec<u8>>, HttpError> {
    match http.conn.as_mut() {
        Some(c) => c.read_chunk(MAX_BODY).await,
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, t: &str) -> xml::Item {
        xml::Item {
            id: id.into(),
            subject: id.into(),
            from: String::new(),
            received: Some(chrono::DateTime::parse_from_rfc3339(t).unwrap()),
            is_read: false,
        }
    }

    #[test]
    fn uids_grow_with_arrival_and_are_stable() {
        let mut m = UidMap::default();
        let a = m.assign(vec![item("a", "2026-11-28T10:00:00Z")]);
        let b = m.assign(vec![
            item("b", "2026-11-28T10:00:00Z"),
            item("a", "2026-11-28T10:00:00Z"),
            item("c", "2026-11-28T10:00:05Z"),
        ]);
        let uid = |v: &[MailItem], s: &str| v.iter().find(|i| i.subject == s).unwrap().uid;
        assert_eq!(uid(&a, "a"), uid(&b, "a"), "stable");
        assert!(
            uid(&b, "b") > uid(&b, "a"),
            "same second, seen later: higher slot"
        );
        assert!(uid(&b, "c") > uid(&b, "b"));
        assert_eq!(uid(&b, "c") - uid(&a, "a"), 5 * 4);
    }

    #[test]
    fn well_known_folders() {
        assert_eq!(distinguished_folder("INBOX"), Some("inbox"));
        assert_eq!(distinguished_folder("JunkEmail"), Some("junkemail"));
        assert_eq!(distinguished_folder("Projects"), None);
    }
}

/// Fuzzing the parsers of everything a server sends: errors, never panics.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const FIND: &str = r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:FindItemResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:RootFolder IndexedPagingOffset="1" TotalItemsInView="1" IncludesLastItemInRange="true"><t:Items><t:Message><t:ItemId Id="A&amp;1" ChangeKey="C"/><t:Subject>Hi &lt;there&gt;</t:Subject><t:DateTimeReceived>2026-11-28T10:00:00Z</t:DateTimeReceived><t:From><t:Mailbox><t:Name>Bob</t:Name><t:EmailAddress>bob@example.com</t:EmailAddress></t:Mailbox></t:From><t:IsRead>false</t:IsRead></t:Message></t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse></s:Body></s:Envelope>"#;
    const STREAM: &str = r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><m:GetStreamingEventsResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:GetStreamingEventsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notifications><m:Notification><t:SubscriptionId>S</t:SubscriptionId><t:NewMailEvent><t:TimeStamp>2026-11-28T10:00:00Z</t:TimeStamp><t:ItemId Id="I" ChangeKey="C"/><t:ParentFolderId Id="P" ChangeKey="C"/></t:NewMailEvent></m:Notification></m:Notifications></m:GetStreamingEventsResponseMessage></m:ResponseMessages></m:GetStreamingEventsResponse></Body></Envelope>"#;

    /// Everything the client does with an answer's bytes.
    fn digest(bytes: &[u8]) {
        if let Ok(root) = xml::parse(bytes)
            && let Ok(op) = xml::body(&root)
            && let Ok(messages) = xml::messages(op)
        {
            for m in messages {
                if let Ok(m) = xml::check(m)
                    && let Some(items) = m.child("RootFolder").and_then(|r| r.child("Items"))
                {
                    UidMap::default().assign(xml::items(items));
                }
            }
        }
        let mut changed = false;
        let _ = stream_envelope(bytes, "h:1", &mut changed);
        let _ = xml::envelope_end(bytes);
    }

    /// A chunked body fed to the HTTP reader.
    fn read_http(bytes: Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, mut server) = tokio::io::duplex(1 << 20);
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = server.write_all(&bytes).await;
            });
            let mut conn = Conn::new(Box::new(client));
            if let Ok(Ok(head)) = timeout(Duration::from_secs(1), conn.read_head()).await {
                if head.chunked() {
                    for _ in 0..64 {
                        match timeout(Duration::from_secs(1), conn.read_chunk(1 << 16)).await {
                            Ok(Ok(Some(c))) => digest(&c),
                            _ => break,
                        }
                    }
                } else {
                    let _ = timeout(Duration::from_secs(1), conn.read_body(&head, 1 << 16)).await;
                }
            }
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            digest(&bytes);
        }

        #[test]
        fn mangled_answers_are_errors_not_panics(
            which in 0..2usize,
            cut in 0..1200usize,
            flips in proptest::collection::vec((0..1200usize, any::<u8>()), 0..8),
        ) {
            let mut bytes = [FIND, STREAM][which].as_bytes().to_vec();
            for (at, b) in flips {
                let n = bytes.len();
                bytes[at % n] = b;
            }
            bytes.truncate(cut.max(1).min(bytes.len()));
            digest(&bytes);
        }

        #[test]
        fn arbitrary_http_is_errors_not_panics(
            head in "HTTP/1\\.1 [0-9]{3} [A-Za-z ]{0,10}\r\n(Transfer-Encoding: chunked\r\n|Content-Length: [0-9]{1,4}\r\n)?\r\n",
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut bytes = head.into_bytes();
            bytes.extend(body);
            read_http(bytes);
        }

        #[test]
        fn arbitrary_ntlm_challenges_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            use base64::Engine as _;
            let mut msg = b"NTLMSSP\0\x02\0\0\0".to_vec();
            msg.extend(bytes);
            let token = base64::engine::general_purpose::STANDARD.encode(msg);
            let _ = ntlm::authenticate(&token, "u", &Secret::new("p".into()));
        }
    }

    #[test]
    fn the_seeds_parse() {
        let root = xml::parse(FIND.as_bytes()).unwrap();
        let m = xml::check(xml::messages(xml::body(&root).unwrap()).unwrap()[0]).unwrap();
        let items = xml::items(m.child("RootFolder").unwrap().child("Items").unwrap());
        assert_eq!(items[0].id, "A&1");
        assert_eq!(items[0].subject, "Hi <there>");
        assert_eq!(items[0].from, "Bob <bob@example.com>");
        let mut changed = false;
        assert!(
            stream_envelope(STREAM.as_bytes(), "h:1", &mut changed)
                .unwrap()
                .is_none()
        );
        assert!(changed);
    }
}
