//! A small OAuth2 identity provider on loopback for the tests: real HTTP over real sockets,
//! one thread per connection.
//!
//! * `GET /authorize` (RFC 6749 §4.1 with PKCE): consents by itself (or denies, see
//!   [`Idp::set_deny`]) and redirects (302) to the `redirect_uri` with `code` and `state`
//!   (or `error=access_denied`); `login_hint` names the user.
//! * `POST /token`: `authorization_code` (client id, redirect URI and the PKCE S256 verifier are
//!   checked; a code works once) and `refresh_token` grants; access tokens live
//!   [`Idp::set_lifetime`] seconds; wrong client → 401 `invalid_client`; unknown or revoked
//!   refresh token → 400 `invalid_grant`.
//! * `POST /introspect` (RFC 7662, for Dovecot's oauth2 passdb): `{"active": true, "username":
//!   ...}` for a live access token, `{"active": false}` otherwise.
//!
//! Every code, token and verifier it saw is kept, so that a test can look for them in output
//! and logs ([`Idp::secrets`]).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

#[derive(Default)]
struct State {
    client_id: String,
    deny: bool,
    lifetime_secs: u64,
    /// code → (client_id, redirect_uri, challenge, user)
    codes: HashMap<String, (String, String, String, String)>,
    /// access token → (user, expiry)
    access: HashMap<String, (String, Instant)>,
    /// refresh token → (user, revoked)
    refresh: HashMap<String, (String, bool)>,
    secrets: Vec<String>,
    refresh_grants: usize,
    code_grants: usize,
    introspections: usize,
    active_introspections: usize,
    counter: u64,
}

impl State {
    fn fresh(&mut self, kind: &str) -> String {
        self.counter += 1;
        let mut buf = [0u8; 18];
        getrandom::fill(&mut buf).unwrap();
        let t = format!("{kind}-{}-{}", self.counter, URL_SAFE_NO_PAD.encode(buf));
        self.secrets.push(t.clone());
        t
    }
}

pub struct Idp {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Idp {
    /// Start on a free loopback port; accepts `client_id` only.
    pub fn start(client_id: &str) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind idp");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.to_owned(),
            lifetime_secs: 3600,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s = s.clone();
                        thread::spawn(move || serve(conn, &s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Idp { port, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    /// Answer the next authorizations with `error=access_denied`.
    pub fn set_deny(&self, deny: bool) {
        self.state.lock().unwrap().deny = deny;
    }
    /// Lifetime of access tokens issued from now on.
    pub fn set_lifetime(&self, secs: u64) {
        self.state.lock().unwrap().lifetime_secs = secs;
    }
    /// Revoke every refresh token (the user removed the app's access) and every access token.
    pub fn revoke_all(&self) {
        let mut s = self.state.lock().unwrap();
        for v in s.refresh.values_mut() {
            v.1 = true;
        }
        s.access.clear();
    }
    /// Forget every access token (refresh tokens stay good).
    pub fn revoke_access_tokens(&self) {
        self.state.lock().unwrap().access.clear();
    }
    /// Issue an access token directly (what a `password_command` like oama would print).
    pub fn issue_access_token(&self, user: &str) -> String {
        let mut s = self.state.lock().unwrap();
        let t = s.fresh("at");
        let life = Duration::from_secs(s.lifetime_secs);
        s.access
            .insert(t.clone(), (user.to_owned(), Instant::now() + life));
        t
    }
    pub fn refresh_grants(&self) -> usize {
        self.state.lock().unwrap().refresh_grants
    }
    pub fn code_grants(&self) -> usize {
        self.state.lock().unwrap().code_grants
    }
    /// (all, active) introspection requests so far.
    pub fn introspections(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.introspections, s.active_introspections)
    }
    /// Every code, token and PKCE verifier seen or issued.
    pub fn secrets(&self) -> Vec<String> {
        self.state.lock().unwrap().secrets.clone()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    form: HashMap<String, String>,
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length.min(64 * 1024)];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let parse = |s: &[u8]| {
        url::form_urlencoded::parse(s)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    Some(Request {
        method,
        path: path.to_owned(),
        query: parse(query.as_bytes()),
        form: parse(&body),
    })
}

fn reply(conn: &mut TcpStream, status: &str, headers: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}

fn json(conn: &mut TcpStream, status: &str, v: serde_json::Value) {
    reply(
        conn,
        status,
        "Content-Type: application/json\r\n",
        &v.to_string(),
    );
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) {
    let Some(req) = read_request(&conn) else {
        return;
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/authorize") => authorize(&mut conn, &req, state),
        ("POST", "/token") => token(&mut conn, &req, state),
        ("POST", "/introspect") => {
            let mut s = state.lock().unwrap();
            s.introspections += 1;
            let token = req.form.get("token").cloned().unwrap_or_default();
            match s.access.get(&token).cloned() {
                Some((user, expiry)) if expiry > Instant::now() => {
                    s.active_introspections += 1;
                    drop(s);
                    json(
                        &mut conn,
                        "200 OK",
                        serde_json::json!({"active": true, "username": user}),
                    )
                }
                _ => {
                    drop(s);
                    json(&mut conn, "200 OK", serde_json::json!({"active": false}))
                }
            }
        }
        _ => reply(&mut conn, "404 Not Found", "", "not found"),
    }
}

fn authorize(conn: &mut TcpStream, req: &Request, state: &Mutex<State>) {
    let q = &req.query;
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let redirect = get("redirect_uri");
    if get("response_type") != "code"
        || get("code_challenge_method") != "S256"
        || get("code_challenge").len() != 43
        || !redirect.starts_with("http://127.0.0.1:")
    {
        reply(conn, "400 Bad Request", "", "bad authorization request");
        return;
    }
    let mut s = state.lock().unwrap();
    let mut target = url::Url::parse(&redirect).unwrap();
    if s.deny {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &get("state"));
    } else {
        let code = s.fresh("code");
        s.codes.insert(
            code.clone(),
            (
                get("client_id"),
                redirect.clone(),
                get("code_challenge"),
                get("login_hint"),
            ),
        );
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &get("state"));
    }
    drop(s);
    reply(
        conn,
        "302 Found",
        &format!("Location: {target}\r\n"),
        "redirecting",
    );
}

fn token(conn: &mut TcpStream, req: &Request, state: &Mutex<State>) {
    let f = &req.form;
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    if get("client_id") != s.client_id {
        drop(s);
        json(
            conn,
            "401 Unauthorized",
            serde_json::json!({"error": "invalid_client", "error_description": "unknown client"}),
        );
        return;
    }
    let invalid_grant = |conn: &mut TcpStream, why: &str| {
        json(
            conn,
            "400 Bad Request",
            serde_json::json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    let user = match get("grant_type").as_str() {
        "authorization_code" => {
            s.code_grants += 1;
            let verifier = get("code_verifier");
            s.secrets.push(verifier.clone());
            let Some((client, redirect, challenge, user)) = s.codes.remove(&get("code")) else {
                drop(s);
                return invalid_grant(conn, "unknown or used code");
            };
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if client != get("client_id")
                || redirect != get("redirect_uri")
                || computed != challenge
            {
                drop(s);
                return invalid_grant(conn, "PKCE or redirect mismatch");
            }
            user
        }
        "refresh_token" => {
            s.refresh_grants += 1;
            match s.refresh.get(&get("refresh_token")) {
                Some((user, false)) => user.clone(),
                _ => {
                    drop(s);
                    return invalid_grant(conn, "refresh token revoked");
                }
            }
        }
        _ => {
            drop(s);
            return json(
                conn,
                "400 Bad Request",
                serde_json::json!({"error": "unsupported_grant_type"}),
            );
        }
    };
    let access = s.fresh("at");
    let life = s.lifetime_secs;
    s.access.insert(
        access.clone(),
        (user.clone(), Instant::now() + Duration::from_secs(life)),
    );
    let mut answer = serde_json::json!({
        "access_token": access, "token_type": "Bearer", "expires_in": life,
    });
    if get("grant_type") == "authorization_code" {
        let refresh = s.fresh("rt");
        s.refresh.insert(refresh.clone(), (user, false));
        answer["refresh_token"] = refresh.into();
    }
    drop(s);
    json(conn, "200 OK", answer);
}

/// Open `url` as a browser would: GET, follow redirects (to the agent's loopback listener),
/// return the final status and page.
pub fn browse(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_redirects(5)
        .build()
        .into();
    let mut r = agent.get(url).call().expect("browser GET");
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}
