//! IMAP over `async-imap`: connect (TCP with a deadline, implicit TLS or STARTTLS, verified
//! certificates), LOGIN or SASL XOAUTH2/OAUTHBEARER (see [`crate::oauth`]), read-only `EXAMINE`, the last-item query `UID FETCH *`, and IDLE that can
//! be interrupted cleanly with DONE.
//!
//! The agent never changes the mailbox: the folder is opened with EXAMINE, and nothing but
//! `UID`, `FLAGS`, `ENVELOPE` and `INTERNALDATE` is ever fetched (no body, so not even a PEEK
//! is needed).

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use async_imap::imap_proto::{MailboxDatum, Response, Status};
use async_imap::types::{Fetch, Flag, UnsolicitedResponse};
use async_trait::async_trait;
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::{Connector, FolderInfo, Probe, ProtoError, Session, Wake};
use crate::config::{Account, AuthMethod, KeepAlive, Security};
use crate::event::{ErrorKind, MailItem};
use crate::secret;

/// Everything the last-item query and catch-up ask for. No body: nothing can be marked read.
pub const FETCH_ITEMS: &str = "(UID FLAGS ENVELOPE INTERNALDATE)";
/// The keep-alive asks only for the newest UID: ~40 bytes of answer instead of a whole envelope.
pub const KEEPALIVE_ITEMS: &str = "(UID)";

/// Any byte stream an IMAP session can run over (TCP, TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}

type Stream = Box<dyn Io>;
type ImapSession = async_imap::Session<Stream>;

pub struct ImapConnector {
    account: Account,
    keepalive: KeepAlive,
    /// A password typed into Settings but not stored yet ("Test connection").
    password: Option<secret::Secret>,
    /// Access tokens for `auth = "xoauth2"`/`"oauthbearer"`, shared by the account's folders.
    tokens: crate::oauth::TokenSource,
    tls: std::sync::Mutex<Option<native_tls::TlsConnector>>,
}

impl ImapConnector {
    pub fn new(account: Account, keepalive: KeepAlive) -> Self {
        ImapConnector {
            tokens: crate::oauth::TokenSource::new(account.clone()),
            account,
            keepalive,
            password: None,
            tls: std::sync::Mutex::new(None),
        }
    }

    /// Use this password instead of the account's password source.
    pub fn with_password(mut self, password: secret::Secret) -> Self {
        self.password = Some(password);
        self
    }

    fn rt(&self) -> Duration {
        self.keepalive.response_timeout()
    }

    fn endpoint(&self) -> String {
        format!("{}:{}", self.account.host, self.account.effective_port())
    }

    /// A step with the response deadline; a missed deadline names the step.
    async fn step<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, ProtoError>>,
    ) -> Result<T, ProtoError> {
        timeout(self.rt(), fut).await.unwrap_or_else(|_| {
            Err(ProtoError::new(
                ErrorKind::Timeout,
                format!(
                    "{}: no answer within {} s while {what}",
                    self.endpoint(),
                    self.rt().as_secs()
                ),
            ))
        })
    }

    async fn tcp(&self, probe: bool) -> Result<TcpStream, ProtoError> {
        let tcp = super::connect_tcp(
            &self.account.host,
            self.account.effective_port(),
            self.rt(),
            "",
        )
        .await?;
        if probe {
            // The probe measures how long the path keeps a *silent* flow: no TCP
            // keep-alive probes (off is the socket default; say it anyway).
            let _ = tcp.set_nodelay(true);
            let _ = socket2::SockRef::from(&tcp).set_keepalive(false);
        } else {
            self.tune(&tcp);
        }
        Ok(tcp)
    }

    /// TCP keep-alive as a second line of defence: the kernel probes a connection that has been
    /// silent for about one keep-alive interval, so a dead peer is found even while IDLE.
    ///
    /// With keep-alive switched off, the probes start only after the 29-minute re-IDLE, so that
    /// "off" really sends nothing a gateway would count as activity (the socket keeps the value
    /// it was opened with until it reconnects).
    ///
    /// With adaptive keep-alive the interval grows beyond `interval_secs` once learned, so the
    /// probes start only after the adaptive maximum: starting them at the floor would refresh the
    /// gateway's mapping behind the learned interval's back, sending the traffic the learning is
    /// meant to save and hiding a learned value that has become too long.
    fn tune(&self, tcp: &TcpStream) {
        let _ = tcp.set_nodelay(true);
        let quiet = if !self.keepalive.enabled {
            crate::engine::IDLE_REISSUE
        } else if self.keepalive.adaptive {
            self.keepalive.adaptive_max()
        } else {
            self.keepalive.interval()
        };
        let params = socket2::TcpKeepalive::new()
            .with_time(quiet + Duration::from_secs(5))
            .with_interval(Duration::from_secs(10));
        #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
        let params = params.with_retries(3);
        if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&params) {
            tracing::debug!("cannot set TCP keep-alive: {e}");
        }
    }

    /// The account's TLS settings, built once: loading the system's trust store for every
    /// connection of every folder would cost memory and CPU for nothing.
    fn tls_connector(&self) -> Result<tokio_native_tls::TlsConnector, ProtoError> {
        let mut cached = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref() {
            return Ok(tokio_native_tls::TlsConnector::from(c.clone()));
        }
        let connector = self.build_tls_connector()?;
        *cached = Some(connector.clone());
        Ok(tokio_native_tls::TlsConnector::from(connector))
    }

    fn build_tls_connector(&self) -> Result<native_tls::TlsConnector, ProtoError> {
        let mut builder = native_tls::TlsConnector::builder();
        builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
        if let Some(path) = &self.account.ca_file {
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
        builder
            .build()
            .map_err(|e| ProtoError::new(ErrorKind::Tls, format!("cannot set up TLS: {e}")))
    }

    async fn tls(&self, tcp: TcpStream) -> Result<Stream, ProtoError> {
        let connector = self.tls_connector()?;
        let host = self.account.host.clone();
        let stream = self
            .step("negotiating TLS", async {
                connector
                    .connect(&host, tcp)
                    .await
                    .map_err(|e| self.tls_error(e))
            })
            .await?;
        Ok(Box::new(stream))
    }

    fn tls_error(&self, e: native_tls::Error) -> ProtoError {
        let text = e.to_string();
        let advice = if text.contains("certificate verify failed") || text.contains("certificate") {
            if self.account.ca_file.is_some() {
                format!(
                    "the certificate of {} is not trusted, not even with ca_file, or does not name this host",
                    self.account.host
                )
            } else {
                format!(
                    "the certificate of {} is not trusted; if the server uses a private certificate \
                     authority, set ca_file to its certificate",
                    self.account.host
                )
            }
        } else if text.contains("wrong version number") || text.contains("packet length too long") {
            format!(
                "{} does not speak TLS on port {}; try security = \"starttls\" with port 143",
                self.account.host,
                self.account.effective_port()
            )
        } else {
            format!("TLS with {} failed", self.endpoint())
        };
        ProtoError::new(ErrorKind::Tls, format!("{advice} ({})", text.trim()))
    }

    /// Connect and authenticate; returns the session and whether the server can IDLE.
    pub async fn login(&self) -> Result<(ImapSession, bool), ProtoError> {
        self.login_as(false).await
    }

    async fn login_as(&self, probe: bool) -> Result<(ImapSession, bool), ProtoError> {
        // The secret first (a missing one needs no connection): the password, or an access
        // token that is valid for at least a minute (refreshed here, on every connect, so a
        // token that expired during a long IDLE or a suspend never breaks a reconnect).
        let secret = match &self.password {
            Some(p) => p.clone(),
            None if self.account.auth.is_oauth() => self.tokens.token(None).await?,
            None => secret::password(&self.account).await?,
        };
        let tcp = self.tcp(probe).await?;
        let stream: Stream = match self.account.security {
            Security::Tls => self.tls(tcp).await?,
            Security::Starttls => {
                let mut client = async_imap::Client::new(tcp);
                self.greeting(&mut client).await?;
                self.step("asking for STARTTLS", async {
                    client.run_command_and_check_ok("STARTTLS", None).await.map_err(|e| {
                        ProtoError::new(
                            ErrorKind::Tls,
                            format!("{} refused STARTTLS ({e}); use security = \"tls\" or check the port", self.endpoint()),
                        )
                    })
                })
                .await?;
                self.tls(client.into_inner()).await?
            }
            Security::Plain => {
                if first_plain_warning(&self.account.name, &self.endpoint()) {
                    tracing::warn!(
                        account = %self.account.name,
                        "security = \"plain\": the password and mail travel unencrypted to {}",
                        self.endpoint()
                    );
                }
                Box::new(tcp)
            }
        };
        let mut client = async_imap::Client::new(stream);
        if self.account.security != Security::Starttls {
            self.greeting(&mut client).await?;
        }
        let user = self.account.username.as_str();
        let mut session = if self.account.auth.is_oauth() {
            self.authenticate(client, secret).await?
        } else {
            let password = secret;
            self.step("logging in", async {
                client.login(user, password.expose()).await.map_err(|(e, _)| match e {
                    async_imap::error::Error::No(text) => ProtoError::new(
                        ErrorKind::Auth,
                        format!(
                            "{} rejected the login of {user:?} ({}); check the user name and the password",
                            self.account.host,
                            text.trim()
                        ),
                    ),
                    other => self.imap_error(other, "logging in"),
                })
            })
            .await?
        };
        let caps = self
            .step("asking for capabilities", async {
                session
                    .capabilities()
                    .await
                    .map_err(|e| self.imap_error(e, "asking for capabilities"))
            })
            .await?;
        Ok((session, caps.has_str("IDLE")))
    }

    /// SASL XOAUTH2 or OAUTHBEARER with `token`; when the server refuses it, once more with a
    /// freshly obtained token (refreshed, or `password_command` run again) on the same connection.
    async fn authenticate(
        &self,
        mut client: async_imap::Client<Stream>,
        mut token: secret::Secret,
    ) -> Result<ImapSession, ProtoError> {
        let user = self.account.username.as_str();
        let (mechanism, on_error) = crate::oauth::mechanism(self.account.auth);
        for attempt in 0..2 {
            let response = match self.account.auth {
                AuthMethod::Oauthbearer => crate::oauth::oauthbearer(
                    user,
                    &self.account.host,
                    self.account.effective_port(),
                    &token,
                ),
                _ => crate::oauth::xoauth2(user, &token),
            };
            let sasl = Sasl {
                first: Some(response),
                on_error,
            };
            let result = self
                .step("authenticating", async {
                    Ok(client.authenticate(mechanism, sasl).await)
                })
                .await?;
            match result {
                Ok(session) => {
                    tracing::debug!(account = %self.account.name, mechanism, "authenticated");
                    return Ok(session);
                }
                Err((async_imap::error::Error::No(text), back))
                    if attempt == 0 && self.password.is_none() =>
                {
                    tracing::info!(
                        account = %self.account.name,
                        mechanism,
                        "the server refused the access token ({}); getting a fresh one",
                        clip(text.trim())
                    );
                    client = back;
                    token = self.tokens.token(Some(&token)).await?;
                }
                Err((async_imap::error::Error::No(text), _)) => {
                    return Err(ProtoError::new(
                        ErrorKind::Auth,
                        format!(
                            "{} rejected the OAuth2 token of {user:?} ({}); check the user name, \
                             and that the token grants IMAP access ({mechanism})",
                            self.account.host,
                            text.trim()
                        ),
                    ));
                }
                Err((async_imap::error::Error::Bad(text), _)) => {
                    return Err(ProtoError::new(
                        ErrorKind::Auth,
                        format!(
                            "{} does not accept AUTHENTICATE {mechanism} ({}); try auth = \"{}\"",
                            self.endpoint(),
                            text.trim(),
                            if mechanism == "XOAUTH2" {
                                "oauthbearer"
                            } else {
                                "xoauth2"
                            }
                        ),
                    ));
                }
                Err((other, _)) => return Err(self.imap_error(other, "authenticating")),
            }
        }
        unreachable!("the second attempt returns")
    }

    async fn greeting<T: Io>(&self, client: &mut async_imap::Client<T>) -> Result<(), ProtoError> {
        let endpoint = self.endpoint();
        self.step("waiting for the server greeting", async {
            match client.read_response().await {
                Ok(Some(resp)) => match resp.parsed() {
                    Response::Data {
                        status: Status::Ok | Status::PreAuth,
                        ..
                    } => Ok(()),
                    Response::Data {
                        status: Status::Bye,
                        outcome,
                    } => Err(ProtoError::new(
                        ErrorKind::Disconnected,
                        format!(
                            "{endpoint} refused the connection: {}",
                            outcome.information.as_deref().unwrap_or("BYE")
                        ),
                    )),
                    other => Err(ProtoError::new(
                        ErrorKind::Protocol,
                        format!(
                            "{endpoint} sent an unexpected greeting: {}",
                            clip(&format!("{other:?}"))
                        ),
                    )),
                },
                Ok(None) => Err(ProtoError::new(
                    ErrorKind::Disconnected,
                    format!("{endpoint} closed the connection before greeting"),
                )),
                Err(e) => Err(ProtoError::new(
                    ErrorKind::Protocol,
                    format!("{endpoint} does not speak IMAP: {}", clip(&e.to_string())),
                )),
            }
        })
        .await
    }

    fn imap_error(&self, e: async_imap::error::Error, what: &str) -> ProtoError {
        imap_error(&self.endpoint(), e, what)
    }
}

fn imap_error(endpoint: &str, e: async_imap::error::Error, what: &str) -> ProtoError {
    use async_imap::error::Error;
    let (kind, detail) = match e {
        Error::Io(io) => match io.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => {
                (ErrorKind::Disconnected, format!("connection lost ({io})"))
            }
            std::io::ErrorKind::Other | std::io::ErrorKind::InvalidData => (
                ErrorKind::Protocol,
                format!("malformed reply: {}", clip(&io.to_string())),
            ),
            _ => (ErrorKind::Disconnected, io.to_string()),
        },
        Error::ConnectionLost => (
            ErrorKind::Disconnected,
            "the server closed the connection".into(),
        ),
        Error::No(text) => (
            ErrorKind::Protocol,
            format!("the server refused: {}", text.trim()),
        ),
        Error::Bad(text) => (
            ErrorKind::Protocol,
            format!("the server rejected the command: {}", text.trim()),
        ),
        other => (
            ErrorKind::Protocol,
            format!("malformed reply: {}", clip(&other.to_string())),
        ),
    };
    ProtoError::new(kind, format!("{endpoint}: {detail} while {what}"))
}

/// Whether this is the first time this process warns about `security = "plain"` for this
/// account (name and server): the warning is given once per account, not on every connection
/// and not again when a reload restarts the account's sessions with a new connector.
fn first_plain_warning(account: &str, endpoint: &str) -> bool {
    static WARNED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());
    WARNED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((account.to_owned(), endpoint.to_owned()))
}

/// The client side of a one-step SASL exchange: the initial response, then (if the server
/// answers with an error challenge) the mechanism's acknowledgement, so that it sends its NO.
struct Sasl {
    first: Option<secret::Secret>,
    on_error: &'static [u8],
}

impl async_imap::Authenticator for Sasl {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        match self.first.take() {
            Some(response) => response.expose().as_bytes().to_vec(),
            None => self.on_error.to_vec(),
        }
    }
}

/// Keep messages that quote server output short.
fn clip(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

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

#[async_trait]
impl Connector for ImapConnector {
    async fn open(&self, folder: &str) -> Result<(Box<dyn Session>, FolderInfo), ProtoError> {
        let (mut session, can_push) = self.login().await?;
        let mailbox = self
            .step("opening the folder", async {
                session.examine(folder).await.map_err(|e| match e {
                    async_imap::error::Error::No(text) => ProtoError::new(
                        ErrorKind::Folder,
                        format!(
                            "cannot open folder {folder:?} on {}: {}",
                            self.account.host,
                            text.trim()
                        ),
                    ),
                    other => self.imap_error(other, "opening the folder"),
                })
            })
            .await?;
        let info = FolderInfo {
            uid_validity: mailbox.uid_validity.unwrap_or(0),
            exists: mailbox.exists,
            can_push,
        };
        if !can_push {
            tracing::info!(account = %self.account.name, "server does not offer IDLE: polling every interval");
        }
        let mut imap = Imap {
            session: Some(session),
            exists: mailbox.exists,
            grew: false,
            endpoint: self.endpoint(),
            response_timeout: self.rt(),
        };
        imap.drain();
        Ok((Box::new(imap), info))
    }

    async fn open_probe(&self) -> Result<Box<dyn Probe>, ProtoError> {
        let (session, _) = self.login_as(true).await?;
        Ok(Box::new(ImapProbe {
            session,
            endpoint: self.endpoint(),
        }))
    }

    async fn open_idle_probe(&self, folder: &str) -> Result<Box<dyn Probe>, ProtoError> {
        let (mut session, can_push) = self.login_as(true).await?;
        if !can_push {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!("{} does not offer IDLE", self.endpoint()),
            ));
        }
        self.step("opening the folder", async {
            session
                .examine(folder)
                .await
                .map_err(|e| self.imap_error(e, "opening the folder"))
        })
        .await?;
        // Forget what opening the folder reported: only what arrives during IDLE counts.
        while session.unsolicited_responses.try_recv().is_ok() {}
        let mut handle = session.idle();
        self.step("starting IDLE", async {
            handle
                .init()
                .await
                .map_err(|e| self.imap_error(e, "starting IDLE"))
        })
        .await?;
        Ok(Box::new(ImapIdleProbe {
            handle: Some(handle),
            session: None,
            endpoint: self.endpoint(),
        }))
    }
}

/// A probe connection waiting in IDLE; what the server sends meanwhile stays unread in the
/// socket (the kernel acknowledges it, which is all the path needs to see).
struct ImapIdleProbe {
    handle: Option<async_imap::extensions::idle::Handle<Stream>>,
    session: Option<ImapSession>,
    endpoint: String,
}

#[async_trait]
impl Probe for ImapIdleProbe {
    /// `DONE`, answered by the tagged OK of the IDLE. Fails as well when the server sent
    /// anything but keep-alives (`* OK …`) meanwhile: a new message's `EXISTS` also refreshes
    /// the mapping, and must not pass for the server's keep-alives.
    async fn ping(&mut self) -> Result<(), ProtoError> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        let session = handle
            .done()
            .await
            .map_err(|e| imap_error(&self.endpoint, e, "ending IDLE on the probe connection"))?;
        let mut other = false;
        while let Ok(u) = session.unsolicited_responses.try_recv() {
            let keepalive = matches!(
                &u,
                UnsolicitedResponse::Other(data)
                    if matches!(data.parsed(), Response::Data { status: Status::Ok, .. })
            );
            other |= !keepalive;
        }
        self.session = Some(session);
        if other {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{}: the folder changed during the measurement in IDLE; not counted",
                    self.endpoint
                ),
            ));
        }
        Ok(())
    }

    async fn close(mut self: Box<Self>) {
        if let Some(mut session) = self.session.take() {
            let _ = session.logout().await;
        }
    }
}

/// A logged-in connection held silent (no IDLE, no TCP keep-alive) by the adaptive search.
/// Nothing is selected: the server has nothing to push on it.
struct ImapProbe {
    session: ImapSession,
    endpoint: String,
}

#[async_trait]
impl Probe for ImapProbe {
    async fn ping(&mut self) -> Result<(), ProtoError> {
        let r = self.session.noop().await;
        r.map_err(|e| imap_error(&self.endpoint, e, "sending NOOP on the probe connection"))
    }

    async fn close(mut self: Box<Self>) {
        let _ = self.session.logout().await;
    }
}

/// An open, read-only folder.
struct Imap {
    /// `None` only while IDLE holds it, or after IDLE failed half-way.
    session: Option<ImapSession>,
    /// Messages in the folder, tracked from EXISTS/EXPUNGE (decides NOOP vs. FETCH * when empty).
    exists: u32,
    /// The folder grew (EXISTS) since the last `items_after`: reported by the next `wait` at
    /// once. An EXISTS that arrives between the keep-alive query and IDLE would otherwise not
    /// be repeated in IDLE, and the message would wait for the next keep-alive.
    grew: bool,
    endpoint: String,
    response_timeout: Duration,
}

impl Imap {
    fn session(&mut self) -> Result<&mut ImapSession, ProtoError> {
        self.session.as_mut().ok_or_else(|| {
            ProtoError::new(
                ErrorKind::Disconnected,
                format!("{}: the session was lost", self.endpoint),
            )
        })
    }

    fn err(&self, e: async_imap::error::Error, what: &str) -> ProtoError {
        imap_error(&self.endpoint, e, what)
    }

    /// Whether the folder is empty. `UID FETCH *` is an error on an empty folder, so then a
    /// NOOP is the query: the same round trip, and it reports messages that just arrived.
    async fn is_empty(&mut self) -> Result<bool, ProtoError> {
        if self.exists > 0 {
            return Ok(false);
        }
        let session = self.session()?;
        let r = session.noop().await;
        r.map_err(|e| self.err(e, "sending NOOP"))?;
        self.drain();
        Ok(self.exists == 0)
    }

    /// Apply the unsolicited EXISTS/EXPUNGE the server sent along with other answers.
    fn drain(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while let Ok(u) = session.unsolicited_responses.try_recv() {
            match u {
                UnsolicitedResponse::Exists(n) => {
                    self.grew |= n > self.exists;
                    self.exists = n;
                }
                UnsolicitedResponse::Expunge(_) => self.exists = self.exists.saturating_sub(1),
                _ => {}
            }
        }
    }

    /// `UID FETCH set items`. With `(UID)` only, the items carry just their UID.
    async fn fetch(&mut self, set: &str, items: &str) -> Result<Vec<MailItem>, ProtoError> {
        let session = self.session()?;
        let result = async {
            let stream = session.uid_fetch(set, items).await?;
            stream.try_collect::<Vec<Fetch>>().await
        }
        .await;
        let fetches = result.map_err(|e| self.err(e, "fetching"))?;
        self.drain();
        Ok(fetches.iter().filter_map(mail_item).collect())
    }
}

#[async_trait]
impl Session for Imap {
    async fn last_item(&mut self) -> Result<Option<MailItem>, ProtoError> {
        if self.is_empty().await? {
            return Ok(None);
        }
        let items = self.fetch("*", FETCH_ITEMS).await?;
        Ok(items.into_iter().max_by_key(|i| i.uid))
    }

    async fn newest_uid(&mut self) -> Result<Option<u32>, ProtoError> {
        if self.is_empty().await? {
            return Ok(None);
        }
        let items = self.fetch("*", KEEPALIVE_ITEMS).await?;
        Ok(items.iter().map(|i| i.uid).max())
    }

    async fn items_after(&mut self, uid: u32) -> Result<Vec<MailItem>, ProtoError> {
        // This fetch covers everything up to now; EXISTS arriving with it sets `grew` again.
        self.grew = false;
        if self.exists == 0 {
            return Ok(Vec::new());
        }
        let mut items = self
            .fetch(&format!("{}:*", uid.saturating_add(1)), FETCH_ITEMS)
            .await?;
        // `n:*` also returns the last message when n is above every UID.
        items.retain(|i| i.uid > uid);
        items.sort_by_key(|i| i.uid);
        Ok(items)
    }

    async fn count_after(&mut self, uid: u32) -> Result<u32, ProtoError> {
        if self.exists == 0 {
            return Ok(0);
        }
        let session = self.session()?;
        let r = session
            .uid_search(format!("UID {}:*", uid.saturating_add(1)))
            .await;
        let uids = r.map_err(|e| self.err(e, "searching new messages"))?;
        self.drain();
        Ok(uids.into_iter().filter(|u| *u > uid).count() as u32)
    }

    async fn wait(&mut self, max: Duration, stop: &CancellationToken) -> Result<Wake, ProtoError> {
        if std::mem::take(&mut self.grew) {
            return Ok(Wake::Changed);
        }
        let rt = self.response_timeout;
        let session = self.session.take().ok_or_else(|| {
            ProtoError::new(
                ErrorKind::Disconnected,
                format!("{}: the session was lost", self.endpoint),
            )
        })?;
        let mut handle = session.idle();
        match timeout(rt, handle.init()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.err(e, "starting IDLE")),
            Err(_) => return Err(dead(&self.endpoint, rt, "starting IDLE")),
        }
        let mut ended_by = None;
        let result = {
            // async-imap's own timeout restarts on every "* OK Still here"; ours must not.
            let (idle, interrupt) = handle.wait_with_timeout(max + Duration::from_secs(3600));
            let mut interrupt = Some(interrupt);
            tokio::pin!(idle);
            let deadline = sleep(max);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = &mut idle => break r,
                    _ = &mut deadline, if interrupt.is_some() => {
                        ended_by = Some(Wake::Timeout);
                        interrupt = None;
                    }
                    _ = stop.cancelled(), if interrupt.is_some() => {
                        ended_by = Some(Wake::Interrupted);
                        interrupt = None;
                    }
                }
            }
        };
        use async_imap::extensions::idle::IdleResponse;
        let wake = match result {
            Err(e) => return Err(self.err(e, "in IDLE")),
            Ok(IdleResponse::NewData(data)) => match data.parsed() {
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => {
                    return Err(ProtoError::new(
                        ErrorKind::Disconnected,
                        format!(
                            "{}: the server ended the session: {}",
                            self.endpoint,
                            outcome.information.as_deref().unwrap_or("BYE")
                        ),
                    ));
                }
                Response::MailboxData(MailboxDatum::Exists(n)) => {
                    self.exists = *n;
                    Wake::Changed
                }
                Response::Expunge(_) => {
                    self.exists = self.exists.saturating_sub(1);
                    Wake::Changed
                }
                _ => Wake::Changed,
            },
            Ok(IdleResponse::Timeout) => Wake::Timeout,
            // The stream ended without us interrupting it: the connection is gone.
            Ok(IdleResponse::ManualInterrupt) => match ended_by {
                Some(wake) => wake,
                None => {
                    return Err(ProtoError::new(
                        ErrorKind::Disconnected,
                        format!(
                            "{}: the server closed the connection during IDLE",
                            self.endpoint
                        ),
                    ));
                }
            },
        };
        let session = match timeout(rt, handle.done()).await {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => return Err(self.err(e, "ending IDLE")),
            Err(_) => return Err(dead(&self.endpoint, rt, "ending IDLE")),
        };
        self.session = Some(session);
        self.drain();
        Ok(wake)
    }

    async fn close(mut self: Box<Self>) {
        if let Some(mut session) = self.session.take() {
            let _ = session.logout().await;
        }
    }
}

fn dead(endpoint: &str, rt: Duration, what: &str) -> ProtoError {
    ProtoError::new(
        ErrorKind::Timeout,
        format!(
            "{endpoint}: no answer within {} s while {what}: the connection is dead",
            rt.as_secs()
        ),
    )
}

fn mail_item(fetch: &Fetch) -> Option<MailItem> {
    let uid = fetch.uid?;
    let envelope = fetch.envelope();
    let from = envelope
        .and_then(|e| e.from.as_ref())
        .and_then(|list| list.first())
        .map(format_address)
        .unwrap_or_default();
    let subject = envelope
        .and_then(|e| e.subject.as_deref())
        .map(decode_header)
        .unwrap_or_default();
    Some(MailItem {
        uid,
        from,
        subject,
        date: fetch.internal_date(),
        seen: fetch.flags().any(|f| f == Flag::Seen),
    })
}

fn format_address(a: &async_imap::imap_proto::Address<'_>) -> String {
    let text = |b: &Option<std::borrow::Cow<'_, [u8]>>| {
        b.as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let address = match (text(&a.mailbox), text(&a.host)) {
        (Some(m), Some(h)) => format!("{m}@{h}"),
        (Some(m), None) => m,
        _ => String::new(),
    };
    match a.name.as_deref().map(decode_header) {
        Some(name) if !name.is_empty() && !address.is_empty() => format!("{name} <{address}>"),
        Some(name) if !name.is_empty() => name,
        _ => address,
    }
}

/// Decode RFC 2047 encoded words (`=?UTF-8?B?...?=`); raw bytes are taken as UTF-8, lossily.
pub fn decode_header(raw: &[u8]) -> String {
    rfc2047_decoder::decode(raw)
        .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_encoded_words() {
        assert_eq!(decode_header(b"=?UTF-8?B?R3LDvMOfZQ==?="), "Grüße");
        assert_eq!(decode_header(b"=?iso-8859-1?Q?caf=E9?= time"), "café time");
        assert_eq!(decode_header(b"plain"), "plain");
        assert_eq!(decode_header(b"=?bogus"), "=?bogus");
    }

    #[test]
    fn the_plain_warning_is_once_per_account_and_server() {
        assert!(first_plain_warning("unit-a", "h:143"));
        assert!(!first_plain_warning("unit-a", "h:143"));
        assert!(first_plain_warning("unit-b", "h:143"));
        assert!(first_plain_warning("unit-a", "other:143"));
    }

    #[test]
    fn pem_bundle_yields_each_certificate_and_rejects_junk() {
        assert!(pem_certificates(b"hello").is_err());
        assert!(
            pem_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
