//! The HTTP side of a Graph account: the connection (TCP, TLS through `crate::net`), the
//! bearer token (renewed once on a 401), throttling (`Retry-After`), one `GET` within the
//! response deadline, Graph's error JSON.

use tokio::time::timeout;

use super::*;

/// Why a request failed: an error answer of Graph's (`{"error":{"code":…,"message":…}}`) the
/// caller may act on, or anything else.
#[derive(Debug)]
pub(super) enum GetError {
    Graph {
        status: u16,
        code: String,
        message: String,
    },
    Proto(ProtoError),
}

impl From<ProtoError> for GetError {
    fn from(e: ProtoError) -> Self {
        GetError::Proto(e)
    }
}

/// `Retry-After`: seconds, or an HTTP date.
pub(super) fn retry_after(head: &Head) -> Duration {
    let Some(v) = head.header("retry-after").map(str::trim) else {
        return DEFAULT_RETRY_AFTER;
    };
    let asked = match v.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => match chrono::DateTime::parse_from_rfc2822(v) {
            Ok(at) => (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default(),
            Err(_) => DEFAULT_RETRY_AFTER,
        },
    };
    asked.min(MAX_RETRY_AFTER)
}

/// Graph's error JSON: (code, message).
pub(super) fn error_of(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let code = e.get("code")?.as_str()?.to_owned();
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some((code, message))
}

impl Shared {
    pub(super) fn rt(&self) -> Duration {
        self.keepalive.response_timeout()
    }

    pub(super) fn root(&self) -> Result<&url::Url, ProtoError> {
        self.root.as_ref().map_err(|e| {
            ProtoError::new(
                ErrorKind::Config,
                format!(
                    "the Graph url {:?} is not a URL: {e}",
                    self.account.graph_url()
                ),
            )
        })
    }

    pub(super) fn host(&self) -> String {
        crate::protocol::url_host_port(&self.root, &self.account.host).0
    }

    pub(super) fn port(&self) -> u16 {
        crate::protocol::url_host_port(&self.root, &self.account.host).1
    }

    pub(super) fn endpoint(&self) -> String {
        format!("{}:{}", self.host(), self.port())
    }

    pub(super) fn timeout_error(&self, what: &str) -> ProtoError {
        crate::protocol::dead(&self.endpoint(), self.rt(), what)
    }

    pub(super) fn malformed(&self, what: &str, m: &str) -> ProtoError {
        ProtoError::new(
            ErrorKind::Protocol,
            format!(
                "{}: malformed answer while {what}: {}; is {} a Microsoft Graph endpoint?",
                self.endpoint(),
                clip(m),
                self.account.graph_url()
            ),
        )
    }

    /// The server asked to wait `asked` (HTTP `status`); `left` of it remains.
    fn throttled(&self, asked: Duration, left: Duration, status: u16) -> ProtoError {
        ProtoError::throttled(
            format!(
                "{}: throttled (HTTP {status}): the server asked to wait {} s before the next request",
                self.endpoint(),
                asked.as_secs_f64().ceil()
            ),
            left,
        )
    }

    pub(super) fn http_error(&self, e: HttpError, what: &str) -> ProtoError {
        let endpoint = self.endpoint();
        match e {
            HttpError::Io(io) => ProtoError::new(
                ErrorKind::Disconnected,
                match io.kind() {
                    std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe => {
                        format!("{endpoint}: connection lost ({io}) while {what}")
                    }
                    _ => format!("{endpoint}: {io} while {what}"),
                },
            ),
            HttpError::Malformed(m) => self.malformed(what, &m),
        }
    }

    /// A Graph error answer as a [`ProtoError`] the user can act on.
    pub(super) fn get_error(&self, e: GetError, what: &str) -> ProtoError {
        let (status, code, message) = match e {
            GetError::Proto(e) => return e,
            GetError::Graph {
                status,
                code,
                message,
            } => (status, code, message),
        };
        let endpoint = self.endpoint();
        let text = if message.is_empty() {
            String::new()
        } else {
            format!(": {}", clip(&message))
        };
        let kind = match status {
            403 => ErrorKind::Auth,
            404 => ErrorKind::Folder,
            _ => ErrorKind::Protocol,
        };
        let hint = match status {
            403 => "; the token must grant Mail.ReadBasic (or Mail.Read) for this mailbox",
            404 if code.is_empty() => {
                "; check url (the service root, e.g. https://graph.microsoft.com/v1.0)"
            }
            _ => "",
        };
        ProtoError::new(
            kind,
            format!("{endpoint}: HTTP {status} {code}{text} while {what}{hint}"),
        )
    }

    async fn secret(&self, refused: Option<&Secret>) -> Result<Secret, ProtoError> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        // password_command (run again), or the built-in sign-in's refresh.
        self.tokens.token(refused).await
    }

    /// A new connection: resolve, TCP with the deadline, TLS (verified) for https.
    async fn connect(&self) -> Result<Conn, ProtoError> {
        let root = self.root()?;
        super::super::http::connect(
            &self.account,
            root,
            &self.host(),
            self.port(),
            self.rt(),
            self.keepalive.interval(),
            &self.tls,
            &self.warned_plain,
            "the access token",
        )
        .await
    }

    /// The request target (path and query) for `target`: a path below the service root
    /// (`/me/mailFolders/inbox`), or a link the server handed out (`@odata.nextLink`,
    /// `@odata.deltaLink`), which must point at the same server: the token goes nowhere else.
    pub(super) fn target(&self, target: &str) -> Result<String, ProtoError> {
        let root = self.root()?;
        if target.starts_with('/') {
            return Ok(format!("{}{target}", root.path().trim_end_matches('/')));
        }
        let link = url::Url::parse(target).map_err(|e| {
            self.malformed(
                "following a link",
                &format!("{target:?} is not a URL ({e})"),
            )
        })?;
        if link.scheme() != root.scheme()
            || link.host_str() != root.host_str()
            || link.port_or_known_default() != root.port_or_known_default()
        {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{}: the server sent a link to another server ({}); not following it with the access token",
                    self.endpoint(),
                    clip(&format!(
                        "{}://{}",
                        link.scheme(),
                        link.host_str().unwrap_or_default()
                    ))
                ),
            ));
        }
        Ok(match link.query() {
            Some(q) => format!("{}?{q}", link.path()),
            None => link.path().to_owned(),
        })
    }
}

/// One kept HTTP connection to the Graph endpoint, with the account's token.
pub(super) struct Http {
    pub(super) shared: Arc<Shared>,
    conn: Option<Conn>,
    secret: Option<Secret>,
}

impl Http {
    pub(super) fn new(shared: Arc<Shared>) -> Http {
        Http {
            shared,
            conn: None,
            secret: None,
        }
    }

    /// `GET target` and its JSON: reconnects when there is no connection, retries once on a
    /// kept connection the server had closed, renews the token once on a 401, and sends nothing
    /// while the account is throttled. `delta` asks for big pages (`Prefer: odata.maxpagesize`).
    pub(super) async fn get(
        &mut self,
        what: &str,
        target: &str,
        delta: bool,
    ) -> Result<Value, GetError> {
        let shared = self.shared.clone();
        let throttled = *shared
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((until, asked, status)) = throttled
            && until > Instant::now()
        {
            // Honour the hint: nothing is sent before it ran out (the engine retries later).
            return Err(shared
                .throttled(
                    asked,
                    until.saturating_duration_since(Instant::now()),
                    status,
                )
                .into());
        }
        let path = shared.target(target)?;
        let host_header = match shared.root()?.port() {
            Some(p) => format!("{}:{p}", shared.root()?.host_str().unwrap_or_default()),
            None => shared.root()?.host_str().unwrap_or_default().to_owned(),
        };
        if self.secret.is_none() {
            self.secret = Some(shared.secret(None).await?);
        }
        let mut refreshed = false;
        let mut retried = false;
        for _ in 0..4 {
            if self.conn.is_none() {
                self.conn = Some(shared.connect().await?);
            }
            let mut headers = vec![
                (
                    "Authorization",
                    format!(
                        "Bearer {}",
                        self.secret.as_ref().expect("fetched above").expose()
                    ),
                ),
                ("Accept", "application/json".to_owned()),
            ];
            if delta {
                headers.push(("Prefer", format!("odata.maxpagesize={DELTA_PAGE}")));
            }
            let conn = self.conn.as_mut().expect("connected above");
            let reused = conn.used;
            let sent = async {
                conn.get(&path, &host_header, &headers).await?;
                conn.read_head().await
            };
            let head = match timeout(shared.rt(), sent).await {
                Err(_) => {
                    self.conn = None;
                    return Err(shared.timeout_error(what).into());
                }
                Ok(Err(HttpError::Io(e))) if reused && !retried => {
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
                    return Err(shared.http_error(e, what).into());
                }
                Ok(Ok(head)) => head,
            };
            let body = self.body(&head, what).await?;
            match head.status {
                200..=299 => {
                    return serde_json::from_slice(&body).map_err(|e| {
                        GetError::Proto(shared.malformed(what, &format!("not JSON ({e})")))
                    });
                }
                401 if !refreshed && shared.password.is_none() => {
                    tracing::info!(account = %shared.account.name, "the server refused the access token; getting a fresh one");
                    let old = self.secret.take();
                    self.secret = Some(shared.secret(old.as_ref()).await?);
                    refreshed = true;
                    continue;
                }
                401 => {
                    self.secret = None;
                    let code = error_of(&body).map(|(c, _)| c).unwrap_or_default();
                    let offered = head.header("www-authenticate").unwrap_or_default();
                    return Err(ProtoError::new(
                        ErrorKind::Auth,
                        format!(
                            "{} rejected the access token of {:?} (HTTP 401{}{}); check the user name and that the token is for Microsoft Graph with Mail.ReadBasic",
                            shared.host(),
                            shared.account.username,
                            if code.is_empty() { String::new() } else { format!(" {}", clip(&code)) },
                            if offered.contains("invalid_token") { ", invalid_token" } else { "" },
                        ),
                    )
                    .into());
                }
                429 | 503 => {
                    let asked = retry_after(&head);
                    *shared
                        .throttled_until
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) =
                        Some((Instant::now() + asked, asked, head.status));
                    tracing::info!(account = %shared.account.name, "{}: throttled (HTTP {}), waiting {} s", shared.endpoint(), head.status, asked.as_secs());
                    return Err(shared.throttled(asked, asked, head.status).into());
                }
                status => {
                    let (code, message) = error_of(&body).unwrap_or_default();
                    return Err(GetError::Graph {
                        status,
                        code,
                        message,
                    });
                }
            }
        }
        Err(ProtoError::new(
            ErrorKind::Auth,
            format!(
                "{}: the request did not get through; check auth in the account settings",
                shared.endpoint()
            ),
        )
        .into())
    }

    /// The body of the answer whose head was read (bounded, within the deadline).
    async fn body(&mut self, head: &Head, what: &str) -> Result<Vec<u8>, ProtoError> {
        let shared = self.shared.clone();
        let Some(conn) = self.conn.as_mut() else {
            return Err(ProtoError::new(
                ErrorKind::Disconnected,
                format!("{}: the connection was lost", shared.endpoint()),
            ));
        };
        let body = match timeout(shared.rt(), conn.read_body(head, MAX_BODY)).await {
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
