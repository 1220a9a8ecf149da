//! A protocol-faithful Exchange Web Services server for the tests (there is no open-source one
//! that runs here): HTTPS on 127.0.0.1 with the test CA, HTTP/1.1 keep-alive, Basic and NTLM
//! challenge/response, and the operations a notifier needs — GetFolder, FindItem (paged, sorted),
//! GetItem, Subscribe (streaming and pull), GetEvents, GetStreamingEvents with real chunked
//! multi-envelope answers (notifications, heartbeats, `ConnectionStatus Closed`), expired
//! subscriptions, `ErrorServerBusy` with `BackOffMilliseconds`, malformed bodies.
//!
//! The test "delivers" mail with [`EwsServer::deliver`] and asserts on [`EwsServer::count`]
//! (requests by operation). Every request received and every response sent is kept, so that
//! [`EwsServer::validate`] can check them all against Microsoft's schema with xmllint
//! (see [`super::ews_schema`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, SubsecRound, Utc};
use mailpulse::testing::xml::{El, parse};

use super::tls::{TlsFiles, write_test_pki};

pub const NS_T: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
pub const NS_M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
pub const NS_S: &str = "http://schemas.xmlsoap.org/soap/envelope/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `WWW-Authenticate: Basic`.
    Basic,
    /// `WWW-Authenticate: NTLM` (and Negotiate), the handshake bound to the connection.
    Ntlm,
    /// `Authorization: Bearer <password>` (an OAuth2 access token, as Exchange Online).
    Bearer,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub user: String,
    pub password: String,
    pub auth: AuthMode,
    /// Between heartbeats on a notification stream.
    pub heartbeat: Duration,
    /// A stream ends with `ConnectionStatus Closed` after this long (at most ConnectionTimeout).
    pub stream_lifetime: Duration,
    /// Refuse streaming subscriptions (as Exchange 2007 would): clients fall back.
    pub streaming: bool,
    /// Refuse pull subscriptions too.
    pub pull: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            user: "alice@example.com".into(),
            password: "secret-pw".into(),
            auth: AuthMode::Basic,
            heartbeat: Duration::from_secs(2),
            stream_lifetime: Duration::from_secs(3600),
            streaming: true,
            pull: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub subject: String,
    pub from_name: String,
    pub from_address: String,
    pub received: DateTime<Utc>,
    pub is_read: bool,
}

#[derive(Debug)]
struct Subscription {
    streaming: bool,
    /// Event item ids not yet delivered.
    pending: Vec<String>,
    watermark: u64,
}

#[derive(Default)]
struct State {
    items: Vec<Item>,
    subscriptions: HashMap<String, Subscription>,
    counts: HashMap<String, usize>,
    /// Streams opened before this generation stay silent (a dead NAT mapping).
    stall_before: u64,
    stream_generation: u64,
    /// The next request answers ErrorServerBusy with this hint.
    busy_next: Option<u64>,
    /// The next FindItem answers garbage.
    malformed_next: bool,
    /// Every EWS request is refused with 403, as Exchange Online answers apps it blocks.
    forbidden: bool,
    /// Every request body and response envelope, for schema validation.
    transcript: Vec<(String, String)>,
    /// The X-AnchorMailbox headers seen.
    anchors: Vec<String>,
    /// Every counted request with its time.
    log: Vec<(Instant, String)>,
}

pub struct EwsServer {
    pub port: u16,
    pub tls: TlsFiles,
    opts: Options,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

impl EwsServer {
    pub fn start(opts: Options) -> EwsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = write_test_pki(&dir.path().join("tls"));
        let cert = std::fs::read(&tls.cert_pem).unwrap();
        let key = std::fs::read(&tls.key_pem).unwrap();
        let identity = native_tls::Identity::from_pkcs8(&cert, &key).expect("identity");
        let acceptor = Arc::new(native_tls::TlsAcceptor::new(identity).expect("acceptor"));
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = EwsServer {
            port,
            tls,
            opts,
            state: Arc::new((Mutex::new(State::default()), Condvar::new())),
            stop: Arc::new(AtomicBool::new(false)),
            next_id: Arc::new(AtomicU64::new(1)),
            _dir: dir,
        };
        let ctx = server.ctx();
        thread::spawn(move || {
            while !ctx.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let ctx = ctx.clone();
                        let acceptor = acceptor.clone();
                        thread::spawn(move || {
                            tcp.set_nonblocking(false).unwrap();
                            tcp.set_read_timeout(Some(Duration::from_secs(120)))
                                .unwrap();
                            if let Ok(tls) = acceptor.accept(tcp) {
                                ctx.serve(tls);
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        server
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            port: self.port,
            opts: self.opts.clone(),
            state: self.state.clone(),
            stop: self.stop.clone(),
            next_id: self.next_id.clone(),
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/EWS/Exchange.asmx", self.port)
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.tls.ca_pem.clone()
    }

    /// A new message in the inbox, announced to every subscription.
    pub fn deliver(&self, subject: &str, from_name: &str, from_address: &str) -> String {
        let id = format!(
            "AAMkAD{:08}item{}",
            self.next_id.fetch_add(1, Ordering::Relaxed),
            subject.len()
        );
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.items.push(Item {
            id: id.clone(),
            subject: subject.into(),
            from_name: from_name.into(),
            from_address: from_address.into(),
            received: Utc::now().trunc_subsecs(0),
            is_read: false,
        });
        for sub in s.subscriptions.values_mut() {
            sub.pending.push(id.clone());
        }
        cv.notify_all();
        id
    }

    /// Requests of this operation (`FindItem`, ...; `401` for challenges) so far.
    pub fn count(&self, op: &str) -> usize {
        let s = self.state.0.lock().unwrap();
        s.counts.get(op).copied().unwrap_or(0)
    }

    pub fn counts(&self) -> HashMap<String, usize> {
        self.state.0.lock().unwrap().counts.clone()
    }

    /// Every request (operation, or `401`) with when it arrived.
    pub fn log(&self) -> Vec<(Instant, String)> {
        self.state.0.lock().unwrap().log.clone()
    }

    pub fn anchors(&self) -> Vec<String> {
        self.state.0.lock().unwrap().anchors.clone()
    }

    /// Every open notification stream falls silent for good (no heartbeat, no close), as when
    /// a NAT gateway dropped the mapping. Streams opened afterwards work.
    pub fn stall_streams(&self) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.stall_before = s.stream_generation + 1;
        cv.notify_all();
    }

    /// Every subscription expires (as after the server restarted or the mailbox moved).
    pub fn expire_subscriptions(&self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().subscriptions.clear();
        cv.notify_all();
    }

    pub fn subscriptions(&self) -> usize {
        self.state.0.lock().unwrap().subscriptions.len()
    }

    pub fn busy_next(&self, back_off_ms: u64) {
        self.state.0.lock().unwrap().busy_next = Some(back_off_ms);
    }

    pub fn malformed_next(&self) {
        self.state.0.lock().unwrap().malformed_next = true;
    }

    /// Refuse every EWS request from now on with `403 Forbidden`.
    pub fn forbid(&self) {
        self.state.0.lock().unwrap().forbidden = true;
    }

    /// Requests and responses so far: (label, document).
    pub fn transcript(&self) -> Vec<(String, String)> {
        self.state.0.lock().unwrap().transcript.clone()
    }

    /// Validate every request and response so far against the EWS schema; returns how many.
    pub fn validate(&self) -> usize {
        let docs = self.transcript();
        super::ews_schema::validate_envelopes(&docs);
        docs.len()
    }
}

impl Drop for EwsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.state.1.notify_all();
    }
}

#[derive(Clone)]
struct Ctx {
    port: u16,
    opts: Options,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
}

struct Request {
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
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
    Some(Request {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn respond(w: &mut impl Write, status: &str, headers: &[(&str, String)], body: &str) -> bool {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    w.write_all(head.as_bytes()).is_ok()
        && w.write_all(body.as_bytes()).is_ok()
        && w.flush().is_ok()
}

fn chunk(w: &mut impl Write, data: &str) -> bool {
    w.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
        .is_ok()
        && w.flush().is_ok()
}

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{NS_S}\"><s:Header>\
         <h:ServerVersionInfo MajorVersion=\"15\" MinorVersion=\"1\" MajorBuildNumber=\"2507\" \
         MinorBuildNumber=\"6\" Version=\"V2017_07_11\" xmlns:h=\"{NS_T}\"/></s:Header>\
         <s:Body xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">{body}</s:Body></s:Envelope>"
    )
}

fn response(op: &str, inner: &str) -> String {
    envelope(&format!(
        "<m:{op}Response xmlns:m=\"{NS_M}\" xmlns:t=\"{NS_T}\"><m:ResponseMessages>{inner}</m:ResponseMessages></m:{op}Response>"
    ))
}

fn ok_message(op: &str, inner: &str) -> String {
    format!(
        "<m:{op}ResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{op}ResponseMessage>"
    )
}

fn error_message(op: &str, code: &str, text: &str) -> String {
    format!(
        "<m:{op}ResponseMessage ResponseClass=\"Error\"><m:MessageText>{text}</m:MessageText>\
         <m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:{op}ResponseMessage>"
    )
}

fn busy_fault(ms: u64) -> String {
    envelope(&format!(
        "<s:Fault><faultcode xmlns:a=\"{NS_T}\">a:ErrorServerBusy</faultcode>\
         <faultstring xml:lang=\"en-US\">The server cannot service this request right now. Try again later.</faultstring>\
         <detail><e:ResponseCode xmlns:e=\"{NS_T}\">ErrorServerBusy</e:ResponseCode>\
         <e:Message xmlns:e=\"{NS_T}\">The server cannot service this request right now. Try again later.</e:Message>\
         <t:MessageXml xmlns:t=\"{NS_T}\"><t:Value Name=\"BackOffMilliseconds\">{ms}</t:Value></t:MessageXml></detail></s:Fault>"
    ))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn message_xml(i: &Item) -> String {
    format!(
        "<t:Message><t:ItemId Id=\"{}\" ChangeKey=\"CQAAABYAAAA\"/><t:Subject>{}</t:Subject>\
         <t:DateTimeReceived>{}</t:DateTimeReceived><t:From><t:Mailbox><t:Name>{}</t:Name>\
         <t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType></t:Mailbox></t:From>\
         <t:IsRead>{}</t:IsRead></t:Message>",
        esc(&i.id),
        esc(&i.subject),
        i.received.format("%Y-%m-%dT%H:%M:%SZ"),
        esc(&i.from_name),
        esc(&i.from_address),
        i.is_read
    )
}

/// The operation element inside soap:Body.
fn operation(root: &El) -> Option<&El> {
    root.child("Body")?.children.first()
}

impl Ctx {
    fn count(&self, op: &str) {
        let mut s = self.state.0.lock().unwrap();
        *s.counts.entry(op.to_owned()).or_default() += 1;
        s.log.push((Instant::now(), op.to_owned()));
    }

    fn record(&self, label: &str, doc: &str) {
        self.state
            .0
            .lock()
            .unwrap()
            .transcript
            .push((label.to_owned(), doc.to_owned()));
    }

    fn challenge(&self) -> Vec<(&'static str, String)> {
        match self.opts.auth {
            AuthMode::Basic => vec![("WWW-Authenticate", "Basic realm=\"localhost\"".into())],
            AuthMode::Ntlm => vec![
                ("WWW-Authenticate", "Negotiate".into()),
                ("WWW-Authenticate", "NTLM".into()),
            ],
            AuthMode::Bearer => vec![(
                "WWW-Authenticate",
                "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", error=\"invalid_token\"".into(),
            )],
        }
    }

    fn serve<S: Read + Write>(&self, stream: S) {
        let mut stream = BufReader::new(stream);
        let mut ntlm = super::ntlm_server::Handshake::new(&self.opts.user, &self.opts.password);
        let mut authenticated = false;
        while let Some(req) = read_request(&mut stream) {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let auth = req.header("authorization").unwrap_or("").to_owned();
            let ok = match self.opts.auth {
                AuthMode::Basic => {
                    let expected = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("{}:{}", self.opts.user, self.opts.password))
                    );
                    auth == expected
                }
                AuthMode::Bearer => auth == format!("Bearer {}", self.opts.password),
                AuthMode::Ntlm => {
                    if authenticated && auth.is_empty() {
                        true
                    } else if let Some(token) = auth
                        .strip_prefix("NTLM ")
                        .or_else(|| auth.strip_prefix("Negotiate "))
                    {
                        match ntlm.step(token) {
                            super::ntlm_server::Step::Challenge(c) => {
                                self.count("401");
                                let ok = respond(
                                    stream.get_mut(),
                                    "401 Unauthorized",
                                    &[("WWW-Authenticate", format!("NTLM {c}"))],
                                    "",
                                );
                                if !ok {
                                    return;
                                }
                                continue;
                            }
                            super::ntlm_server::Step::Done(good) => {
                                authenticated = good;
                                good
                            }
                        }
                    } else {
                        false
                    }
                }
            };
            if !ok {
                self.count("401");
                if !respond(stream.get_mut(), "401 Unauthorized", &self.challenge(), "") {
                    return;
                }
                if self.opts.auth == AuthMode::Ntlm {
                    ntlm = super::ntlm_server::Handshake::new(&self.opts.user, &self.opts.password);
                }
                continue;
            }
            if let Some(anchor) = req.header("x-anchormailbox") {
                self.state.0.lock().unwrap().anchors.push(anchor.to_owned());
            }
            if req
                .header("cookie")
                .is_some_and(|c| c.contains("X-BackEndOverrideCookie=EX1~1942"))
            {
                *self
                    .state
                    .0
                    .lock()
                    .unwrap()
                    .counts
                    .entry("cookie".into())
                    .or_default() += 1;
            }
            self.record("request", &req.body);
            let root = match parse(req.body.as_bytes()) {
                Ok(r) => r,
                Err(_) => {
                    self.count("malformed-request");
                    respond(stream.get_mut(), "400 Bad Request", &[], "");
                    return;
                }
            };
            if root.name == "Autodiscover" {
                self.count("Autodiscover");
                let body = self.autodiscover(&root);
                if !respond(stream.get_mut(), "200 OK", &[], &body) {
                    return;
                }
                continue;
            }
            let Some(op) = operation(&root) else {
                respond(stream.get_mut(), "400 Bad Request", &[], "");
                return;
            };
            let name = op.name.clone();
            self.count(&name);
            if self.state.0.lock().unwrap().forbidden {
                if !respond(stream.get_mut(), "403 Forbidden", &[], "") {
                    return;
                }
                continue;
            }
            let busy = self.state.0.lock().unwrap().busy_next.take();
            if let Some(ms) = busy {
                let body = busy_fault(ms);
                self.record("response", &body);
                if !respond(stream.get_mut(), "500 Internal Server Error", &[], &body) {
                    return;
                }
                continue;
            }
            if name == "GetStreamingEvents" {
                self.stream(stream.get_mut(), op);
                return;
            }
            let body = match name.as_str() {
                "GetFolder" => self.get_folder(),
                "FindItem" => {
                    let bad = std::mem::take(&mut self.state.0.lock().unwrap().malformed_next);
                    if bad {
                        let garbage = "<s:Envelope><s:Body><m:FindItemResponse>\u{0}\u{1}<<<";
                        if !respond(stream.get_mut(), "200 OK", &[], garbage) {
                            return;
                        }
                        continue;
                    }
                    self.find_item(op)
                }
                "GetItem" => self.get_item(op),
                "Subscribe" => self.subscribe(op),
                "GetEvents" => self.get_events(op),
                "Unsubscribe" => {
                    let id = op
                        .find("SubscriptionId")
                        .map(|e| e.text.clone())
                        .unwrap_or_default();
                    self.state.0.lock().unwrap().subscriptions.remove(&id);
                    response("Unsubscribe", &ok_message("Unsubscribe", ""))
                }
                "ResolveNames" | "GetServerTimeZones" | "ConvertId" => response(
                    &name,
                    &error_message(
                        &name,
                        "ErrorInvalidOperation",
                        "Not supported by the test server.",
                    ),
                ),
                _ => envelope(&format!(
                    "<s:Fault><faultcode>s:Client</faultcode><faultstring>The test server does not implement {name}</faultstring></s:Fault>"
                )),
            };
            self.record("response", &body);
            let status = if body.contains("<s:Fault>") {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if !respond(
                stream.get_mut(),
                status,
                &[(
                    "Set-Cookie",
                    "X-BackEndOverrideCookie=EX1~1942; path=/; secure".into(),
                )],
                &body,
            ) {
                return;
            }
        }
    }

    /// POX autodiscover: the EWS URL for the user, a redirect for `old@…`, a redirect to another
    /// server (`https://127.0.0.1:PORT/…`, outside the address's domain) for `moved@…`, an error
    /// otherwise.
    fn autodiscover(&self, root: &El) -> String {
        let email = root
            .find("EMailAddress")
            .map(|e| e.text.trim().to_owned())
            .unwrap_or_default();
        let head = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\"><Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">";
        let tail = "</Response></Autodiscover>";
        if email.starts_with("old@") {
            return format!(
                "{head}<Account><AccountType>email</AccountType><Action>redirectAddr</Action><RedirectAddr>{}</RedirectAddr></Account>{tail}",
                esc(&self.opts.user)
            );
        }
        if email.starts_with("moved@") {
            return format!(
                "{head}<Account><AccountType>email</AccountType><Action>redirectUrl</Action><RedirectUrl>https://127.0.0.1:{}/autodiscover/autodiscover.xml</RedirectUrl></Account>{tail}",
                self.port
            );
        }
        if email.starts_with("escape@") {
            // XML 1.0 allows no C0 controls but tab/CR/LF, even as references; C1 controls
            // (here CSI, U+009B: "ESC [" on many terminals) and bidi overrides it allows.
            return format!(
                "{head}<Error Time=\"10:00:00\" Id=\"1\"><ErrorCode>500</ErrorCode><Message>Not here\u{9b}2J\u{202e}gnp.exe</Message><DebugData/></Error>{tail}"
            );
        }
        if !email.eq_ignore_ascii_case(&self.opts.user) {
            return format!(
                "{head}<Error Time=\"10:00:00\" Id=\"1\"><ErrorCode>500</ErrorCode><Message>The email address can't be found.</Message><DebugData/></Error>{tail}"
            );
        }
        format!(
            "{head}<User><DisplayName>Alice</DisplayName></User><Account><AccountType>email</AccountType><Action>settings</Action>\
             <Protocol><Type>EXCH</Type><Server>exch01.example.com</Server><EwsUrl>https://localhost:{}/EWS/Exchange.asmx</EwsUrl></Protocol></Account>{tail}",
            self.port
        )
    }

    fn get_folder(&self) -> String {
        let s = self.state.0.lock().unwrap();
        let unread = s.items.iter().filter(|i| !i.is_read).count();
        response(
            "GetFolder",
            &ok_message(
                "GetFolder",
                &format!(
                    "<m:Folders><t:Folder><t:FolderId Id=\"AQMkADAwATM0MDAAinbox\" ChangeKey=\"AQAAABYAAAA\"/>\
                     <t:DisplayName>Inbox</t:DisplayName><t:TotalCount>{}</t:TotalCount>\
                     <t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>{unread}</t:UnreadCount></t:Folder></m:Folders>",
                    s.items.len()
                ),
            ),
        )
    }

    fn find_item(&self, op: &El) -> String {
        let view = op.child("IndexedPageItemView");
        let max: usize = view
            .and_then(|v| v.attr("MaxEntriesReturned"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX);
        let offset: usize = view
            .and_then(|v| v.attr("Offset"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ascending = op
            .find("FieldOrder")
            .is_some_and(|o| o.attr("Order") == Some("Ascending"));
        let s = self.state.0.lock().unwrap();
        // Newest first by DateTimeReceived; equal times in reverse delivery order.
        let mut items: Vec<&Item> = s.items.iter().rev().collect();
        items.sort_by_key(|i| std::cmp::Reverse(i.received));
        if ascending {
            items.reverse();
        }
        let total = items.len();
        let page: Vec<&Item> = items.into_iter().skip(offset).take(max).collect();
        let last = offset + page.len() >= total;
        let xml: String = page.iter().map(|i| message_xml(i)).collect();
        response(
            "FindItem",
            &ok_message(
                "FindItem",
                &format!(
                    "<m:RootFolder IndexedPagingOffset=\"{}\" TotalItemsInView=\"{total}\" IncludesLastItemInRange=\"{last}\"><t:Items>{xml}</t:Items></m:RootFolder>",
                    offset + page.len()
                ),
            ),
        )
    }

    fn get_item(&self, op: &El) -> String {
        let s = self.state.0.lock().unwrap();
        let mut out = String::new();
        if let Some(ids) = op.child("ItemIds") {
            for id in &ids.children {
                let id = id.attr("Id").unwrap_or("");
                match s.items.iter().find(|i| i.id == id) {
                    Some(i) => {
                        out += &ok_message(
                            "GetItem",
                            &format!("<m:Items>{}</m:Items>", message_xml(i)),
                        )
                    }
                    None => {
                        out += &error_message(
                            "GetItem",
                            "ErrorItemNotFound",
                            "The specified object was not found in the store.",
                        )
                    }
                }
            }
        }
        response("GetItem", &out)
    }

    fn subscribe(&self, op: &El) -> String {
        let streaming = op.child("StreamingSubscriptionRequest").is_some();
        if (streaming && !self.opts.streaming) || (!streaming && !self.opts.pull) {
            return response(
                "Subscribe",
                &error_message(
                    "Subscribe",
                    "ErrorInvalidSubscriptionRequest",
                    "This kind of subscription is not supported.",
                ),
            );
        }
        let id = format!(
            "JwBzdWIx{:06}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (lock, _) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.subscriptions.insert(
            id.clone(),
            Subscription {
                streaming,
                pending: Vec::new(),
                watermark: 1,
            },
        );
        let watermark = if streaming {
            String::new()
        } else {
            "<m:Watermark>AQAAAA1</m:Watermark>".into()
        };
        response(
            "Subscribe",
            &ok_message(
                "Subscribe",
                &format!("<m:SubscriptionId>{id}</m:SubscriptionId>{watermark}"),
            ),
        )
    }

    fn events_xml(id: &str, ids: &[String], watermark: u64, with_watermark: bool) -> String {
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        let wm = |n: u64| {
            if with_watermark {
                format!("<t:Watermark>AQAAAA{n}</t:Watermark>")
            } else {
                String::new()
            }
        };
        let mut xml = String::new();
        for (n, item) in ids.iter().enumerate() {
            for kind in ["NewMailEvent", "CreatedEvent"] {
                xml += &format!(
                    "<t:{kind}>{}<t:TimeStamp>{now}</t:TimeStamp><t:ItemId Id=\"{item}\" ChangeKey=\"CQAAABYAAAA\"/>\
                     <t:ParentFolderId Id=\"AQMkADAwATM0MDAAinbox\" ChangeKey=\"AQAAAA==\"/></t:{kind}>",
                    wm(watermark + n as u64 + 1)
                );
            }
        }
        let _ = id;
        xml
    }

    fn get_events(&self, op: &El) -> String {
        let id = op
            .child_text("SubscriptionId")
            .unwrap_or("")
            .trim()
            .to_owned();
        let (lock, _) = &*self.state;
        let mut s = lock.lock().unwrap();
        let Some(sub) = s.subscriptions.get_mut(&id) else {
            return response(
                "GetEvents",
                &error_message(
                    "GetEvents",
                    "ErrorSubscriptionNotFound",
                    "The specified subscription was not found.",
                ),
            );
        };
        let pending = std::mem::take(&mut sub.pending);
        let previous = sub.watermark;
        let events = if pending.is_empty() {
            sub.watermark += 1;
            format!(
                "<t:StatusEvent><t:Watermark>AQAAAA{}</t:Watermark></t:StatusEvent>",
                sub.watermark
            )
        } else {
            let e = Self::events_xml(&id, &pending, sub.watermark, true);
            sub.watermark += 2 * pending.len() as u64;
            e
        };
        response(
            "GetEvents",
            &ok_message(
                "GetEvents",
                &format!(
                    "<m:Notification><t:SubscriptionId>{id}</t:SubscriptionId><t:PreviousWatermark>AQAAAA{previous}</t:PreviousWatermark>\
                     <t:MoreEvents>false</t:MoreEvents>{events}</m:Notification>"
                ),
            ),
        )
    }

    /// GetStreamingEvents: a chunked answer of whole envelopes until Closed.
    fn stream<W: Write>(&self, w: &mut W, op: &El) {
        let id = op
            .find("SubscriptionId")
            .map(|e| e.text.trim().to_owned())
            .unwrap_or_default();
        let minutes: u64 = op
            .child_text("ConnectionTimeout")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(30);
        let (lock, cv) = &*self.state;
        let generation = {
            let mut s = lock.lock().unwrap();
            if !s.subscriptions.contains_key(&id) {
                drop(s);
                let body = response(
                    "GetStreamingEvents",
                    &error_message(
                        "GetStreamingEvents",
                        "ErrorSubscriptionNotFound",
                        "The specified subscription was not found.",
                    ),
                );
                self.record("response", &body);
                respond(w, "200 OK", &[], &body);
                return;
            }
            s.stream_generation += 1;
            s.stream_generation
        };
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n";
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
        let lifetime = self
            .opts
            .stream_lifetime
            .min(Duration::from_secs(minutes * 60));
        let end = Instant::now() + lifetime;
        let mut next_beat = Instant::now() + self.opts.heartbeat;
        let send = |w: &mut W, inner: &str| {
            let body = response(
                "GetStreamingEvents",
                &ok_message("GetStreamingEvents", inner),
            );
            self.record("response", &body);
            chunk(w, &body)
        };
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let mut s = lock.lock().unwrap();
            if s.stall_before > generation {
                // A dead mapping: nothing ever arrives; the client must notice by itself.
                drop(s);
                while !self.stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(100));
                }
                return;
            }
            let Some(sub) = s.subscriptions.get_mut(&id) else {
                drop(s);
                let body = response(
                    "GetStreamingEvents",
                    &error_message(
                        "GetStreamingEvents",
                        "ErrorSubscriptionNotFound",
                        "The specified subscription was not found.",
                    ),
                );
                self.record("response", &body);
                let _ = chunk(w, &body) && chunk(w, "");
                return;
            };
            let pending = std::mem::take(&mut sub.pending);
            let streaming = sub.streaming;
            drop(s);
            if !pending.is_empty() && streaming {
                let events = Self::events_xml(&id, &pending, 0, false);
                let ok = send(
                    w,
                    &format!(
                        "<m:Notifications><m:Notification><t:SubscriptionId>{id}</t:SubscriptionId>{events}</m:Notification></m:Notifications>"
                    ),
                );
                if !ok {
                    return;
                }
                continue;
            }
            let now = Instant::now();
            if now >= end {
                let _ = send(w, "<m:ConnectionStatus>Closed</m:ConnectionStatus>") && chunk(w, "");
                return;
            }
            if now >= next_beat {
                if !send(w, "<m:ConnectionStatus>OK</m:ConnectionStatus>") {
                    return;
                }
                next_beat = now + self.opts.heartbeat;
                continue;
            }
            let s = lock.lock().unwrap();
            let news = s.stall_before > generation
                || s.subscriptions
                    .get(&id)
                    .is_none_or(|x| !x.pending.is_empty());
            if !news {
                let wait = next_beat.min(end).saturating_duration_since(now);
                let _ = cv.wait_timeout(s, wait).unwrap();
            }
        }
    }
}
