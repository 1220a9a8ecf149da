//! The HTTP side of an EWS account: the connection (TCP, TLS through `crate::net`), the
//! account's authentication (Basic, NTLM on the connection, Bearer with a refresh on 401),
//! Exchange Online's affinity headers and cookie, and reading answers within the deadline.

use super::*;

impl Shared {
    pub(super) fn new(account: Account, keepalive: KeepAlive, password: Option<Secret>) -> Shared {
        let url = url::Url::parse(&account.ews_url()).map_err(|e| e.to_string());
        Shared {
            tls: Tls::new(account.ca_file.clone()),
            tokens: crate::oauth::TokenSource::new(account.clone()),
            url,
            account,
            keepalive,
            password,
            cookie: Mutex::new(None),
            uids: Mutex::new(UidMap::default()),
            warned_plain: AtomicBool::new(false),
            scheme: Mutex::new(None),
            busy_until: Mutex::new(None),
            basic_fallback: true,
            subscriptions: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn rt(&self) -> Duration {
        self.keepalive.response_timeout()
    }

    pub(super) fn url(&self) -> Result<&url::Url, ProtoError> {
        self.url.as_ref().map_err(|e| {
            ProtoError::new(
                ErrorKind::Config,
                format!("the EWS url {:?} is not a URL: {e}", self.account.ews_url()),
            )
        })
    }

    pub(super) fn host(&self) -> String {
        crate::protocol::url_host_port(&self.url, &self.account.host).0
    }

    pub(super) fn port(&self) -> u16 {
        crate::protocol::url_host_port(&self.url, &self.account.host).1
    }

    pub(super) fn endpoint(&self) -> String {
        format!("{}:{}", self.host(), self.port())
    }

    pub(super) fn timeout_error(&self, what: &str) -> ProtoError {
        crate::protocol::dead(&self.endpoint(), self.rt(), what)
    }

    pub(super) async fn secret(&self, refused: Option<&Secret>) -> Result<Secret, ProtoError> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        if self.account.auth == AuthMethod::Bearer {
            self.tokens.token(refused).await
        } else {
            secret::password(&self.account).await
        }
    }

    /// A new connection: resolve, TCP with the deadline, TLS (verified) for https.
    pub(super) async fn connect(&self) -> Result<Conn, ProtoError> {
        let url = self.url()?;
        super::super::http::connect(
            &self.account,
            url,
            &self.host(),
            self.port(),
            self.rt(),
            self.keepalive.interval(),
            &self.tls,
            &self.warned_plain,
            "the password",
        )
        .await
    }

    pub(super) fn remember_cookie(&self, head: &Head) {
        for c in head.all("set-cookie") {
            if let Some(v) = c.split(';').next()
                && v.trim_start().starts_with("X-BackEndOverrideCookie=")
            {
                *self.cookie.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.trim().to_owned());
            }
        }
    }

    pub(super) fn http_error(&self, e: HttpError, what: &str) -> ProtoError {
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
    pub(super) fn ews_error(&self, e: &EwsError, what: &str) -> ProtoError {
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

/// One HTTP connection to the EWS endpoint, with the account's authentication.
pub(super) struct Http {
    pub(super) shared: Arc<Shared>,
    pub(super) conn: Option<Conn>,
    pub(super) secret: Option<Secret>,
    pub(super) scheme: Option<Scheme>,
}

impl Http {
    pub(super) fn new(shared: Arc<Shared>) -> Http {
        Http {
            shared,
            conn: None,
            secret: None,
            scheme: None,
        }
    }

    pub(super) fn headers(&self) -> Vec<(&'static str, String)> {
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
    pub(super) async fn request(&mut self, what: &str, body: &str) -> Result<Head, ProtoError> {
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
                    } else if shared.basic_fallback {
                        Scheme::Basic
                    } else {
                        return Err(ProtoError::new(
                            ErrorKind::Auth,
                            format!(
                                "{} offers neither NTLM nor Negotiate (it offers {}): the password is not sent to it with Basic authentication unless the account says auth = \"basic\" (mailpulse discover: --basic)",
                                shared.host(),
                                if offered.is_empty() {
                                    "nothing".to_owned()
                                } else {
                                    clip(&offered.join(", "))
                                }
                            ),
                        ));
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
    pub(super) async fn body(&mut self, head: &Head, what: &str) -> Result<Vec<u8>, ProtoError> {
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
}
