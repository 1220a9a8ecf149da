//! Engine tests on tokio's paused clock, against an in-memory scripted server: the engine is
//! protocol-free, so its scheduling, keep-alive, backoff, catch-up and dedupe are tested here
//! without sockets. (The real IMAP path is tested against a real Dovecot in `tests/`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::gate::AUTH_BLOCK;
use super::*;
use crate::config::{Account, Config};
use crate::error::{ErrorKind, ProtoError};
use crate::event::{Command, Connectivity, Event, MailItem};
use crate::protocol::{Connector, FolderInfo, IDLE_REISSUE, Probe, Session, Wake};

#[derive(Debug, Default)]
struct ServerState {
    uid_validity: u32,
    items: Vec<MailItem>,
    next_uid: u32,
    no_push: bool,
    /// Every open fails with this while set.
    open_error: Option<ProtoError>,
    /// Only opening this folder fails (with `open_error`, or a refused connection).
    broken_folder: Option<&'static str>,
    /// Every session operation hangs (a NAT gateway that forgot the connection).
    hang: bool,
    /// Bumped to kill every open session (server restart, RST).
    epoch: u64,
    opens: Vec<Instant>,
    queries: Vec<Instant>,
    waits: Vec<Duration>,
    closed: usize,
    /// How long ending a wait takes (IMAP: DONE → OK).
    done_delay: Duration,
    /// Probe connections are allowed, behind a path that forgets flows idle this long (`None`:
    /// never); without this, a second login is refused.
    probe_path: Option<Option<Duration>>,
    probes_opened: usize,
    /// The next this many opens panic (a bug in a protocol's code).
    panics: usize,
    /// Every session operation fails with this while set.
    session_error: Option<ProtoError>,
}

/// An in-memory mail server with one folder per test.
#[derive(Clone)]
struct Server {
    state: Arc<Mutex<ServerState>>,
    changes: watch::Sender<u64>,
}

impl Server {
    fn new() -> Server {
        let state = ServerState {
            uid_validity: 1,
            next_uid: 1,
            ..Default::default()
        };
        Server {
            state: Arc::new(Mutex::new(state)),
            changes: watch::channel(0).0,
        }
    }
    fn with<R>(&self, f: impl FnOnce(&mut ServerState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
    fn deliver(&self, subject: &str) -> u32 {
        let uid = self.with(|s| {
            let uid = s.next_uid;
            s.next_uid += 1;
            s.items.push(MailItem {
                uid,
                from: "Bob <bob@example.org>".into(),
                subject: subject.into(),
                date: None,
                seen: false,
            });
            uid
        });
        self.changes.send_modify(|c| *c += 1);
        uid
    }
    fn kill_sessions(&self) {
        self.with(|s| s.epoch += 1);
        self.changes.send_modify(|c| *c += 1);
    }
    fn queries(&self) -> usize {
        self.with(|s| s.queries.len())
    }
    fn opens(&self) -> Vec<Instant> {
        self.with(|s| s.opens.clone())
    }
}

#[async_trait]
impl Connector for Server {
    async fn open(&self, folder: &str) -> Result<(Box<dyn Session>, FolderInfo), ProtoError> {
        let (err, hang, info, epoch) = self.with(|s| {
            s.opens.push(Instant::now());
            let info = FolderInfo {
                uid_validity: s.uid_validity,
                exists: s.items.len() as u32,
                can_push: !s.no_push,
            };
            let err = match s.broken_folder {
                Some(broken) if broken != folder => None,
                Some(_) => Some(s.open_error.clone().unwrap_or_else(|| {
                    ProtoError::new(ErrorKind::Protocol, format!("{folder}: no such folder"))
                })),
                None => s.open_error.clone(),
            };
            (err, s.hang, info, s.epoch)
        });
        if hang {
            std::future::pending::<()>().await;
        }
        let panic = self.with(|s| {
            let panic = s.panics > 0;
            s.panics = s.panics.saturating_sub(1);
            panic
        });
        assert!(!panic, "a bug while opening {folder}");
        if let Some(e) = err {
            return Err(e);
        }
        let session = FakeSession {
            server: self.clone(),
            epoch,
            changes: self.changes.subscribe(),
        };
        Ok((Box::new(session), info))
    }

    async fn open_probe(&self) -> Result<Box<dyn Probe>, ProtoError> {
        match self.with(|s| {
            s.probes_opened += 1;
            s.open_error.clone().map_or(Ok(s.probe_path), Err)
        })? {
            Some(nat) => Ok(Box::new(FakeProbe {
                since: Instant::now(),
                nat,
            })),
            None => Err(ProtoError::new(
                ErrorKind::Disconnected,
                "Maximum number of connections from user+IP exceeded",
            )),
        }
    }
}

/// A probe connection behind a gateway that forgets it after `nat` of silence.
struct FakeProbe {
    since: Instant,
    nat: Option<Duration>,
}

#[async_trait]
impl Probe for FakeProbe {
    async fn ping(&mut self) -> Result<(), ProtoError> {
        if self.nat.is_some_and(|n| self.since.elapsed() >= n) {
            std::future::pending::<()>().await;
        }
        self.since = Instant::now();
        Ok(())
    }
    async fn close(self: Box<Self>) {}
}

struct FakeSession {
    server: Server,
    epoch: u64,
    changes: watch::Receiver<u64>,
}

impl FakeSession {
    async fn alive(&self) -> Result<(), ProtoError> {
        let (hang, epoch, error) = self
            .server
            .with(|s| (s.hang, s.epoch, s.session_error.clone()));
        if hang {
            std::future::pending::<()>().await;
        }
        if let Some(e) = error {
            return Err(e);
        }
        if epoch != self.epoch {
            return Err(ProtoError::new(ErrorKind::Disconnected, "connection reset"));
        }
        Ok(())
    }
}

#[async_trait]
impl Session for FakeSession {
    async fn last_item(&mut self) -> Result<Option<MailItem>, ProtoError> {
        self.alive().await?;
        self.changes.borrow_and_update();
        Ok(self.server.with(|s| {
            s.queries.push(Instant::now());
            s.items.last().cloned()
        }))
    }
    async fn items_after(&mut self, uid: u32) -> Result<Vec<MailItem>, ProtoError> {
        self.alive().await?;
        self.changes.borrow_and_update();
        Ok(self
            .server
            .with(|s| s.items.iter().filter(|i| i.uid > uid).cloned().collect()))
    }
    async fn count_after(&mut self, uid: u32) -> Result<u32, ProtoError> {
        Ok(self.items_after(uid).await?.len() as u32)
    }
    async fn wait(&mut self, max: Duration, stop: &CancellationToken) -> Result<Wake, ProtoError> {
        self.alive().await?;
        self.server.with(|s| s.waits.push(max));
        let wake = tokio::select! {
            _ = sleep(max) => Wake::Timeout,
            _ = stop.cancelled() => Wake::Interrupted,
            _ = self.changes.changed() => Wake::Changed,
        };
        sleep(self.server.with(|s| s.done_delay)).await;
        self.alive().await?;
        Ok(wake)
    }
    async fn close(self: Box<Self>) {
        self.server.with(|s| s.closed += 1);
    }
}

const RT: Duration = Duration::from_secs(20);

fn config(accounts: &[(&str, &[&str])]) -> Config {
    let mut c = Config::default();
    for (name, folders) in accounts {
        let mut a = Account::new(name, "imap.example.org", "alice");
        a.folders = folders.iter().map(|f| f.to_string()).collect();
        c.accounts.push(a);
    }
    c
}

fn factory(server: &Server) -> ConnectorFactory {
    let server = server.clone();
    Arc::new(move |_: &Account, _: &KeepAlive| Arc::new(server.clone()) as Arc<dyn Connector>)
}

fn start(
    server: &Server,
    config: &Config,
    store: Store,
) -> (EngineHandle, mpsc::UnboundedReceiver<Event>) {
    // As `spawn`, but never reading the real keyring.
    let memory = match store.dir() {
        Some(dir) => adaptive::Memory::open(dir),
        None => adaptive::Memory::in_memory(),
    };
    spawn_with(
        config,
        factory(server),
        store,
        memory,
        Arc::new(crate::platform::network_id),
        no_keyring(),
        tokio_timer(),
    )
}

fn no_keyring() -> CredentialFingerprint {
    Arc::new(|_: &Account| None)
}

/// Events until `pred` matches (inclusive), within `limit` of virtual time.
async fn until(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    limit: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            rx.recv(),
        )
        .await
        {
            Ok(Some(e)) => {
                let done = pred(&e);
                seen.push(e);
                if done {
                    return seen;
                }
            }
            Ok(None) => panic!("engine ended; events so far: {seen:#?}"),
            Err(_) => panic!("no matching event within {limit:?}; events so far: {seen:#?}"),
        }
    }
}

/// Everything emitted during `d` of virtual time.
async fn during(rx: &mut mpsc::UnboundedReceiver<Event>, d: Duration) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + d;
    while let Ok(Some(e)) = timeout(
        deadline.saturating_duration_since(Instant::now()),
        rx.recv(),
    )
    .await
    {
        seen.push(e);
    }
    seen
}

fn is_connected(e: &Event) -> bool {
    matches!(e, Event::Connected { .. })
}

fn is_mail(e: &Event) -> bool {
    matches!(e, Event::NewMail { .. } | Event::MissedMail { .. })
}

/// After a reconnect the user hears "connected" (and "restored") before the mail that the
/// catch-up finds, not after it.
fn assert_connected_before_mail(events: &[Event]) {
    let connected = events.iter().position(is_connected);
    let mail = events.iter().position(is_mail);
    assert!(
        connected.is_some() && mail.is_some() && connected < mail,
        "connected before the caught-up mail: {events:?}"
    );
    if let Some(restored) = events
        .iter()
        .position(|e| matches!(e, Event::Recovered { .. }))
    {
        assert!(
            Some(restored) < mail,
            "restored before the mail: {events:?}"
        );
    }
}

fn new_mail_subjects(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::NewMail { item, .. } => Some(item.subject.clone()),
            _ => None,
        })
        .collect()
}

fn errors(events: &[Event]) -> Vec<(ErrorKind, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Error { kind, message, .. } => Some((*kind, message.clone())),
            _ => None,
        })
        .collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn pushed_mail_is_announced_once_with_sender_and_subject() {
    let server = Server::new();
    server.deliver("old news");
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    let first = until(&mut rx, secs(5), is_connected).await;
    assert!(
        new_mail_subjects(&first).is_empty(),
        "old mail must not be announced: {first:?}"
    );
    assert!(first.contains(&Event::Connectivity {
        account: "work".into(),
        state: Connectivity::Connecting
    }));

    server.deliver("hello");
    let events = until(&mut rx, secs(2), |e| matches!(e, Event::NewMail { .. })).await;
    let Some(Event::NewMail {
        account,
        folder,
        item,
        ..
    }) = events.last()
    else {
        unreachable!()
    };
    assert_eq!((account.as_str(), folder.as_str()), ("work", "INBOX"));
    assert_eq!(item.from, "Bob <bob@example.org>");
    assert_eq!(item.subject, "hello");
    assert_eq!(item.uid, 2);

    // Three at once → three events, in order, each once; nothing more over the next keep-alives.
    for s in ["a", "b", "c"] {
        server.deliver(s);
    }
    let later = during(&mut rx, secs(300)).await;
    assert_eq!(new_mail_subjects(&later), ["a", "b", "c"]);
    engine.shutdown().await;
    assert_eq!(server.with(|s| s.closed), 1, "quit logs out");
}

#[tokio::test(start_paused = true)]
async fn keepalive_query_runs_every_interval_and_follows_commands_at_once() {
    let server = Server::new();
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    until(&mut rx, secs(5), is_connected).await;
    let t0 = Instant::now();
    assert_eq!(server.queries(), 1, "the baseline query");

    let events = during(&mut rx, secs(185)).await;
    let keepalives = events
        .iter()
        .filter(|e| matches!(e, Event::KeepAlive { .. }))
        .count();
    assert_eq!(keepalives, 3, "60 s interval over 185 s: {events:?}");
    assert_eq!(server.queries(), 4);
    let stamps = server.with(|s| s.queries.clone());
    for (i, at) in stamps[1..].iter().enumerate() {
        let expected = t0 + secs(60 * (i as u64 + 1));
        assert!(
            at.duration_since(expected) < Duration::from_millis(50),
            "query {i} at {at:?}, expected {expected:?}"
        );
    }

    // Off: the IDLE in progress is interrupted at once and re-issued for 29 minutes, no queries.
    engine.send(Command::SetKeepAlive(false));
    during(&mut rx, secs(1)).await;
    let q = server.queries();
    let events = during(&mut rx, secs(28 * 60)).await;
    assert_eq!(
        server.queries(),
        q,
        "no keep-alive queries while off: {events:?}"
    );
    assert_eq!(server.with(|s| *s.waits.last().unwrap()), IDLE_REISSUE);

    // On again with a 30 s interval (the tray reloads the edited config): an initiation at
    // once, then every 30 s.
    let q = server.queries();
    let mut faster = config(&[("work", &["INBOX"])]);
    faster.keepalive.interval_secs = 30;
    engine.send(Command::Reload(Box::new(faster)));
    during(&mut rx, secs(1)).await;
    assert_eq!(server.queries(), q + 1, "initiated at once");
    let q = server.queries();
    during(&mut rx, secs(90)).await;
    assert_eq!(server.queries(), q + 3);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn check_now_queries_at_once_and_skips_backoff() {
    let server = Server::new();
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    until(&mut rx, secs(5), is_connected).await;
    let before = Instant::now();
    engine.send(Command::CheckNow);
    until(&mut rx, secs(1), |e| matches!(e, Event::KeepAlive { .. })).await;
    assert!(before.elapsed() < secs(1));

    // In a long backoff, "Check now" reconnects at once.
    server.with(|s| s.open_error = Some(ProtoError::new(ErrorKind::Connect, "refused")));
    server.kill_sessions();
    for _ in 0..6 {
        during(&mut rx, secs(60)).await;
    }
    server.with(|s| s.open_error = None);
    let opens = server.opens().len();
    engine.send(Command::CheckNow);
    until(&mut rx, secs(1), is_connected).await;
    assert_eq!(server.opens().len(), opens + 1);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dead_connection_is_detected_within_the_response_timeout_and_mail_is_caught_up_once() {
    let server = Server::new();
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    until(&mut rx, secs(5), is_connected).await;
    // The gateway forgets the connection: nothing is answered, pushes are lost.
    server.with(|s| s.hang = true);
    let lost_at = Instant::now();
    server.with(|s| {
        s.items.push(MailItem {
            uid: 1,
            from: "Carol <carol@example.org>".into(),
            subject: "sent into the void".into(),
            date: None,
            seen: false,
        });
        s.next_uid = 2;
    });
    let events = until(&mut rx, secs(120), |e| matches!(e, Event::Error { .. })).await;
    let errs = errors(&events);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, ErrorKind::Timeout);
    // The next keep-alive (at 60 s) gets no answer for 20 s; this fake session has no deadline
    // of its own, so the engine's backstop (2 s later than a real session's) finds it.
    let detected = lost_at.elapsed();
    assert!(
        detected <= secs(60) + RT + secs(3),
        "detected after {detected:?}"
    );
    assert!(events.contains(&Event::Connectivity {
        account: "work".into(),
        state: Connectivity::Error
    }));

    // The path comes back: reconnect after the first backoff step (≤ 1 s) + a connect.
    server.with(|s| s.hang = false);
    let events = until(&mut rx, secs(90), is_mail).await;
    assert_connected_before_mail(&events);
    assert_eq!(
        new_mail_subjects(&events),
        ["sent into the void"],
        "caught up once: {events:?}"
    );
    assert!(events.contains(&Event::Recovered {
        account: "work".into()
    }));
    let later = during(&mut rx, secs(600)).await;
    assert!(
        new_mail_subjects(&later).is_empty(),
        "never twice: {later:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reset_connection_reconnects_within_two_seconds_and_catches_up() {
    let server = Server::new();
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    until(&mut rx, secs(5), is_connected).await;
    server.kill_sessions();
    let t = Instant::now();
    server.deliver("during the restart");
    let events = until(&mut rx, secs(10), is_mail).await;
    assert!(
        t.elapsed() <= secs(2),
        "reconnected after {:?}",
        t.elapsed()
    );
    assert_connected_before_mail(&events);
    assert_eq!(new_mail_subjects(&events), ["during the restart"]);
    assert_eq!(errors(&events).len(), 1, "{events:?}");
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn wrong_password_is_reported_once_and_retried_at_most_every_ten_minutes() {
    let server = Server::new();
    server.with(|s| {
        s.open_error = Some(ProtoError::new(
            ErrorKind::Auth,
            "imap.example.org rejected the login",
        ))
    });
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    let events = during(&mut rx, secs(3600)).await;
    assert_eq!(
        errors(&events),
        [(
            ErrorKind::Auth,
            "imap.example.org rejected the login".to_string()
        )]
    );
    let opens = server.opens();
    assert!(opens.len() <= 7, "{} attempts in an hour", opens.len());
    for pair in opens.windows(2) {
        assert!(
            pair[1] - pair[0] >= secs(600),
            "retried after {:?}",
            pair[1] - pair[0]
        );
    }
    engine.shutdown().await;
}

fn rejected() -> ProtoError {
    ProtoError::new(ErrorKind::Auth, "imap.example.org rejected the login")
}

/// Logins the server saw: sessions and probe connections.
fn logins(server: &Server) -> usize {
    server.opens().len() + server.with(|s| s.probes_opened)
}

fn last_state(events: &[Event], account: &str) -> Option<Connectivity> {
    events.iter().rev().find_map(|e| match e {
        Event::Connectivity { account: a, state } if a == account => Some(*state),
        _ => None,
    })
}

/// A stored credential the test can change (`None`: nothing in the keyring).
fn fake_keyring(value: &Arc<Mutex<Option<u64>>>) -> CredentialFingerprint {
    let value = value.clone();
    Arc::new(move |_: &Account| *value.lock().unwrap())
}

/// The issue: a wrong password, then "Check now" six times in 18 s made 7 logins. Whatever
/// asks (check now, wake, the adaptive probes, three folders of the account), one rejected
/// login, one error, the account shown in error, and the next login only after 10 minutes.
#[tokio::test(start_paused = true)]
async fn a_rejected_password_blocks_every_login_of_the_account_for_ten_minutes() {
    let server = Server::new();
    server.with(|s| {
        s.open_error = Some(rejected());
        s.probe_path = Some(None);
    });
    let mut cfg = adaptive_config();
    cfg.accounts[0].folders = vec!["INBOX".into(), "Sent".into(), "Archive".into()];
    let keyring = Arc::new(Mutex::new(Some(1)));
    let (engine, mut rx) = spawn_with(
        &cfg,
        factory(&server),
        Store::in_memory(),
        adaptive::Memory::in_memory(),
        Arc::new(|| "net A".to_string()),
        fake_keyring(&keyring),
        tokio_timer(),
    );
    let mut events = until(&mut rx, secs(30), |e| matches!(e, Event::Error { .. })).await;
    for _ in 0..6 {
        engine.send(Command::CheckNow);
        events.extend(during(&mut rx, secs(3)).await);
    }
    events.extend(during(&mut rx, secs(60)).await);
    assert_eq!(logins(&server), 1, "one login in 80 s: {events:#?}");
    assert_eq!(errors(&events), [(ErrorKind::Auth, rejected().message)]);
    assert_eq!(last_state(&events, "work"), Some(Connectivity::Error));

    // After the block: one login again (still rejected, not reported again).
    let events = during(&mut rx, AUTH_BLOCK).await;
    assert_eq!(logins(&server), 2, "{events:#?}");
    assert!(errors(&events).is_empty(), "{events:#?}");
    assert!(
        matches!(
            last_state(&events, "work"),
            None | Some(Connectivity::Error)
        ),
        "still in error: {events:#?}"
    );

    // Network changes and resumes never try it again.
    for _ in 0..6 {
        engine.send(Command::Wake);
        during(&mut rx, secs(20)).await;
    }
    assert_eq!(logins(&server), 2, "a wake retried the rejected password");
    // The user's "Check now", two minutes after the rejection: one more try (rejected, not
    // reported again); another right after it: nothing; a minute later: one more.
    engine.send(Command::CheckNow);
    let events = during(&mut rx, secs(5)).await;
    assert_eq!(logins(&server), 3, "{events:#?}");
    assert!(errors(&events).is_empty(), "{events:#?}");
    for _ in 0..5 {
        engine.send(Command::CheckNow);
        engine.send(Command::CheckCredentials);
        during(&mut rx, secs(5)).await;
    }
    assert_eq!(logins(&server), 3, "Check now retried within a minute");
    during(&mut rx, secs(40)).await;
    engine.send(Command::CheckNow);
    during(&mut rx, secs(5)).await;
    assert_eq!(logins(&server), 4);

    // A new password: the next look logs in at once, every folder connects.
    server.with(|s| s.open_error = None);
    let probes = server.with(|s| s.probes_opened);
    *keyring.lock().unwrap() = Some(2);
    engine.send(Command::CheckCredentials);
    let t = Instant::now();
    let events = until(&mut rx, secs(60), |e| matches!(e, Event::Recovered { .. })).await;
    assert!(t.elapsed() <= secs(1), "after {:?}", t.elapsed());
    let mut events = events;
    events.extend(during(&mut rx, secs(5)).await);
    assert_eq!(
        events.iter().filter(|e| is_connected(e)).count(),
        3,
        "{events:#?}"
    );
    // The adaptive keep-alive, refused while blocked, learns once logged in.
    assert!(server.with(|s| s.probes_opened) > probes, "learning again");
    engine.shutdown().await;
}

/// `mailpulse password set` with a headless `watch` running (no IPC reaches it, and nobody
/// sends "Check now"): the engine notices the new stored password by itself within a minute,
/// and only while the account is blocked.
#[tokio::test(start_paused = true)]
async fn a_new_stored_password_is_noticed_without_being_told() {
    let server = Server::new();
    server.with(|s| s.open_error = Some(rejected()));
    let keyring = Arc::new(Mutex::new(Some(1)));
    let looks = Arc::new(Mutex::new(0u32));
    let fingerprint: CredentialFingerprint = {
        let (keyring, looks) = (keyring.clone(), looks.clone());
        Arc::new(move |_: &Account| {
            *looks.lock().unwrap() += 1;
            *keyring.lock().unwrap()
        })
    };
    let (engine, mut rx) = spawn_with(
        &config(&[("work", &["INBOX"])]),
        factory(&server),
        Store::in_memory(),
        adaptive::Memory::in_memory(),
        Arc::new(|| "net A".to_string()),
        fingerprint,
        tokio_timer(),
    );
    until(&mut rx, secs(30), |e| matches!(e, Event::Error { .. })).await;
    // Blocked, with the same password stored: looked at, not tried.
    during(&mut rx, CREDENTIAL_RECHECK * 3).await;
    assert_eq!(logins(&server), 1);
    assert!(
        *looks.lock().unwrap() >= 3,
        "the stored password was not looked at"
    );
    server.with(|s| s.open_error = None);
    *keyring.lock().unwrap() = Some(2);
    let t = Instant::now();
    until(&mut rx, CREDENTIAL_RECHECK * 2, |e| {
        matches!(e, Event::Recovered { .. })
    })
    .await;
    assert!(t.elapsed() <= CREDENTIAL_RECHECK, "after {:?}", t.elapsed());
    assert_eq!(logins(&server), 2);
    // Logged in: the stored password is not looked at any more.
    let before = *looks.lock().unwrap();
    during(&mut rx, CREDENTIAL_RECHECK * 5).await;
    assert_eq!(
        *looks.lock().unwrap(),
        before,
        "looked at while not blocked"
    );
    engine.shutdown().await;
}

/// EWS sends the credentials with every request: a rejection in the middle of a session (the
/// password was changed on the server) blocks logins the same way.
#[tokio::test(start_paused = true)]
async fn credentials_rejected_mid_session_block_logins_too() {
    let server = Server::new();
    let keyring = Arc::new(Mutex::new(Some(1)));
    let (engine, mut rx) = spawn_with(
        &config(&[("work", &["INBOX"])]),
        factory(&server),
        Store::in_memory(),
        adaptive::Memory::in_memory(),
        Arc::new(|| "net A".to_string()),
        fake_keyring(&keyring),
        tokio_timer(),
    );
    until(&mut rx, secs(5), is_connected).await;
    server.with(|s| {
        s.session_error = Some(rejected());
        s.open_error = Some(rejected());
    });
    engine.send(Command::CheckNow);
    let mut events = until(&mut rx, secs(5), |e| matches!(e, Event::Error { .. })).await;
    for _ in 0..5 {
        engine.send(Command::CheckNow);
        events.extend(during(&mut rx, secs(3)).await);
    }
    assert_eq!(server.opens().len(), 1, "no new login: {events:#?}");
    assert_eq!(errors(&events), [(ErrorKind::Auth, rejected().message)]);
    engine.shutdown().await;
}

/// A changed account (another user name, server, password command) is a new chance: a reload
/// logs in at once. The same account reloaded is not.
#[tokio::test(start_paused = true)]
async fn only_a_changed_account_lifts_the_block_on_reload() {
    let server = Server::new();
    server.with(|s| s.open_error = Some(rejected()));
    let mut cfg = config(&[("work", &["INBOX"])]);
    let (engine, mut rx) = start(&server, &cfg, Store::in_memory());
    until(&mut rx, secs(30), |e| matches!(e, Event::Error { .. })).await;
    server.with(|s| s.open_error = None);
    engine.send(Command::Reload(Box::new(cfg.clone())));
    engine.send(Command::CheckNow);
    during(&mut rx, secs(60)).await;
    assert_eq!(logins(&server), 1);
    cfg.accounts[0].username = "alice2".into();
    engine.send(Command::Reload(Box::new(cfg)));
    let t = Instant::now();
    until(&mut rx, secs(60), is_connected).await;
    assert!(t.elapsed() <= secs(1), "after {:?}", t.elapsed());
    assert_eq!(logins(&server), 2);
    engine.shutdown().await;
}

/// The issue: a panic in a folder task left the folder unmonitored while the icon stayed green.
/// Now the account is in error with a message that names the folder, and the folder is
/// started again (later each time it keeps panicking) and then works.
#[tokio::test(start_paused = true)]
async fn a_folder_task_that_panics_is_reported_and_restarted() {
    let server = Server::new();
    server.with(|s| s.panics = 3);
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    let events = until(&mut rx, secs(600), is_connected).await;
    let errors = errors(&events);
    assert_eq!(errors.len(), 1, "once per episode: {events:#?}");
    assert_eq!(errors[0].0, ErrorKind::Internal);
    assert!(
        errors[0].1.contains("\"INBOX\"") && errors[0].1.contains("a bug while opening INBOX"),
        "{errors:?}"
    );
    let states: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Connectivity { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    assert!(
        states.contains(&Connectivity::Error),
        "shown in error: {states:?}"
    );
    let opens = server.opens();
    assert_eq!(opens.len(), 4, "three panics, then a session");
    let gaps: Vec<Duration> = opens.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(500)),
        "restarted with a delay: {gaps:?}"
    );
    assert!(
        gaps[2] >= Duration::from_secs(2),
        "a delay that grows: {gaps:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Recovered { .. })),
        "recovered: {events:#?}"
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn connection_failures_back_off_exponentially_to_the_cap() {
    let server = Server::new();
    server.with(|s| s.open_error = Some(ProtoError::new(ErrorKind::Connect, "connection refused")));
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    let events = during(&mut rx, secs(3 * 3600)).await;
    assert_eq!(errors(&events).len(), 1, "reported once per episode");
    let opens = server.opens();
    let gaps: Vec<Duration> = opens.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(gaps[0] <= secs(1), "{gaps:?}");
    assert!(gaps.iter().all(|g| *g <= backoff::CAP), "{gaps:?}");
    assert!(
        gaps.iter().rev().take(5).all(|g| *g >= backoff::CAP / 2),
        "capped at 5 min: {gaps:?}"
    );
    assert!(opens.len() < 60, "{} attempts in 3 hours", opens.len());
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn restart_announces_mail_that_arrived_while_off_as_one_summary() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::new();
    server.deliver("seen before");
    let cfg = config(&[("work", &["INBOX"])]);
    let (engine, mut rx) = start(&server, &cfg, Store::open(dir.path()));
    until(&mut rx, secs(5), is_connected).await;
    engine.shutdown().await;

    for s in ["while off 1", "while off 2", "while off 3"] {
        server.deliver(s);
    }
    let (engine, mut rx) = start(&server, &cfg, Store::open(dir.path()));
    let events = until(&mut rx, secs(5), is_mail).await;
    assert_connected_before_mail(&events);
    let summaries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::MissedMail { count, newest, .. } => Some((*count, newest.subject.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(summaries, [(3, "while off 3".to_string())]);
    assert!(new_mail_subjects(&events).is_empty());
    engine.shutdown().await;

    // A third start with nothing new: silence.
    let (engine, mut rx) = start(&server, &cfg, Store::open(dir.path()));
    let events = until(&mut rx, secs(5), is_connected).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::MissedMail { .. } | Event::NewMail { .. }))
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn uidvalidity_change_resets_the_baseline_without_a_flood() {
    let server = Server::new();
    for i in 0..5 {
        server.deliver(&format!("m{i}"));
    }
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    until(&mut rx, secs(5), is_connected).await;
    // The folder is recreated: new UIDVALIDITY, UIDs start again.
    server.with(|s| {
        s.uid_validity = 2;
        s.items.clear();
        s.next_uid = 1;
    });
    for i in 0..8 {
        server.deliver(&format!("n{i}"));
    }
    server.kill_sessions();
    let events = until(&mut rx, secs(10), is_connected).await;
    assert!(
        new_mail_subjects(&events).is_empty(),
        "no flood: {events:?}"
    );
    server.deliver("fresh");
    let events = until(&mut rx, secs(5), |e| matches!(e, Event::NewMail { .. })).await;
    assert_eq!(new_mail_subjects(&events), ["fresh"]);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_push_the_engine_polls_every_interval() {
    let server = Server::new();
    server.with(|s| s.no_push = true);
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    until(&mut rx, secs(5), is_connected).await;
    let t = Instant::now();
    server.deliver("polled");
    let events = until(&mut rx, secs(61), |e| matches!(e, Event::NewMail { .. })).await;
    assert_eq!(new_mail_subjects(&events), ["polled"]);
    assert!(t.elapsed() >= secs(59), "found by the poll, not a push");
    // Keep-alive off does not stop polling: it is the only way to see mail.
    engine.send(Command::SetKeepAlive(false));
    server.deliver("still polled");
    let events = until(&mut rx, secs(61), |e| matches!(e, Event::NewMail { .. })).await;
    assert_eq!(new_mail_subjects(&events), ["still polled"]);
    assert!(server.with(|s| s.waits.is_empty()), "never IDLE");
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_worst_folder_state_is_the_account_state() {
    let server = Server::new();
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX", "Lists"])]),
        Store::in_memory(),
    );
    let events = until(&mut rx, secs(5), |e| {
        *e == Event::Connectivity {
            account: "work".into(),
            state: Connectivity::Idle,
        }
    })
    .await;
    let connected = events.iter().filter(|e| is_connected(e)).count();
    assert_eq!(
        connected, 2,
        "idle is reported only when both folders are idle: {events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Connectivity { .. }))
            .count(),
        3,
        "connecting → working → idle, each once: {events:?}"
    );
    engine.shutdown().await;
}

/// One folder of an account cannot be opened while the other works: the account's state is
/// the worst, error, not the working folder's idle; the tray shows the problem.
#[tokio::test(start_paused = true)]
async fn an_error_in_one_folder_is_the_account_state() {
    let server = Server::new();
    server.with(|s| s.broken_folder = Some("Lists"));
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX", "Lists"])]),
        Store::in_memory(),
    );
    let events = during(&mut rx, secs(30)).await;
    assert_eq!(
        events.iter().filter(|e| is_connected(e)).count(),
        1,
        "INBOX works"
    );
    let states: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Connectivity { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(states.last(), Some(&Connectivity::Error), "{events:?}");
    assert!(
        !states.contains(&Connectivity::Idle),
        "never idle: {events:?}"
    );
    assert_eq!(errors(&events).len(), 1, "{events:?}");
    // INBOX reconnects (the server dropped its session) while Lists is still broken: the
    // account has not recovered, and no "recovered" says it has.
    server.with(|s| s.epoch += 1);
    let events = during(&mut rx, secs(60)).await;
    assert!(
        events.iter().any(is_connected),
        "INBOX reconnected: {events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Recovered { .. })),
        "recovered while a folder is in error: {events:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reload_applies_settings_and_restarts_only_changed_accounts() {
    let server = Server::new();
    let mut cfg = config(&[("work", &["INBOX"]), ("home", &["INBOX"])]);
    let (engine, mut rx) = start(&server, &cfg, Store::in_memory());
    until(&mut rx, secs(5), is_connected).await;
    until(&mut rx, secs(5), is_connected).await;
    let opens = server.opens().len();
    assert_eq!(opens, 2);

    cfg.keepalive.interval_secs = 30;
    cfg.accounts[1].folders = vec!["INBOX".into(), "Archive".into()];
    engine.send(Command::Reload(Box::new(cfg.clone())));
    until(&mut rx, secs(5), is_connected).await;
    until(&mut rx, secs(5), is_connected).await;
    assert_eq!(
        server.opens().len(),
        opens + 2,
        "only 'home' restarted, with two folders"
    );
    let q = server.queries();
    during(&mut rx, secs(31)).await;
    assert_eq!(
        server.queries(),
        q + 3,
        "three sessions, each queried once in 30 s"
    );

    let closed = server.with(|s| s.closed);
    assert_eq!(closed, 1, "the replaced 'home' session logged out");
    cfg.accounts.remove(0);
    engine.send(Command::Reload(Box::new(cfg)));
    during(&mut rx, secs(2)).await;
    assert_eq!(server.with(|s| s.closed), 2, "removed account logged out");
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reload_with_a_new_interval_initiates_at_once_and_keeps_the_new_cadence() {
    let server = Server::new();
    let mut cfg = config(&[("work", &["INBOX"])]);
    cfg.keepalive.interval_secs = 600;
    let (engine, mut rx) = start(&server, &cfg, Store::in_memory());
    until(&mut rx, secs(5), is_connected).await;
    let q = server.queries();
    cfg.keepalive.interval_secs = 30;
    engine.send(Command::Reload(Box::new(cfg)));
    during(&mut rx, secs(1)).await;
    assert_eq!(server.queries(), q + 1, "initiated at once");
    during(&mut rx, secs(61)).await;
    assert_eq!(server.queries(), q + 3, "then every 30 s");
    assert_eq!(
        server.opens().len(),
        1,
        "the unchanged account was not reconnected"
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn check_now_during_a_failing_attempt_retries_at_once() {
    let server = Server::new();
    server.with(|s| s.open_error = Some(ProtoError::new(ErrorKind::Connect, "refused")));
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    // Twenty minutes of failures: the backoff is at its cap (2.5–5 min).
    during(&mut rx, secs(20 * 60)).await;
    // The next attempt hangs (a silent path); "Check now" arrives in the middle of it.
    server.with(|s| {
        s.open_error = None;
        s.hang = true;
    });
    let opens = server.opens().len();
    while server.opens().len() == opens {
        during(&mut rx, secs(1)).await;
    }
    during(&mut rx, secs(5)).await;
    engine.send(Command::CheckNow);
    server.with(|s| s.hang = false);
    let t = Instant::now();
    until(&mut rx, secs(600), is_connected).await;
    // The hung attempt (begun on the old network) is abandoned and a new one starts at once,
    // instead of waiting for its deadline (3 × 20 s + 5 s) and another capped backoff.
    assert!(t.elapsed() <= secs(1), "retried after {:?}", t.elapsed());
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_keepalive_round_trip_includes_ending_idle() {
    let server = Server::new();
    server.with(|s| s.done_delay = Duration::from_millis(700));
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX"])]),
        Store::in_memory(),
    );
    until(&mut rx, secs(5), is_connected).await;
    let events = until(&mut rx, secs(70), |e| matches!(e, Event::KeepAlive { .. })).await;
    let Some(Event::KeepAlive { round_trip, .. }) = events.last() else {
        unreachable!()
    };
    assert!(*round_trip >= Duration::from_millis(700), "{round_trip:?}");
    assert!(*round_trip < Duration::from_secs(1), "{round_trip:?}");
    engine.shutdown().await;
}

fn adaptive_config() -> Config {
    let mut c = config(&[("work", &["INBOX"])]);
    c.keepalive.adaptive = true;
    c.keepalive.interval_secs = 30;
    c.keepalive.adaptive_max_secs = 120;
    c.keepalive.response_timeout_secs = 5;
    c
}

fn learned(events: &[Event]) -> Option<(String, Duration)> {
    events.iter().rev().find_map(|e| match e {
        Event::Learned {
            network, interval, ..
        } => Some((network.clone(), *interval)),
        _ => None,
    })
}

fn last_wait(server: &Server) -> Duration {
    server.with(|s| *s.waits.last().unwrap())
}

#[tokio::test(start_paused = true)]
async fn adaptive_learns_falls_back_relearns_and_remembers_networks() {
    let server = Server::new();
    server.with(|s| s.probe_path = Some(Some(secs(60))));
    let network = Arc::new(Mutex::new("net A".to_string()));
    let n = network.clone();
    let memory = adaptive::Memory::in_memory();
    let (engine, mut rx) = spawn_with(
        &adaptive_config(),
        factory(&server),
        Store::in_memory(),
        memory.clone(),
        Arc::new(move || n.lock().unwrap().clone()),
        no_keyring(),
        tokio_timer(),
    );
    until(&mut rx, secs(5), is_connected).await;
    assert_eq!(last_wait(&server), secs(30), "the floor while learning");
    // Mail during learning arrives over the main session at once.
    server.deliver("during learning");
    let events = until(&mut rx, secs(2), |e| matches!(e, Event::NewMail { .. })).await;
    assert_eq!(new_mail_subjects(&events), ["during learning"]);
    let t = Instant::now();
    let events = until(&mut rx, secs(600), |e| matches!(e, Event::Learned { .. })).await;
    let (net, interval) = learned(&events).unwrap();
    assert_eq!(net, "net A");
    assert!(interval >= secs(40) && interval < secs(60), "{interval:?}");
    assert!(t.elapsed() < secs(360), "learned after {:?}", t.elapsed());
    // The main session follows at once (the settings change ends the current IDLE).
    during(&mut rx, secs(1)).await;
    assert_eq!(last_wait(&server), interval);

    // The main session dies idle at the learned interval: back to the floor at once, relearn.
    server.kill_sessions();
    let events = until(&mut rx, secs(10), |e| matches!(e, Event::Relearning { .. })).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Relearning { interval, .. } if *interval == secs(30))),
        "{events:?}"
    );
    until(&mut rx, secs(30), is_connected).await;
    assert_eq!(last_wait(&server), secs(30));
    assert!(
        memory.get("net A", "alice@imap.example.org:993").is_none(),
        "suspect"
    );
    let events = until(&mut rx, secs(600), |e| matches!(e, Event::Learned { .. })).await;
    assert!(learned(&events).unwrap().1 >= secs(40));
    assert!(memory.get("net A", "alice@imap.example.org:993").is_some());

    // Another network (its gateway forgets after 100 s): from the floor, learned anew.
    server.with(|s| s.probe_path = Some(Some(secs(100))));
    *network.lock().unwrap() = "net B".into();
    engine.send(Command::CheckNow);
    during(&mut rx, secs(1)).await;
    assert_eq!(
        last_wait(&server),
        secs(30),
        "a new network starts from the floor"
    );
    let events = until(&mut rx, secs(600), |e| matches!(e, Event::Learned { .. })).await;
    let (net, b) = learned(&events).unwrap();
    assert_eq!(net, "net B");
    assert!(b >= secs(70) && b < secs(100), "{b:?}");

    // Back on the first network: its value at once, without probing.
    let probes = server.with(|s| s.probes_opened);
    *network.lock().unwrap() = "net A".into();
    engine.send(Command::CheckNow);
    let events = until(&mut rx, secs(2), |e| matches!(e, Event::Learned { .. })).await;
    assert_eq!(learned(&events).unwrap().0, "net A");
    during(&mut rx, secs(1)).await;
    assert!(last_wait(&server) >= secs(40));
    assert_eq!(server.with(|s| s.probes_opened), probes);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn adaptive_stays_fixed_when_the_server_refuses_a_second_login() {
    let server = Server::new();
    let (engine, mut rx) = spawn_with(
        &adaptive_config(),
        factory(&server),
        Store::in_memory(),
        adaptive::Memory::in_memory(),
        Arc::new(|| "net A".to_string()),
        no_keyring(),
        tokio_timer(),
    );
    until(&mut rx, secs(5), is_connected).await;
    let events = during(&mut rx, secs(300)).await;
    assert!(learned(&events).is_none(), "{events:?}");
    assert_eq!(
        server.with(|s| s.probes_opened),
        1,
        "tried once, then stayed fixed"
    );
    assert!(server.with(|s| s.waits.iter().all(|w| *w == secs(30))));
    engine.shutdown().await;
}

/// A folder the server does not have is retried slowly (10 minutes); network changes and
/// resumes do not make it try again (nothing of the network can fix it), the user's "Check now"
/// does.
#[tokio::test(start_paused = true)]
async fn a_missing_folder_is_not_retried_on_every_network_change() {
    let server = Server::new();
    server.with(|s| {
        s.broken_folder = Some("Lists");
        s.open_error = Some(ProtoError::new(ErrorKind::Folder, "Lists: no such folder"));
    });
    let (engine, mut rx) = start(
        &server,
        &config(&[("work", &["INBOX", "Lists"])]),
        Store::in_memory(),
    );
    until(&mut rx, secs(30), |e| matches!(e, Event::Error { .. })).await;
    let lists = |server: &Server| server.with(|s| s.opens.len());
    during(&mut rx, secs(5)).await;
    let before = lists(&server);
    for _ in 0..6 {
        engine.send(Command::Wake);
        during(&mut rx, secs(20)).await;
    }
    assert_eq!(lists(&server), before, "a wake retried the missing folder");
    engine.send(Command::CheckNow);
    during(&mut rx, secs(5)).await;
    assert_eq!(lists(&server), before + 1, "Check now tries it again");
    engine.shutdown().await;
}
