//! OAuth2 for IMAP: the sign-in (authorization-code flow with PKCE S256 and a one-shot loopback
//! redirect, RFC 8252), the refresh-token grant, and the SASL strings XOAUTH2 and OAUTHBEARER
//! (RFC 7628).
//!
//! The refresh token lives in the OS keyring ([`crate::credentials::set_refresh_token`], entry
//! `oauth2:user@host`); access tokens live only in memory ([`TokenSource`]). Tokens, codes and the
//! PKCE verifier are [`Secret`]s and never reach a log line, an error message, argv or a panic:
//! token endpoint bodies are parsed, never echoed, and ureq's own logging is capped at `warn`.
//!
//! The HTTP client is ureq (blocking, small, on the mail connections' TLS and trust store); it
//! runs on tokio's blocking pool from async code.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{Account, AuthMethod, OAuth, OAuthProvider};
use crate::error::{ErrorKind, ProtoError};
use crate::secret::{self, Secret};

/// An access token that expires within this margin (or a quarter of its lifetime, if that is
/// shorter) is refreshed before it is used.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long one request to the token endpoint may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `mailpulse signin` waits for the browser to come back.
pub const SIGNIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The endpoints and scopes of an account's provider (presets, or the config's overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization_url: String,
    pub token_url: String,
    pub scopes: Vec<String>,
    /// Extra authorization parameters (Google hands out a refresh token only with these).
    pub extra: Vec<(&'static str, &'static str)>,
    /// The host name in the loopback redirect URI: Microsoft matches a registered
    /// `http://localhost` on any port, Google and RFC 8252 want `127.0.0.1`.
    pub redirect_host: &'static str,
}

/// The provider's endpoints and scopes for an account of `protocol` (Microsoft grants IMAP and
/// EWS access under different scopes).
pub fn endpoints(o: &OAuth, protocol: crate::config::Protocol) -> Endpoints {
    let mut e = match o.provider {
        OAuthProvider::Google => Endpoints {
            authorization_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            scopes: vec!["https://mail.google.com/".into()],
            extra: vec![("access_type", "offline"), ("prompt", "consent")],
            redirect_host: "127.0.0.1",
        },
        OAuthProvider::Microsoft => {
            let tenant = o.tenant.as_deref().unwrap_or("common");
            let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
            Endpoints {
                authorization_url: format!("{base}/authorize"),
                token_url: format!("{base}/token"),
                scopes: vec![
                    match protocol {
                        crate::config::Protocol::Imap => {
                            "https://outlook.office.com/IMAP.AccessAsUser.All".into()
                        }
                        crate::config::Protocol::Ews => {
                            "https://outlook.office365.com/EWS.AccessAsUser.All".into()
                        }
                        // Read the list of messages (subject, sender, dates), never a body.
                        crate::config::Protocol::Graph => {
                            "https://graph.microsoft.com/Mail.ReadBasic".into()
                        }
                    },
                    "offline_access".into(),
                ],
                extra: vec![],
                redirect_host: "localhost",
            }
        }
        OAuthProvider::Generic => Endpoints {
            authorization_url: String::new(),
            token_url: String::new(),
            scopes: vec![],
            extra: vec![],
            redirect_host: "127.0.0.1",
        },
    };
    if let Some(u) = &o.authorization_url {
        e.authorization_url = u.clone();
    }
    if let Some(u) = &o.token_url {
        e.token_url = u.clone();
    }
    if let Some(s) = &o.scopes {
        e.scopes = s.clone();
    }
    e
}

/// Why a sign-in or a refresh failed, in words that say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "access was denied in the browser (access_denied): run the sign-in again and allow \
         mailpulse to read your mail"
    )]
    Denied,
    #[error(
        "the provider does not accept client id {client_id:?} (invalid_client): check \
         oauth.client_id (and client_secret_command) against your app registration"
    )]
    InvalidClient { client_id: String },
    #[error(
        "the sign-in of account {account:?} has expired or was revoked (invalid_grant): sign in \
         again with `mailpulse signin --account {account}` or in Settings"
    )]
    Revoked { account: String },
    #[error(
        "account {account:?} is not signed in: run `mailpulse signin --account {account}` or use \
         Sign in in Settings"
    )]
    NotSignedIn { account: String },
    #[error("cannot reach {url}: {detail}; check your network connection")]
    Network { url: String, detail: String },
    #[error("{0}")]
    Other(String),
}

impl OAuthError {
    /// The engine's view: a revoked or missing sign-in is an authentication failure (reported
    /// once, retried slowly), a network failure a connection failure.
    pub fn into_proto(self) -> ProtoError {
        let kind = match &self {
            OAuthError::Network { .. } => ErrorKind::Connect,
            _ => ErrorKind::Auth,
        };
        ProtoError::new(kind, self.to_string())
    }
}

/// What the token endpoint handed out.
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// When the access token expires (wall clock: it keeps running through a suspend).
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(***)")
    }
}

fn random_b64(bytes: usize) -> Secret {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source works");
    Secret::new(URL_SAFE_NO_PAD.encode(&buf))
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// An agent for one request, through the proxy the account's setting gives for it, with the
/// proxy's sign-in, as the mail connections go (`protocol::http_agent`).
fn agent(account: &Account) -> ureq::Agent {
    crate::net::http_agent::agent(account.proxy_setting(), HTTP_TIMEOUT)
}

/// POST a form to the token endpoint and read the answer. The body is parsed, never quoted:
/// it may hold tokens.
fn token_request(
    url: &str,
    form: &[(&str, &str)],
    client_id: &str,
    account: &Account,
) -> Result<Tokens, OAuthError> {
    let started = SystemTime::now();
    let mut response = agent(account)
        .post(url)
        .header("Accept", "application/json")
        .send_form(form.iter().copied())
        .map_err(|e| OAuthError::Network {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| OAuthError::Network {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    drop(body);
    if let Some(access) = v.get("access_token").and_then(Value::as_str)
        && (200..300).contains(&status)
    {
        let lifetime = v
            .get("expires_in")
            .and_then(|x| x.as_u64().or_else(|| x.as_str()?.parse().ok()))
            .unwrap_or(3600);
        return Ok(Tokens {
            access_token: Secret::new(access.to_owned()),
            refresh_token: v
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(|s| Secret::new(s.to_owned())),
            expires_at: started + Duration::from_secs(lifetime),
        });
    }
    let error = v.get("error").and_then(Value::as_str).unwrap_or_default();
    // Descriptions are for humans and never carry the token; keep them short anyway.
    let description: String = v
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    Err(match error {
        "invalid_client" | "unauthorized_client" => OAuthError::InvalidClient {
            client_id: client_id.to_owned(),
        },
        "invalid_grant" => OAuthError::Revoked {
            account: account.name.clone(),
        },
        "" => OAuthError::Other(format!(
            "the token endpoint {url} answered HTTP {status} without an OAuth2 answer"
        )),
        other => OAuthError::Other(format!(
            "the token endpoint {url} refused: {other}{}{description}",
            if description.is_empty() { "" } else { ": " }
        )),
    })
}

/// The refresh-token grant (RFC 6749 §6).
pub fn refresh(
    account: &Account,
    refresh_token: &Secret,
    client_secret: Option<&Secret>,
) -> Result<Tokens, OAuthError> {
    let o = oauth_of(account)?;
    let e = endpoints(o, account.protocol);
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", o.client_id.as_str()),
    ];
    if let Some(s) = client_secret {
        form.push(("client_secret", s.expose()));
    }
    token_request(&e.token_url, &form, &o.client_id, account)
}

fn oauth_of(account: &Account) -> Result<&OAuth, OAuthError> {
    account.oauth.as_ref().ok_or_else(|| {
        OAuthError::Other(format!(
            "account {:?} has no [accounts.oauth] settings (provider, client_id)",
            account.name
        ))
    })
}

/// What [`sign_in`] reports on success.
#[derive(Debug)]
pub struct SignedIn {
    /// The refresh token was stored in the keyring under this entry name.
    pub keyring_entry: String,
}

/// The whole sign-in: listen on a random loopback port, show (and open) the authorization URL,
/// wait for the browser's redirect, check `state`, exchange the code with the PKCE verifier, and
/// store the refresh token in the keyring. Blocking.
///
/// `show_url` gets the authorization URL (print it; open the browser). `deadline` bounds the wait.
pub fn sign_in(
    account: &Account,
    client_secret: Option<&Secret>,
    show_url: &mut dyn FnMut(&str),
    wait: Duration,
) -> Result<SignedIn, OAuthError> {
    let o = oauth_of(account)?;
    let e = endpoints(o, account.protocol);
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|err| OAuthError::Other(format!("cannot listen on 127.0.0.1: {err}")))?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    // A browser may resolve `localhost` to ::1 first: listen there too, on the same port,
    // where the machine has IPv6 loopback (best effort; 127.0.0.1 is always there).
    let v6 = (e.redirect_host == "localhost")
        .then(|| TcpListener::bind(("::1", port)).ok())
        .flatten();
    let listeners: Vec<&TcpListener> = std::iter::once(&listener).chain(v6.as_ref()).collect();
    let redirect_uri = format!("http://{}:{port}/", e.redirect_host);
    let verifier = random_b64(32);
    let state = random_b64(16);
    let mut url = url::Url::parse(&e.authorization_url).map_err(|err| {
        OAuthError::Other(format!(
            "the authorization URL {:?} is not a URL: {err}",
            e.authorization_url
        ))
    })?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &o.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &e.scopes.join(" "))
            .append_pair("state", state.expose())
            .append_pair("code_challenge", &pkce_challenge(verifier.expose()))
            .append_pair("code_challenge_method", "S256")
            .append_pair("login_hint", &account.username);
        for (k, v) in &e.extra {
            q.append_pair(k, v);
        }
    }
    show_url(url.as_str());
    tracing::info!(account = %account.name, port, "waiting for the browser's sign-in redirect");

    let (mut stream, code) = wait_for_redirect(&listeners, &state, wait)?;
    let exchanged = match code {
        Err(err) => Err(err),
        Ok(code) => {
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.expose()),
                ("redirect_uri", redirect_uri.as_str()),
                ("client_id", o.client_id.as_str()),
                ("code_verifier", verifier.expose()),
            ];
            if let Some(s) = client_secret {
                form.push(("client_secret", s.expose()));
            }
            token_request(&e.token_url, &form, &o.client_id, account).and_then(|t| {
                t.refresh_token.ok_or_else(|| {
                    OAuthError::Other(
                        "the provider gave no refresh token, so mailpulse could not stay signed \
                         in; for a generic provider add the scope that grants one (often \
                         \"offline_access\")"
                            .into(),
                    )
                })
            })
        }
    };
    let stored = exchanged.and_then(|refresh_token| {
        crate::credentials::set_refresh_token(
            &account.username,
            &account.host,
            refresh_token.expose(),
        )
        .map_err(|err| OAuthError::Other(format!("cannot store the sign-in in the keyring: {err}")))
    });
    let page = match &stored {
        Ok(()) => format!(
            "Signed in: mailpulse can now read the mail of {} at {}. You can close this tab.",
            account.username, account.host
        ),
        Err(err) => format!("Sign-in failed: {err}"),
    };
    respond(&mut stream, if stored.is_ok() { 200 } else { 400 }, &page);
    stored.map(|()| SignedIn {
        keyring_entry: crate::credentials::refresh_token_key(&account.username, &account.host),
    })
}

/// Accept connections until one carries the redirect (`code` or `error`) with our `state`. Other
/// requests (a browser's `/favicon.ico`) get a 404; the wait is bounded by `wait`.
fn wait_for_redirect(
    listeners: &[&TcpListener],
    state: &Secret,
    wait: Duration,
) -> Result<(TcpStream, Result<Secret, OAuthError>), OAuthError> {
    let deadline = Instant::now() + wait;
    for l in listeners {
        l.set_nonblocking(true)
            .map_err(|e| OAuthError::Other(format!("loopback listener: {e}")))?;
    }
    loop {
        let mut accepted = None;
        for l in listeners {
            match l.accept() {
                Ok(c) => {
                    accepted = Some(c);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(OAuthError::Other(format!("loopback listener: {e}"))),
            }
        }
        let Some((mut stream, _peer)): Option<(TcpStream, SocketAddr)> = accepted else {
            if Instant::now() >= deadline {
                return Err(OAuthError::Other(format!(
                    "no answer from the browser within {} s; run the sign-in again",
                    wait.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let Some(target) = read_request_target(&stream) else {
            continue;
        };
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
            respond(&mut stream, 400, "Bad request.");
            continue;
        };
        let mut code = None;
        let mut error = None;
        let mut description = None;
        let mut got_state = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "code" => code = Some(Secret::new(v.into_owned())),
                "error" => error = Some(v.into_owned()),
                "error_description" => description = Some(v.chars().take(200).collect::<String>()),
                "state" => got_state = Some(Secret::new(v.into_owned())),
                _ => {}
            }
        }
        if code.is_none() && error.is_none() {
            respond(&mut stream, 404, "Not found.");
            continue;
        }
        if got_state.as_ref() != Some(state) {
            // Not the answer to our request (a stale tab, or a forged redirect): refuse it.
            return Ok((
                stream,
                Err(OAuthError::Other(
                    "the browser came back with an answer to another sign-in (state mismatch); \
                     run the sign-in again"
                        .into(),
                )),
            ));
        }
        let result = match (code, error.as_deref()) {
            (_, Some("access_denied")) => Err(OAuthError::Denied),
            (_, Some(other)) => Err(OAuthError::Other(format!(
                "the provider refused the sign-in: {other}{}",
                description.map(|d| format!(": {d}")).unwrap_or_default()
            ))),
            (Some(code), None) => Ok(code),
            (None, None) => unreachable!("checked above"),
        };
        return Ok((stream, result));
    }
}

/// The request target of one HTTP request (`/?code=...`), or `None` for anything else.
fn read_request_target(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(std::io::Read::take(stream, 16 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    // Drain the headers (bounded) so the browser sees a clean answer.
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = line.split_whitespace();
    (parts.next()? == "GET").then_some(())?;
    let target = parts.next()?;
    target.starts_with('/').then(|| target.to_owned())
}

fn respond(stream: &mut TcpStream, status: u16, text: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mailpulse</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>mailpulse</h1><p>{escaped}</p>\
         </body></html>"
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// The access tokens of one account for its connections: from `password_command` (run on every
/// connect, as for tools like oama or mutt_oauth2), or from the built-in sign-in (refresh token
/// in the keyring; the access token cached in memory and refreshed when it expires within
/// [`REFRESH_MARGIN`], and whenever the server refused it).
pub struct TokenSource {
    account: Account,
    /// The access token and when to renew it.
    cache: tokio::sync::Mutex<Option<(Secret, SystemTime)>>,
}

impl TokenSource {
    pub fn new(account: Account) -> TokenSource {
        TokenSource {
            account,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A token valid for at least [`REFRESH_MARGIN`]. `refused` is a token the server just
    /// refused: never return it again (another folder of the account may already have renewed
    /// it, then that newer token is returned without asking the provider again).
    pub async fn token(&self, refused: Option<&Secret>) -> Result<Secret, ProtoError> {
        if self.account.password_command.is_some() || self.account.oauth.is_none() {
            return secret::password(&self.account).await;
        }
        // One refresh at a time: the folders of an account connect together.
        let mut cache = self.cache.lock().await;
        if let Some((token, renew_at)) = cache.as_ref()
            && *renew_at > SystemTime::now()
            && Some(token) != refused
        {
            return Ok(token.clone());
        }
        *cache = None;
        let o = self.account.oauth.as_ref().expect("checked above");
        let client_secret = match &o.client_secret_command {
            Some(cmd) => Some(
                secret::command_secret(&self.account.name, "client_secret_command", cmd).await?,
            ),
            None => None,
        };
        let account = self.account.clone();
        let tokens = tokio::task::spawn_blocking(move || {
            let stored = crate::credentials::get_refresh_token(&account.username, &account.host)
                .map_err(|e| {
                    ProtoError::new(
                        ErrorKind::Secret,
                        format!(
                            "cannot read the sign-in of account {:?} from the keyring: {e}",
                            account.name
                        ),
                    )
                })?
                .ok_or_else(|| {
                    OAuthError::NotSignedIn {
                        account: account.name.clone(),
                    }
                    .into_proto()
                })?;
            let tokens = refresh(&account, &Secret::new(stored), client_secret.as_ref())
                .map_err(OAuthError::into_proto)?;
            // Microsoft rotates refresh tokens: keep the newest.
            if let Some(rotated) = &tokens.refresh_token
                && let Err(e) = crate::credentials::set_refresh_token(
                    &account.username,
                    &account.host,
                    rotated.expose(),
                )
            {
                tracing::warn!(account = %account.name, "cannot store the renewed refresh token: {e}");
            }
            Ok::<_, ProtoError>(tokens)
        })
        .await
        .map_err(|e| ProtoError::new(ErrorKind::Secret, format!("token refresh failed: {e}")))??;
        let lifetime = tokens
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        // Renew a minute before expiry (a quarter of the lifetime for short-lived tokens).
        let renew_at = tokens.expires_at - REFRESH_MARGIN.min(lifetime / 4);
        tracing::debug!(
            account = %self.account.name,
            valid_secs = lifetime.as_secs(),
            "access token refreshed"
        );
        *cache = Some((tokens.access_token.clone(), renew_at));
        Ok(tokens.access_token)
    }
}

/// The initial client response of SASL XOAUTH2 (Google's and Microsoft's format).
pub fn xoauth2(user: &str, token: &Secret) -> Secret {
    Secret::new(format!(
        "user={user}\x01auth=Bearer {}\x01\x01",
        token.expose()
    ))
}

/// The initial client response of SASL OAUTHBEARER (RFC 7628 §3.1; GS2 header with authzid).
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &Secret) -> Secret {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    Secret::new(format!(
        "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
        token.expose()
    ))
}

/// The SASL mechanism name and what a client answers to the server's error challenge.
pub fn mechanism(auth: AuthMethod) -> (&'static str, &'static [u8]) {
    match auth {
        // RFC 7628 §3.2.3: the client answers an error with a single %x01.
        AuthMethod::Oauthbearer => ("OAUTHBEARER", b"\x01"),
        _ => ("XOAUTH2", b""),
    }
}

/// The sign-in of one account, for the command line and Settings: checks the account's
/// settings, gets the client secret from its command, opens the browser (when `open`) and tells
/// the result in words.
pub async fn sign_in_account(
    account: &crate::config::Account,
    open: bool,
    mut show: impl FnMut(&str) + Send + 'static,
) -> Result<String, String> {
    let Some(oauth) = account.oauth.clone() else {
        return Err(format!(
            "account {:?} has no [accounts.oauth] settings: set auth = \"xoauth2\" (or \
             \"oauthbearer\") and an [accounts.oauth] table with provider and client_id",
            account.name
        ));
    };
    let client_secret = match &oauth.client_secret_command {
        Some(cmd) => Some(
            crate::secret::command_secret(&account.name, "client_secret_command", cmd)
                .await
                .map_err(|e| e.message)?,
        ),
        None => None,
    };
    let acct = account.clone();
    let result = tokio::task::spawn_blocking(move || {
        sign_in(
            &acct,
            client_secret.as_ref(),
            &mut |url| {
                show(url);
                if open && let Err(e) = crate::platform::open_with_desktop(url) {
                    tracing::warn!("cannot open the browser: {e}");
                }
            },
            SIGNIN_TIMEOUT,
        )
    })
    .await
    .map_err(|e| format!("the sign-in failed: {e}"))?;
    match result {
        Ok(done) => {
            tracing::info!(account = %account.name, "signed in");
            let note = if account.password_command.is_some() {
                "\nNote: this account has password_command set, which takes precedence."
            } else {
                ""
            };
            Ok(format!(
                "Signed in: account {:?} ({} at {}) can now connect with {}. The sign-in is kept \
                 in the keyring (entry {:?} of service {:?}); the agent refreshes its access \
                 tokens by itself. A running mailpulse uses it at its next retry, or at once \
                 with Check now in the tray menu.{note}",
                account.name,
                account.username,
                account.host,
                account.auth.as_str().to_uppercase(),
                done.keyring_entry,
                crate::credentials::SERVICE,
            ))
        }
        Err(e) => Err(format!("sign-in of account {:?} failed: {e}", account.name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = random_b64(32);
        assert_eq!(v.expose().len(), 43, "RFC 7636: 43..128 characters");
        assert_ne!(v, random_b64(32));
    }

    /// A browser's request to the loopback listener; returns what the listener answered.
    fn browser(addr: SocketAddr, target: &str) -> std::thread::JoinHandle<String> {
        let target = target.to_owned();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut answer = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut answer);
            answer
        })
    }

    #[test]
    fn the_redirect_listener_takes_the_code_with_our_state_only() {
        let v4 = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = v4.local_addr().unwrap().port();
        let v6 = TcpListener::bind(("::1", port)).ok();
        let listeners: Vec<&TcpListener> = std::iter::once(&v4).chain(v6.as_ref()).collect();
        let state = Secret::new("st4te".into());
        let wait = Duration::from_secs(20);
        // A favicon request is answered 404 and the wait goes on; then the redirect arrives
        // (over IPv6 where the machine has it, as a browser resolving `localhost` may).
        let favicon = browser(v4.local_addr().unwrap(), "/favicon.ico");
        let addr = v6
            .as_ref()
            .map_or(v4.local_addr().unwrap(), |l| l.local_addr().unwrap());
        let redirect = browser(addr, "/?code=c0de%2B1&state=st4te");
        let (mut stream, code) = wait_for_redirect(&listeners, &state, wait).unwrap();
        respond(&mut stream, 200, "ok <b>");
        drop(stream);
        assert_eq!(code.unwrap().expose(), "c0de+1");
        assert!(favicon.join().unwrap().starts_with("HTTP/1.1 404"));
        let page = redirect.join().unwrap();
        assert!(
            page.starts_with("HTTP/1.1 200") && page.contains("ok &lt;b&gt;"),
            "{page}"
        );

        // Another sign-in's answer (wrong state) is refused; a denial is told in words.
        let b = browser(v4.local_addr().unwrap(), "/?code=x&state=other");
        let (_s, code) = wait_for_redirect(&listeners, &state, wait).unwrap();
        assert!(code.unwrap_err().to_string().contains("state mismatch"));
        drop(_s);
        b.join().unwrap();
        let b = browser(
            v4.local_addr().unwrap(),
            "/?error=access_denied&state=st4te",
        );
        let (_s, code) = wait_for_redirect(&listeners, &state, wait).unwrap();
        assert_eq!(code.unwrap_err(), OAuthError::Denied);
        drop(_s);
        b.join().unwrap();
        // Nobody comes back: a bounded wait.
        let e = wait_for_redirect(&listeners, &state, Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("no answer from the browser"), "{e}");
    }

    #[test]
    fn sasl_strings_follow_the_specs() {
        let t = Secret::new("tok".into());
        assert_eq!(
            xoauth2("a@b.c", &t).expose(),
            "user=a@b.c\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            oauthbearer("a,b=c", "imap.x", 993, &t).expose(),
            "n,a=a=2Cb=3Dc,\x01host=imap.x\x01port=993\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(format!("{:?}", xoauth2("u", &t)), "Secret(***)");
    }

    #[test]
    fn presets_name_the_providers_endpoints_and_scopes() {
        let mut o = OAuth::default();
        o.client_id = "id".into();
        use crate::config::Protocol;
        let g = endpoints(&o, Protocol::Imap);
        assert_eq!(g.scopes, ["https://mail.google.com/"]);
        assert!(g.extra.contains(&("access_type", "offline")));
        o.provider = OAuthProvider::Microsoft;
        o.tenant = Some("contoso.onmicrosoft.com".into());
        let m = endpoints(&o, Protocol::Imap);
        assert_eq!(
            m.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert!(m.scopes.contains(&"offline_access".to_string()));
        assert_eq!(m.redirect_host, "localhost");
        assert_eq!(
            m.scopes[0],
            "https://outlook.office.com/IMAP.AccessAsUser.All"
        );
        assert_eq!(
            endpoints(&o, Protocol::Ews).scopes,
            [
                "https://outlook.office365.com/EWS.AccessAsUser.All",
                "offline_access"
            ]
        );
        assert_eq!(
            endpoints(&o, Protocol::Graph).scopes,
            [
                "https://graph.microsoft.com/Mail.ReadBasic",
                "offline_access"
            ]
        );
        o.scopes = Some(vec![
            "https://outlook.office365.com/EWS.AccessAsUser.All".into(),
        ]);
        assert_eq!(endpoints(&o, Protocol::Ews).scopes.len(), 1);
    }
}
