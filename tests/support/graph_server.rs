//! A Microsoft Graph mail server for the tests, shaped after Graph's documented behaviour (not
//! after mailpulse): HTTPS on 127.0.0.1 with the test CA, HTTP/1.1 keep-alive, bearer tokens
//! (401 with `WWW-Authenticate: Bearer …` and `InvalidAuthenticationToken`), the mail folders
//! (`/me/mailFolders`, well-known names, ids in both path forms `…/mailFolders/{id}` and
//! `…/mailFolders('{id}')`, `childFolders`, `$top`/`$skip`/`$select`), messages (`$top`,
//! `$select`, `$orderby=receivedDateTime desc|asc`), the message delta query (initial round with
//! an optional `$filter=receivedDateTime ge …`, `@odata.nextLink` pages sized by
//! `Prefer: odata.maxpagesize` (10 by default), `@odata.deltaLink`, `@removed` entries,
//! 410 `syncStateNotFound` for a lost token), Graph's error JSON
//! (`{"error":{"code":…,"message":…,"innerError":…}}`), and throttling (429 with `Retry-After`,
//! answered again to every request until the time has passed).
//!
//! The test delivers mail with [`GraphServer::deliver`] and asserts on [`GraphServer::log`]
//! (every request: time, method, path, status) and [`GraphServer::writes`] (requests with any
//! method but GET/HEAD: a read-only client sends none). [`GraphServer::down`] closes every
//! connection and refuses new ones until [`GraphServer::up`].

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};

use super::tls::{TlsFiles, write_test_pki};

/// The folders every mailbox has: (well-known name, display name).
const STANDARD: &[(&str, &str)] = &[
    ("inbox", "Inbox"),
    ("archive", "Archive"),
    ("drafts", "Drafts"),
    ("sentitems", "Sent Items"),
    ("deleteditems", "Deleted Items"),
    ("junkemail", "Junk Email"),
];

#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub folder: String,
    pub subject: String,
    pub from_name: String,
    pub from_address: String,
    pub received: DateTime<Utc>,
    pub is_read: bool,
}

#[derive(Debug, Clone)]
struct Folder {
    id: String,
    name: String,
    well_known: Option<&'static str>,
    parent: String,
}

#[derive(Debug, Clone)]
enum Change {
    Added(String),
    Removed(String),
}

/// What a delta token stands for.
#[derive(Debug, Clone)]
struct Sync {
    folder: String,
    /// Changes up to this index of `State::changes` are known to the client.
    seen: usize,
    since: Option<DateTime<Utc>>,
    /// The `$select` of the round that made the token (a deltaLink carries its query).
    select: Option<String>,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Default)]
struct State {
    folders: Vec<Folder>,
    messages: Vec<Message>,
    changes: Vec<(String, Change)>,
    deltas: HashMap<String, Sync>,
    /// Pages of a round in progress: skiptoken → (rest of the entries, the deltatoken at the end).
    pages: HashMap<String, (Vec<Value>, String)>,
    tokens: Vec<String>,
    throttled_until: Option<Instant>,
    /// What a throttled request gets: 429 (too many requests) or 503 (service unavailable).
    throttle_status: u16,
    log: Vec<Logged>,
}

pub struct GraphServer {
    pub port: u16,
    pub tls: TlsFiles,
    ctx: Ctx,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
struct Ctx {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    /// Requests are read but never answered (a dead path that still accepts bytes).
    stalled: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
    acceptor: Arc<native_tls::TlsAcceptor>,
    user: String,
    /// Every connection's socket, to close them all on `down`.
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    /// TLS connections accepted so far.
    connections: Arc<AtomicU64>,
}

impl GraphServer {
    /// A mailbox of `user` that accepts the bearer token `token`.
    pub fn start(user: &str, token: &str) -> GraphServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = write_test_pki(&dir.path().join("tls"));
        let cert = std::fs::read(&tls.cert_pem).unwrap();
        let key = std::fs::read(&tls.key_pem).unwrap();
        let identity = native_tls::Identity::from_pkcs8(&cert, &key).expect("identity");
        let acceptor = Arc::new(native_tls::TlsAcceptor::new(identity).expect("acceptor"));
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().unwrap().port();
        let mut state = State {
            tokens: vec![token.to_owned()],
            ..State::default()
        };
        state.folders.push(Folder {
            id: "AAMkAGRvb3Q-root".into(),
            name: "Top of Information Store".into(),
            well_known: Some("msgfolderroot"),
            parent: String::new(),
        });
        for (i, (wk, name)) in STANDARD.iter().enumerate() {
            state.folders.push(Folder {
                id: format!("AAMkAGRvb3QAAA{i:02}AAA="),
                name: (*name).into(),
                well_known: Some(wk),
                parent: "AAMkAGRvb3Q-root".into(),
            });
        }
        let ctx = Ctx {
            port,
            state: Arc::new(Mutex::new(state)),
            stop: Arc::new(AtomicBool::new(false)),
            down: Arc::new(AtomicBool::new(false)),
            stalled: Arc::new(AtomicBool::new(false)),
            next: Arc::new(AtomicU64::new(1)),
            acceptor,
            user: user.to_owned(),
            sockets: Arc::default(),
            connections: Arc::default(),
        };
        let c = ctx.clone();
        thread::spawn(move || c.accept_loop(Some(listener)));
        GraphServer {
            port,
            tls,
            ctx,
            _dir: dir,
        }
    }

    /// The service root, as `url` in the config.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/v1.0", self.port)
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.tls.ca_pem.clone()
    }

    /// A folder under `parent` (a well-known name or a folder id); its id.
    pub fn add_folder(&self, parent: &str, name: &str) -> String {
        let mut s = self.ctx.state.lock().unwrap();
        let parent = s.folder(parent).expect("parent folder").id.clone();
        let id = format!(
            "AAMkAGRvb3QAAF{:04}AAA=",
            self.ctx.next.fetch_add(1, Ordering::Relaxed)
        );
        s.folders.push(Folder {
            id: id.clone(),
            name: name.into(),
            well_known: None,
            parent,
        });
        id
    }

    /// A new message in `folder` (a well-known name or an id), received now; its id.
    pub fn deliver(
        &self,
        folder: &str,
        subject: &str,
        from_name: &str,
        from_address: &str,
    ) -> String {
        let n = self.ctx.next.fetch_add(1, Ordering::Relaxed);
        // Graph ids are long base64 strings with '-', '_' and '='.
        let id = format!("AAMkAGI2TG93AAA-{n:06}_BwCq=");
        let mut s = self.ctx.state.lock().unwrap();
        let folder = s.folder(folder).expect("folder").id.clone();
        s.messages.push(Message {
            id: id.clone(),
            folder: folder.clone(),
            subject: subject.into(),
            from_name: from_name.into(),
            from_address: from_address.into(),
            received: Utc::now().trunc_subsecs(0),
            is_read: false,
        });
        s.changes.push((folder, Change::Added(id.clone())));
        id
    }

    /// The message is deleted (a delta lists it as `@removed`).
    pub fn remove(&self, id: &str) {
        let mut s = self.ctx.state.lock().unwrap();
        if let Some(pos) = s.messages.iter().position(|m| m.id == id) {
            let m = s.messages.remove(pos);
            s.changes.push((m.folder, Change::Removed(m.id)));
        }
    }

    /// Accept this token from now on, and no other (the old one "expired").
    pub fn set_token(&self, token: &str) {
        self.ctx.state.lock().unwrap().tokens = vec![token.to_owned()];
    }

    /// Every delta token and round in progress is forgotten (410 `syncStateNotFound`).
    pub fn lose_delta_tokens(&self) {
        let mut s = self.ctx.state.lock().unwrap();
        s.deltas.clear();
        s.pages.clear();
    }

    /// Every request for the next `secs` seconds is answered 429 with `Retry-After` saying
    /// how long is left.
    pub fn throttle(&self, secs: u64) {
        self.throttle_with(429, secs);
    }

    /// Throttle with `status`: 429 (ApplicationThrottled) or 503 (serviceNotAvailable), both
    /// with `Retry-After`, as Graph answers them.
    pub fn throttle_with(&self, status: u16, secs: u64) {
        let mut s = self.ctx.state.lock().unwrap();
        s.throttled_until = Some(Instant::now() + Duration::from_secs(secs));
        s.throttle_status = status;
    }

    /// Close every connection and refuse new ones (the listener is closed) until [`up`].
    pub fn down(&self) {
        self.ctx.down.store(true, Ordering::SeqCst);
        for s in self.ctx.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // The accept loop closes the listener within its poll period.
        thread::sleep(Duration::from_millis(100));
    }

    /// From now on requests are read but not answered (`false`: answered again).
    pub fn stall(&self, on: bool) {
        self.ctx.stalled.store(on, Ordering::SeqCst);
    }

    /// Listen again on the same port.
    pub fn up(&self) {
        self.ctx.down.store(false, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.ctx.state.lock().unwrap().log.clone()
    }

    /// Requests so far whose path contains `part`.
    pub fn count(&self, part: &str) -> usize {
        self.log().iter().filter(|l| l.path.contains(part)).count()
    }

    /// Requests with a method other than GET or HEAD.
    pub fn writes(&self) -> usize {
        self.log()
            .iter()
            .filter(|l| l.method != "GET" && l.method != "HEAD")
            .count()
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.ctx.connections.load(Ordering::SeqCst)
    }

    /// Requests by method.
    pub fn methods(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for l in self.log() {
            *m.entry(l.method).or_default() += 1;
        }
        m
    }
}

impl Drop for GraphServer {
    fn drop(&mut self) {
        self.ctx.stop.store(true, Ordering::SeqCst);
        for s in self.ctx.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

struct Request {
    method: String,
    /// The path without the query, percent-decoded.
    path: String,
    query: Vec<(String, String)>,
    raw: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    Some(Request {
        method,
        path: decode(path),
        query,
        raw: target,
        headers,
    })
}

fn respond(
    w: &mut impl Write,
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> bool {
    let body = body.to_string();
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8\r\n\
         Content-Length: {}\r\nrequest-id: {}\r\nCache-Control: no-cache\r\nStrict-Transport-Security: max-age=31536000\r\n",
        body.len(),
        uuid_like(status as u64 + body.len() as u64)
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    w.write_all(head.as_bytes()).is_ok()
        && w.write_all(body.as_bytes()).is_ok()
        && w.flush().is_ok()
}

fn uuid_like(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n as u32, n)
}

fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "innerError": {
        "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "request-id": uuid_like(7), "client-request-id": uuid_like(8)}}})
}

impl State {
    /// A folder by well-known name (any case) or id.
    fn folder(&self, key: &str) -> Option<&Folder> {
        self.folders
            .iter()
            .find(|f| f.id == key || f.well_known.is_some_and(|w| w.eq_ignore_ascii_case(key)))
    }

    fn folder_json(&self, f: &Folder, select: Option<&str>) -> Value {
        let children = self.folders.iter().filter(|c| c.parent == f.id).count();
        let total = self.messages.iter().filter(|m| m.folder == f.id).count();
        let unread = self
            .messages
            .iter()
            .filter(|m| m.folder == f.id && !m.is_read)
            .count();
        let full = json!({
            "id": f.id, "displayName": f.name, "parentFolderId": f.parent,
            "childFolderCount": children, "unreadItemCount": unread,
            "totalItemCount": total, "sizeInBytes": total * 2048, "isHidden": false,
        });
        pick(full, select)
    }
}

fn message_json(m: &Message, select: Option<&str>) -> Value {
    let full = json!({
        "@odata.etag": format!("W/\"CQAAABYAAAA{}\"", m.id.len()),
        "id": m.id,
        "createdDateTime": m.received.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "lastModifiedDateTime": m.received.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "receivedDateTime": m.received.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "sentDateTime": m.received.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "hasAttachments": false,
        "subject": m.subject,
        "bodyPreview": "",
        "importance": "normal",
        "parentFolderId": m.folder,
        "conversationId": format!("AAQkAGI2{}", m.id.len()),
        "isRead": m.is_read,
        "isDraft": false,
        "from": {"emailAddress": {"name": m.from_name, "address": m.from_address}},
        "sender": {"emailAddress": {"name": m.from_name, "address": m.from_address}},
        "toRecipients": [],
    });
    pick(full, select)
}

/// `$select`: the named properties (and `id`, `@odata.etag`, which Graph always returns).
fn pick(full: Value, select: Option<&str>) -> Value {
    let Some(select) = select else { return full };
    let names: Vec<&str> = select.split(',').map(str::trim).collect();
    let Value::Object(map) = full else {
        return full;
    };
    Value::Object(
        map.into_iter()
            .filter(|(k, _)| k == "id" || k == "@odata.etag" || names.contains(&k.as_str()))
            .collect(),
    )
}

impl Ctx {
    fn accept_loop(self, mut listener: Option<TcpListener>) {
        while !self.stop.load(Ordering::SeqCst) {
            if self.down.load(Ordering::SeqCst) {
                // Closed: connections are refused.
                listener = None;
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            let l = match &listener {
                Some(l) => l,
                None => match TcpListener::bind(("127.0.0.1", self.port)) {
                    Ok(l) => {
                        listener = Some(l);
                        continue;
                    }
                    Err(_) => {
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                },
            };
            l.set_nonblocking(true).unwrap();
            match l.accept() {
                Ok((tcp, _)) => {
                    let ctx = self.clone();
                    thread::spawn(move || {
                        tcp.set_nonblocking(false).unwrap();
                        tcp.set_read_timeout(Some(Duration::from_secs(120)))
                            .unwrap();
                        if let Ok(clone) = tcp.try_clone() {
                            ctx.sockets.lock().unwrap().push(clone);
                        }
                        if let Ok(tls) = ctx.acceptor.accept(tcp) {
                            ctx.connections.fetch_add(1, Ordering::SeqCst);
                            ctx.serve(tls);
                        }
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn log(&self, req: &Request, status: u16) {
        self.state.lock().unwrap().log.push(Logged {
            at: Instant::now(),
            method: req.method.clone(),
            path: req.raw.clone(),
            status,
        });
    }

    fn serve<S: Read + Write>(&self, stream: S) {
        let mut stream = BufReader::new(stream);
        while let Some(req) = read_request(&mut stream) {
            if self.stop.load(Ordering::SeqCst) || self.down.load(Ordering::SeqCst) {
                return;
            }
            if self.stalled.load(Ordering::SeqCst) {
                self.log(&req, 0);
                // Never answered: this connection stays silent until the client gives up.
                while !self.stop.load(Ordering::SeqCst) && !self.down.load(Ordering::SeqCst) {
                    let mut b = [0u8; 1];
                    match stream.get_mut().read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                return;
            }
            let (status, headers, body) = self.answer(&req);
            self.log(&req, status);
            let reason = match status {
                200 => "OK",
                400 => "Bad Request",
                401 => "Unauthorized",
                404 => "Not Found",
                405 => "Method Not Allowed",
                410 => "Gone",
                429 => "Too Many Requests",
                _ => "Error",
            };
            if !respond(stream.get_mut(), status, reason, &headers, &body) {
                return;
            }
            if req
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"))
            {
                return;
            }
        }
    }

    fn answer(&self, req: &Request) -> (u16, Vec<(&'static str, String)>, Value) {
        let auth = req.header("authorization").unwrap_or("");
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .unwrap_or("");
        let mut s = self.state.lock().unwrap();
        if token.is_empty() || !s.tokens.iter().any(|t| t == token) {
            let (code, message) = if token.is_empty() {
                ("InvalidAuthenticationToken", "Access token is empty.")
            } else {
                (
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                )
            };
            return (
                401,
                vec![(
                    "WWW-Authenticate",
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\", error=\"invalid_token\"".into(),
                )],
                error(code, message),
            );
        }
        if let Some(until) = s.throttled_until {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                let retry = vec![("Retry-After", left.as_secs_f64().ceil().to_string())];
                return if s.throttle_status == 503 {
                    (
                        503,
                        retry,
                        error(
                            "serviceNotAvailable",
                            "The service is temporarily unavailable. Try again later.",
                        ),
                    )
                } else {
                    (
                        429,
                        retry,
                        error(
                            "ApplicationThrottled",
                            "Application is over its MailboxConcurrency limit.",
                        ),
                    )
                };
            }
        }
        if req.method != "GET" && req.method != "HEAD" {
            return (
                405,
                vec![],
                error(
                    "Request_BadRequest",
                    "Specified HTTP method is not allowed for the request target.",
                ),
            );
        }
        let base = format!("https://localhost:{}/v1.0", self.port);
        let Some(rest) = req.path.strip_prefix("/v1.0") else {
            return (400, vec![], error("BadRequest", "Invalid version."));
        };
        // /me or /users/{upn}
        let rest = if let Some(r) = rest.strip_prefix("/me") {
            r.to_owned()
        } else if let Some(r) = rest.strip_prefix("/users/") {
            let (user, r) = r.split_once('/').unwrap_or((r, ""));
            if !user.eq_ignore_ascii_case(&self.user) {
                return (
                    404,
                    vec![],
                    error(
                        "ErrorInvalidUser",
                        &format!("The requested user '{user}' is invalid."),
                    ),
                );
            }
            format!("/{r}").trim_end_matches('/').to_owned()
        } else {
            return (
                400,
                vec![],
                error(
                    "BadRequest",
                    &format!("Resource not found for the segment '{rest}'."),
                ),
            );
        };
        let select = req.param("$select");
        if rest.is_empty() {
            return (
                200,
                vec![],
                json!({
                    "@odata.context": format!("{base}/$metadata#users/$entity"),
                    "id": "48d31887-5fad-4d73-a9f5-3c356e68a038",
                    "displayName": "Alice", "mail": self.user, "userPrincipalName": self.user,
                }),
            );
        }
        let Some(rest) = rest.strip_prefix("/mailFolders") else {
            return (
                400,
                vec![],
                error(
                    "BadRequest",
                    &format!("Resource not found for the segment '{rest}'."),
                ),
            );
        };
        let top: usize = req.param("$top").and_then(|t| t.parse().ok()).unwrap_or(10);
        let skip: usize = req.param("$skip").and_then(|t| t.parse().ok()).unwrap_or(0);
        if rest.is_empty() {
            // Top-level folders: children of the root.
            let root = s.folder("msgfolderroot").unwrap().id.clone();
            return list_folders(
                &s,
                &root,
                select,
                top,
                skip,
                &format!("{base}/me/mailFolders"),
                &req.query,
            );
        }
        // "/{id}/…" or "('{id}')/…"
        let (key, tail) = if let Some(r) = rest.strip_prefix("('") {
            match r.split_once("')") {
                Some((k, t)) => (k.to_owned(), t.to_owned()),
                None => return (400, vec![], error("BadRequest", "Bad key syntax.")),
            }
        } else {
            let r = rest.trim_start_matches('/');
            let (k, t) = r.split_once('/').unwrap_or((r, ""));
            (
                k.to_owned(),
                if t.is_empty() {
                    String::new()
                } else {
                    format!("/{t}")
                },
            )
        };
        let Some(folder) = s.folder(&key).cloned() else {
            return (
                404,
                vec![],
                error(
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                ),
            );
        };
        match tail.as_str() {
            "" => {
                let mut v = s.folder_json(&folder, select);
                v["@odata.context"] = json!(format!(
                    "{base}/$metadata#users('{}')/mailFolders/$entity",
                    self.user
                ));
                (200, vec![], v)
            }
            "/childFolders" => list_folders(
                &s,
                &folder.id,
                select,
                top,
                skip,
                &format!("{base}/me/mailFolders('{}')/childFolders", folder.id),
                &req.query,
            ),
            "/messages" => {
                let mut msgs: Vec<&Message> = s
                    .messages
                    .iter()
                    .filter(|m| m.folder == folder.id)
                    .collect();
                match req.param("$orderby").map(|o| o.trim().to_ascii_lowercase()) {
                    None => msgs.sort_by_key(|m| std::cmp::Reverse(m.received)),
                    Some(o) if o == "receiveddatetime desc" => {
                        msgs.sort_by_key(|m| std::cmp::Reverse(m.received))
                    }
                    Some(o) if o == "receiveddatetime" || o == "receiveddatetime asc" => {
                        msgs.sort_by_key(|m| m.received)
                    }
                    Some(o) => {
                        return (
                            400,
                            vec![],
                            error(
                                "ErrorInvalidProperty",
                                &format!("Could not find a property named '{o}'."),
                            ),
                        );
                    }
                }
                let total = msgs.len();
                let page: Vec<Value> = msgs
                    .iter()
                    .skip(skip)
                    .take(top)
                    .map(|m| message_json(m, select))
                    .collect();
                let mut v = json!({
                    "@odata.context": format!("{base}/$metadata#users('{}')/mailFolders('{}')/messages", self.user, folder.id),
                    "value": page,
                });
                if skip + top < total {
                    v["@odata.nextLink"] = json!(format!(
                        "{base}/me/mailFolders/{}/messages?{}",
                        folder.id,
                        requery(&req.query, &[("$skip", (skip + top).to_string())])
                    ));
                }
                (200, vec![], v)
            }
            // A function: OData allows the call with or without its parentheses.
            "/messages/delta" | "/messages/delta()" => self.delta(&mut s, req, &folder, &base),
            _ => (
                400,
                vec![],
                error(
                    "BadRequest",
                    &format!("Resource not found for the segment '{tail}'."),
                ),
            ),
        }
    }

    fn delta(
        &self,
        s: &mut State,
        req: &Request,
        folder: &Folder,
        base: &str,
    ) -> (u16, Vec<(&'static str, String)>, Value) {
        let page_size = req
            .header("prefer")
            .and_then(|p| {
                p.split(',').find_map(|x| {
                    x.trim()
                        .strip_prefix("odata.maxpagesize=")?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
            })
            .unwrap_or(10)
            .max(1);
        let link_base = format!("{base}/me/mailFolders('{}')/messages/delta", folder.id);
        let gone = || {
            (
                410,
                vec![],
                error(
                    "syncStateNotFound",
                    "The sync state generation is not found, please start a new sync.",
                ),
            )
        };
        let (entries, deltatoken) = if let Some(skip) = req.param("$skiptoken") {
            match s.pages.remove(skip) {
                Some(p) => p,
                None => return gone(),
            }
        } else {
            let (sync, start) = if let Some(dt) = req.param("$deltatoken") {
                match s.deltas.get(dt) {
                    Some(sync) if sync.folder == folder.id => (sync.clone(), false),
                    _ => return gone(),
                }
            } else {
                let since = match req.param("$filter") {
                    None => None,
                    Some(f) => {
                        let f = f.trim();
                        let value = f
                            .strip_prefix("receivedDateTime ge ")
                            .or_else(|| f.strip_prefix("receivedDateTime gt "));
                        match value.and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok()) {
                            Some(t) => Some(t.with_timezone(&Utc)),
                            None => {
                                return (
                                    400,
                                    vec![],
                                    error(
                                        "ErrorInvalidUrlQueryFilter",
                                        "The only supported filter is receivedDateTime ge/gt.",
                                    ),
                                );
                            }
                        }
                    }
                };
                let select = req.param("$select").map(str::to_owned);
                (
                    Sync {
                        folder: folder.id.clone(),
                        seen: 0,
                        since,
                        select,
                    },
                    true,
                )
            };
            let select = sync.select.clone();
            let in_range = |m: &Message| sync.since.is_none_or(|t| m.received >= t);
            let mut entries = Vec::new();
            if start {
                for m in s
                    .messages
                    .iter()
                    .filter(|m| m.folder == folder.id && in_range(m))
                {
                    entries.push(message_json(m, select.as_deref()));
                }
            } else {
                let mut listed = std::collections::HashSet::new();
                for (f, change) in s.changes.iter().skip(sync.seen) {
                    if *f != folder.id {
                        continue;
                    }
                    match change {
                        Change::Added(id) => {
                            if let Some(m) = s.messages.iter().find(|m| &m.id == id && in_range(m))
                                && listed.insert(id.clone())
                            {
                                entries.push(message_json(m, select.as_deref()));
                            }
                        }
                        Change::Removed(id) => {
                            if listed.insert(id.clone()) {
                                entries.push(json!({"@odata.type": "#microsoft.graph.message", "id": id, "@removed": {"reason": "deleted"}}));
                            }
                        }
                    }
                }
            }
            let token = format!("dt{}", self.next.fetch_add(1, Ordering::Relaxed));
            s.deltas.insert(
                token.clone(),
                Sync {
                    seen: s.changes.len(),
                    ..sync
                },
            );
            (entries, token)
        };
        let rest = if entries.len() > page_size {
            entries[page_size..].to_vec()
        } else {
            Vec::new()
        };
        let page: Vec<Value> = entries.into_iter().take(page_size).collect();
        let mut v = json!({
            "@odata.context": format!("{base}/$metadata#Collection(message)"),
            "value": page,
        });
        if rest.is_empty() {
            v["@odata.deltaLink"] = json!(format!("{link_base}?$deltatoken={deltatoken}"));
        } else {
            let skip = format!("sk{}", self.next.fetch_add(1, Ordering::Relaxed));
            s.pages.insert(skip.clone(), (rest, deltatoken));
            v["@odata.nextLink"] = json!(format!("{link_base}?$skiptoken={skip}"));
        }
        (
            200,
            vec![(
                "Preference-Applied",
                format!("odata.maxpagesize={page_size}"),
            )],
            v,
        )
    }
}

fn requery(query: &[(String, String)], set: &[(&str, String)]) -> String {
    let mut q: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !set.iter().any(|(s, _)| s == k))
        .cloned()
        .collect();
    q.extend(set.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    q.iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn list_folders(
    s: &State,
    parent: &str,
    select: Option<&str>,
    top: usize,
    skip: usize,
    link: &str,
    query: &[(String, String)],
) -> (u16, Vec<(&'static str, String)>, Value) {
    let all: Vec<&Folder> = s.folders.iter().filter(|f| f.parent == parent).collect();
    let page: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(top)
        .map(|f| s.folder_json(f, select))
        .collect();
    let mut v = json!({"@odata.context": "https://localhost/v1.0/$metadata#users('x')/mailFolders", "value": page});
    if skip + top < all.len() {
        v["@odata.nextLink"] = json!(format!(
            "{link}?{}",
            requery(query, &[("$skip", (skip + top).to_string())])
        ));
    }
    (200, vec![], v)
}
