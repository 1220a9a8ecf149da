//! IMAP over `async-imap`: connect (TCP with a deadline, implicit TLS or STARTTLS, verified
//! certificates), LOGIN or SASL XOAUTH2/OAUTHBEARER (see [`crate::oauth`]), read-only `EXAMINE`, the last-item query `UID FETCH *`, and IDLE that can
//! be interrupted cleanly with DONE.
//!
//! The agent never changes the mailbox: the folder is opened with EXAMINE, and nothing but
//! `UID`, `FLAGS`, `ENVELOPE` and `INTERNALDATE` is ever fetched (no body, so not even a PEEK
//! is needed).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use async_imap::imap_proto::{MailboxDatum, Response, Status};
use async_imap::types::{Fetch, Flag, UnsolicitedResponse};
use async_trait::async_trait;
use futures::TryStreamExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::{Connector, FolderInfo, Probe, Session, Wake};
use crate::net::tls::Tls;
use crate::net::{self, Bounded, Io, Stream, clip};

mod parse;
mod probe;
mod session;
#[cfg(test)]
mod tests;

use crate::config::{Account, AuthMethod, KeepAlive, Security};
use crate::error::{ErrorKind, ProtoError};
use crate::event::MailItem;
use crate::secret;
use parse::mail_item;
use probe::{ImapIdleProbe, ImapProbe};
use session::Imap;

/// Everything the last-item query and catch-up ask for. No body: nothing can be marked read.
pub const FETCH_ITEMS: &str = "(UID FLAGS ENVELOPE INTERNALDATE)";
/// The keep-alive asks only for the newest UID: ~40 bytes of answer instead of a whole envelope.
pub const KEEPALIVE_ITEMS: &str = "(UID)";

type ImapSession = async_imap::Session<Stream>;

pub struct ImapConnector {
    account: Account,
    keepalive: KeepAlive,
    /// A password typed into Settings but not stored yet ("Test connection").
    password: Option<secret::Secret>,
    /// Access tokens for `auth = "xoauth2"`/`"oauthbearer"`, shared by the account's folders.
    tokens: crate::oauth::TokenSource,
    tls: Tls,
    /// The server answered a pipelined keep-alive cycle with an error: its folders use one
    /// command at a time from then on.
    no_pipelining: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ImapConnector {
    pub fn new(account: Account, keepalive: KeepAlive) -> Self {
        ImapConnector {
            no_pipelining: Default::default(),
            tls: Tls::new(account.ca_file.clone()),
            tokens: crate::oauth::TokenSource::new(account.clone()),
            account,
            keepalive,
            password: None,
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
        let tcp = crate::net::tunnel::connect_tcp(
            &self.account.host,
            self.account.effective_port(),
            self.rt(),
            "",
            self.account.proxy_setting(),
            crate::proxy::Purpose::Imap,
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
            super::IDLE_REISSUE
        } else if self.keepalive.adaptive {
            self.keepalive.adaptive_max()
        } else {
            self.keepalive.interval()
        };
        net::set_tcp_keepalive(tcp, quiet);
    }

    async fn tls<S: Io + 'static>(&self, tcp: S) -> Result<Stream, ProtoError> {
        let not_tls = format!(
            "try security = \"starttls\" with port 143 (port {} now)",
            self.account.effective_port()
        );
        let stream = self
            .tls
            .connect(
                &self.account.host,
                tcp,
                self.rt(),
                &self.endpoint(),
                &not_tls,
            )
            .await?;
        Ok(stream)
    }

    /// Connect and authenticate; returns the session and whether the server can IDLE.
    pub(crate) async fn login(&self) -> Result<(ImapSession, bool), ProtoError> {
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
        if !self.account.auth.is_oauth() {
            check_credentials(&self.account.username, &secret)?;
        }
        let tcp = net::LazyAck::new(self.tcp(probe).await?, !probe);
        let stream: Stream = match self.account.security {
            Security::Tls => self.tls(tcp).await?,
            Security::Starttls => {
                // Bounded before TLS too: whoever is on the path can answer in clear.
                let mut client = async_imap::Client::new(Bounded::new(tcp));
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
                self.tls(client.into_inner().into_inner()).await?
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
        // Every byte from the server passes the bounded framing before async-imap's codec,
        // which would otherwise allocate whatever literal size the server announces.
        let stream: Stream = Box::new(Bounded::new(stream));
        let mut client = async_imap::Client::new(stream);
        if self.account.security != Security::Starttls {
            self.greeting(&mut client).await?;
        }
        let mut session = if self.account.auth.is_oauth() {
            self.authenticate(client, secret).await?
        } else {
            self.login_password(client, secret).await?
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

    /// Log in with the password: `AUTHENTICATE PLAIN` (RFC 4616: the credentials travel
    /// base64-encoded as UTF-8, whatever characters they hold), and, only when the server
    /// refuses the mechanism itself — before any credentials were sent — `LOGIN`.
    async fn login_password(
        &self,
        client: async_imap::Client<Stream>,
        password: secret::Secret,
    ) -> Result<ImapSession, ProtoError> {
        let user = self.account.username.as_str();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let plain = Plain {
            response: Some(secret::Secret::new(format!(
                "\0{user}\0{}",
                password.expose()
            ))),
            sent: sent.clone(),
        };
        let rejected = |text: &str| {
            ProtoError::new(
                ErrorKind::Auth,
                format!(
                    "{} rejected the login of {user:?} ({}); check the user name and the password",
                    self.account.host,
                    server_words(text)
                ),
            )
        };
        let result = self
            .step("logging in", async {
                Ok(client.authenticate("PLAIN", plain).await)
            })
            .await?;
        let client = match result {
            Ok(session) => return Ok(session),
            Err((async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text), _))
                if sent.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                return Err(rejected(&text));
            }
            // PLAIN not offered: nothing was sent yet.
            Err((async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_), client)) => {
                client
            }
            Err((other, _)) => return Err(self.imap_error(other, "logging in")),
        };
        tracing::debug!(account = %self.account.name, "AUTHENTICATE PLAIN refused: LOGIN");
        self.step("logging in", async {
            client
                .login(user, password.expose())
                .await
                .map_err(|(e, _)| match e {
                    async_imap::error::Error::No(text) => rejected(&text),
                    other => self.imap_error(other, "logging in"),
                })
        })
        .await
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

    /// Log in and open `folder` read-only; a name the server does not know is looked up in its
    /// folder list (written with '/' where the server separates with '.', or the other way
    /// round, it is opened under the server's name; otherwise the error suggests one).
    async fn open_folder(
        &self,
        folder: &str,
    ) -> Result<(Box<dyn Session>, FolderInfo), ProtoError> {
        let (mut session, can_push) = self.login().await?;
        let mut refused = match self.examine(&mut session, folder).await? {
            Ok(mailbox) => return Ok(self.opened(session, mailbox, can_push)),
            Err(text) => text,
        };
        // Not there under that name: ask the server which folders it has.
        let names = self
            .step(
                "listing the folders",
                list_folders(&mut session, &self.endpoint()),
            )
            .await?;
        let mut name = folder.to_owned();
        if let Some(real) = resolve_folder(folder, &names) {
            if real != folder {
                tracing::info!(
                    account = %self.account.name,
                    "folder {folder:?} is called {real:?} on {}", self.account.host
                );
                match self.examine(&mut session, &real).await? {
                    Ok(mailbox) => return Ok(self.opened(session, mailbox, can_push)),
                    Err(text) => refused = text,
                }
                name = real;
            }
            // It exists but cannot be opened: perhaps for now ([INUSE], [UNAVAILABLE]).
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "cannot open folder {name:?} on {}: {}",
                    self.account.host,
                    server_words(&refused)
                ),
            ));
        }
        Err(ProtoError::new(
            ErrorKind::Folder,
            format!(
                "folder {folder:?} does not exist on {} ({}); {}",
                self.account.host,
                server_words(&refused),
                folder_hint(folder, &names)
            ),
        ))
    }

    /// `EXAMINE`: the folder, or the server's refusal (`NO`); other failures are errors.
    async fn examine(
        &self,
        session: &mut ImapSession,
        folder: &str,
    ) -> Result<Result<async_imap::types::Mailbox, String>, ProtoError> {
        self.step("opening the folder", async {
            match session.examine(folder).await {
                Ok(mailbox) => Ok(Ok(mailbox)),
                Err(async_imap::error::Error::No(text)) => Ok(Err(text)),
                Err(other) => Err(self.imap_error(other, "opening the folder")),
            }
        })
        .await
    }

    fn opened(
        &self,
        session: ImapSession,
        mailbox: async_imap::types::Mailbox,
        can_push: bool,
    ) -> (Box<dyn Session>, FolderInfo) {
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
            catching_up_to: None,
            bye: None,
            idling: None,
            prefetched: None,
            no_pipelining: self.no_pipelining.clone(),
        };
        imap.drain();
        (Box::new(imap), info)
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
            std::io::ErrorKind::Other | std::io::ErrorKind::InvalidData => {
                let text = io.to_string();
                // async-imap's parser error is its debug output, then the bytes it could not
                // parse (escaped): only the bytes say something to a user.
                let detail = match text.split_once(" during parsing of ") {
                    Some((_, bytes)) => {
                        format!(
                            "the server sent something that is not IMAP: {}",
                            clip(bytes)
                        )
                    }
                    None => format!("malformed reply: {}", clip(&text)),
                };
                (ErrorKind::Protocol, detail)
            }
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

/// The server's folders: each name with its hierarchy delimiter. Read one by one, so a server
/// with thousands of folders costs their names, not a buffered response each.
async fn list_folders(
    session: &mut ImapSession,
    endpoint: &str,
) -> Result<Vec<(String, Option<String>)>, ProtoError> {
    let mut names = Vec::new();
    let mut stream = session
        .list(Some(""), Some("*"))
        .await
        .map_err(|e| imap_error(endpoint, e, "listing the folders"))?;
    while let Some(name) = stream
        .try_next()
        .await
        .map_err(|e| imap_error(endpoint, e, "listing the folders"))?
    {
        if names.len() < 10_000 {
            names.push((name.name().to_owned(), name.delimiter().map(str::to_owned)));
        }
    }
    Ok(names)
}

/// `name` with every hierarchy separator ('/' or the server's `delimiter`) made one and the
/// same, and `INBOX` (case-insensitive in IMAP) upper-cased.
fn folder_key(name: &str, delimiter: Option<&str>) -> Vec<String> {
    let mut parts: Vec<String> = vec![name.to_owned()];
    for sep in ["/"].into_iter().chain(delimiter) {
        if sep.is_empty() {
            continue;
        }
        parts = parts
            .iter()
            .flat_map(|p| p.split(sep).map(str::to_owned).collect::<Vec<_>>())
            .collect();
    }
    if let Some(first) = parts.first_mut()
        && first.eq_ignore_ascii_case("INBOX")
    {
        *first = "INBOX".into();
    }
    parts
}

/// The server's name for `folder` when they differ only in the separator written ('/' for
/// the server's '.', or the other way round) or the case of INBOX.
fn resolve_folder(folder: &str, names: &[(String, Option<String>)]) -> Option<String> {
    names
        .iter()
        .find(|(name, delim)| {
            folder_key(name, delim.as_deref()) == folder_key(folder, delim.as_deref())
        })
        .map(|(name, _)| name.clone())
}

/// What to tell the user about a folder that does not exist: a folder whose name ends the
/// same way ("did you mean INBOX.Work?"), or one differing only in case, and the separator.
fn folder_hint(folder: &str, names: &[(String, Option<String>)]) -> String {
    let delim = names.iter().find_map(|(_, d)| d.clone());
    let want = folder_key(folder, delim.as_deref());
    let lower = |k: &[String]| k.iter().map(|p| p.to_lowercase()).collect::<Vec<_>>();
    let close: Vec<&str> = names
        .iter()
        .filter(|(name, d)| {
            let key = folder_key(name, d.as_deref());
            key.ends_with(&want) || lower(&key).ends_with(&lower(&want))
        })
        .map(|(name, _)| name.as_str())
        .take(3)
        .collect();
    let separator = match &delim {
        Some(d) => format!("this server separates folder levels with {d:?}"),
        None => "this server has no folder hierarchy".into(),
    };
    match close.as_slice() {
        [] => {
            let some: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).take(8).collect();
            format!(
                "{separator}; its folders include {}",
                if some.is_empty() {
                    "none".into()
                } else {
                    some.iter()
                        .map(|n| format!("{n:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        }
        [one] => format!("did you mean {one:?}? ({separator})"),
        many => format!(
            "did you mean one of {}? ({separator})",
            many.iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// User names and passwords must not hold CR, LF or NUL: IMAP cannot carry them (in `LOGIN` a
/// line break would end the command and start another), so they are refused before connecting.
fn check_credentials(user: &str, password: &secret::Secret) -> Result<(), ProtoError> {
    let bad = |s: &str| s.contains(['\r', '\n', '\0']);
    if bad(user) {
        return Err(ProtoError::new(
            ErrorKind::Config,
            format!(
                "the user name {:?} contains a line break or NUL character, which IMAP cannot \
                 send; check username in the configuration",
                user.replace(['\r', '\n', '\0'], "?")
            ),
        ));
    }
    if bad(password.expose()) {
        return Err(ProtoError::new(
            ErrorKind::Secret,
            "the password contains a line break or NUL character, which IMAP cannot send; \
             mailpulse did not connect. Store the password again (or check what \
             password_command prints)",
        ));
    }
    Ok(())
}

/// What a server said in a NO or BAD, in its own words: async-imap hands over its debug
/// form (`code: Some(..), info: Some("text")`).
pub(super) fn server_words(text: &str) -> String {
    let text = text.trim();
    let info = text
        .split_once("info: Some(\"")
        .or_else(|| text.split_once("information: Some(\""))
        .map(|(_, rest)| rest);
    if let Some(info) = info {
        let info = info.trim_end_matches(['}', ' ']);
        let info = info.strip_suffix("\")").unwrap_or(info);
        return clip(&info.replace("\\\"", "\"").replace("\\\\", "\\"));
    }
    if text.is_empty() || text.ends_with("info: None") || text.contains("information: None") {
        return "no reason given".into();
    }
    clip(text)
}

/// SASL PLAIN, recording whether the credentials went out (the server asked for them).
struct Plain {
    response: Option<secret::Secret>,
    sent: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl async_imap::Authenticator for Plain {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.sent.store(true, std::sync::atomic::Ordering::SeqCst);
        match self.response.take() {
            Some(response) => response.expose().as_bytes().to_vec(),
            // Asked twice: an empty response makes the server end the exchange.
            None => Vec::new(),
        }
    }
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

#[async_trait]
impl Connector for ImapConnector {
    async fn open(&self, folder: &str) -> Result<(Box<dyn Session>, FolderInfo), ProtoError> {
        self.open_folder(folder).await
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
        let endpoint = self.endpoint();
        let mut seen = session::Untagged::default();
        let tag = self
            .step(
                "starting IDLE",
                session::start_idle(&mut session, &endpoint, &mut seen),
            )
            .await?;
        Ok(Box::new(ImapIdleProbe {
            session,
            idle: Some(tag),
            endpoint,
        }))
    }
}
