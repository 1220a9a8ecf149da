//! mailpulse against the test Microsoft Graph server (`support::graph_server`): the real binary
//! (`mailpulse watch --json`, `mailpulse check`) over HTTPS with the test CA. Graph has no push a
//! desktop can receive, so mail is found by the keep-alive query every interval (30 s, the
//! shortest the config allows); tests that are not about the interval press "Check now"
//! (SIGUSR1) instead of waiting for it. Deadlines are generous upper bounds, never sleeps that
//! hope for the best; every test asserts that nothing but GET reached the server.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::{Home, Watch, of_type, secs, subjects};
use support::graph_server::GraphServer;

const USER: &str = "alice@contoso.com";
const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJub25jZSI6IjEifQ.token-1";

fn config(home: &Home, server: &GraphServer, keepalive: &str, folders: &str) {
    let token = home.password_file(TOKEN);
    home.write_config(&format!(
        "[keepalive]\ncheck_on_wake = false\ninterval_secs = 30\n{keepalive}\n\n\
         [[accounts]]\nname = \"m365\"\nprotocol = \"graph\"\nurl = \"{}\"\nusername = \"{USER}\"\n\
         auth = \"bearer\"\npassword_command = \"cat '{}'\"\nca_file = \"{}\"\nfolders = {folders}\n",
        server.url(),
        token.display(),
        server.ca_pem().display()
    ));
}

fn assert_read_only(server: &GraphServer) {
    assert_eq!(
        server.writes(),
        0,
        "mailpulse must only read: {:?}",
        server.methods()
    );
}

/// Start `watch` and wait until every folder is connected.
fn start(home: &Home, folders: usize) -> Watch {
    let watch = Watch::start(home);
    let mut connected = 0;
    while connected < folders {
        let events = watch.until_type(secs(30), "connected");
        connected += of_type(&events, "connected").len();
    }
    watch
}

/// "Check now", then the events up to the end of the cycle it caused (the keep-alive query and
/// any catch-up, until the account is idle again).
fn check_now(watch: &Watch) -> Vec<Value> {
    watch.signal("USR1");
    let mut events = watch.until_type(secs(30), "keepalive");
    events.extend(watch.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle"));
    events
}

#[test]
fn check_prints_the_newest_inbox_item() {
    let server = GraphServer::start(USER, TOKEN);
    server.deliver("inbox", "Older", "Bob", "bob@example.com");
    std::thread::sleep(Duration::from_millis(1100));
    server.deliver(
        "inbox",
        "Quarterly report",
        "Carol Jones",
        "carol@example.com",
    );
    let home = Home::new();
    config(&home, &server, "response_timeout_secs = 10", "[\"INBOX\"]");
    let out = home.run(&["check", "--account", "m365"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("subject=\"Quarterly report\"")
            && stdout.contains("from=\"Carol Jones <carol@example.com>\""),
        "{stdout}"
    );
    let out = home.run(&["check", "--account", "m365", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(v["subject"], "Quarterly report");
    assert_eq!(v["exists"], 2);
    // The newest-item query as Graph documents it.
    let queries: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.path.contains("/messages?"))
        .map(|l| l.path)
        .collect();
    assert!(
        queries
            .iter()
            .all(|q| q.contains("$orderby=receivedDateTime%20desc")
                && q.contains("$select=id,subject,from,receivedDateTime")),
        "{queries:?}"
    );
    assert_read_only(&server);
}

#[test]
fn new_mail_is_announced_once_within_one_interval() {
    let server = GraphServer::start(USER, TOKEN);
    server.deliver("inbox", "Before start", "Bob", "bob@example.com");
    let home = Home::new();
    config(&home, &server, "response_timeout_secs = 5", "[\"inbox\"]");
    let mut watch = start(&home, 1);
    let delivered = Instant::now();
    server.deliver("inbox", "Lunch?", "Dave Smith", "dave@example.com");
    let events = watch.until_type(secs(60), "new_mail");
    let latency = delivered.elapsed();
    let mail = of_type(&events, "new_mail");
    assert_eq!(mail.len(), 1, "{events:?}");
    assert_eq!(mail[0]["subject"], "Lunch?");
    assert_eq!(mail[0]["from"], "Dave Smith <dave@example.com>");
    assert_eq!(mail[0]["seen"], false);
    // One interval (30 s) plus the query's round trips, with slack for a loaded machine.
    assert!(latency < secs(40), "announced only after {latency:?}");
    // The next keep-alive finds nothing new: nothing twice.
    let later = watch.until_type(secs(45), "keepalive");
    assert!(subjects(&later).is_empty(), "{later:?}");
    assert!(of_type(&later, "error").is_empty(), "{later:?}");
    assert!(watch.stop(), "clean exit");
    assert!(server.count("/messages/delta") >= 1, "{:?}", server.log());
    // One kept connection: the folder lookup, two keep-alive queries and the delta round all
    // went over the connection opened first (HTTP/1.1 keep-alive).
    assert!(server.count("/messages?") >= 3, "{:?}", server.log());
    assert_eq!(server.connections(), 1, "{:?}", server.log());
    assert_read_only(&server);
}

#[test]
fn catch_up_after_an_outage_announces_each_message_once() {
    let server = GraphServer::start(USER, TOKEN);
    let home = Home::new();
    config(&home, &server, "response_timeout_secs = 5", "[\"inbox\"]");
    let mut watch = start(&home, 1);
    server.deliver("inbox", "Before the outage", "Erin", "erin@example.com");
    let events = check_now(&watch);
    assert_eq!(subjects(&events), ["Before the outage"], "{events:?}");
    let deltas_before = server.count("$deltatoken=");

    server.down();
    // More than one delta page (mailpulse asks for 50 a page), at most four a second (the UID
    // scheme tells four messages of one second apart).
    let mut during = Vec::new();
    for i in 1..=52 {
        let subject = format!("During the outage {i}");
        server.deliver("inbox", &subject, "Frank", "frank@example.com");
        during.push(subject);
        if i % 4 == 0 {
            std::thread::sleep(Duration::from_millis(1050));
        }
    }
    watch.signal("USR1");
    let events = watch.until_type(secs(30), "error");
    let error = of_type(&events, "error")[0];
    assert!(
        ["disconnected", "connect", "timeout"].contains(&error["kind"].as_str().unwrap()),
        "{error}"
    );
    assert!(subjects(&events).is_empty(), "{events:?}");

    server.up();
    let events = watch.until(secs(60), |v| {
        v["type"] == "new_mail" && v["subject"] == "During the outage 52"
    });
    assert_eq!(subjects(&events), during, "{events:?}");
    let recovered = events.iter().position(|v| v["type"] == "recovered");
    let first_mail = events.iter().position(|v| v["type"] == "new_mail");
    assert!(
        recovered < first_mail,
        "recovered before the mail: {events:?}"
    );
    // The stored deltaLink carried the catch-up, over more than one page.
    assert!(server.count("$deltatoken=") > deltas_before);
    assert!(server.count("$skiptoken=") >= 1, "{:?}", server.log());
    let later = check_now(&watch);
    assert!(subjects(&later).is_empty(), "announced twice: {later:?}");
    assert!(watch.stop());
    assert_read_only(&server);
}

#[test]
fn a_restart_goes_on_from_the_saved_delta_link() {
    let server = GraphServer::start(USER, TOKEN);
    let home = Home::new();
    config(&home, &server, "response_timeout_secs = 5", "[\"inbox\"]");
    let mut watch = start(&home, 1);
    server.deliver("inbox", "First", "Erin", "erin@example.com");
    assert_eq!(subjects(&check_now(&watch)), ["First"]);
    assert!(watch.stop());
    let saved = std::fs::read_to_string(home.state_dir().join("graph-delta.json"))
        .expect("the deltaLink is saved in the state dir");
    assert!(saved.contains("$deltatoken="), "{saved}");

    server.deliver("inbox", "While stopped", "Frank", "frank@example.com");
    let deltas_before = server.count("$deltatoken=");
    let mut watch = Watch::start(&home);
    let events = watch.until_type(secs(30), "missed_mail");
    assert!(
        server.count("$deltatoken=") > deltas_before,
        "counted with the saved deltaLink: {:?}",
        server.log()
    );
    let missed = of_type(&events, "missed_mail")[0];
    assert_eq!(missed["count"], 1, "{missed}");
    assert_eq!(missed["subject"], "While stopped");
    let later = check_now(&watch);
    assert!(subjects(&later).is_empty(), "{later:?}");
    assert!(watch.stop());
    assert_read_only(&server);
}

#[test]
fn a_lost_delta_token_means_a_fresh_round_that_announces_nothing_old() {
    let server = GraphServer::start(USER, TOKEN);
    for i in 0..12 {
        server.deliver("inbox", &format!("Old {i}"), "Bob", "bob@example.com");
    }
    let home = Home::new();
    config(&home, &server, "response_timeout_secs = 5", "[\"inbox\"]");
    let mut watch = start(&home, 1);
    std::thread::sleep(Duration::from_millis(1100));
    server.deliver("inbox", "A", "Erin", "erin@example.com");
    assert_eq!(subjects(&check_now(&watch)), ["A"]);

    server.lose_delta_tokens();
    std::thread::sleep(Duration::from_millis(1100));
    server.deliver("inbox", "B", "Frank", "frank@example.com");
    let events = check_now(&watch);
    assert_eq!(subjects(&events), ["B"], "{events:?}");
    assert!(of_type(&events, "error").is_empty(), "{events:?}");
    let log = server.log();
    let gone = log
        .iter()
        .position(|l| l.status == 410)
        .expect("the old token was refused");
    assert!(
        log[gone + 1..]
            .iter()
            .any(|l| l.path.contains("/messages/delta?") && l.path.contains("$filter=")),
        "a fresh round limited by receivedDateTime: {log:?}"
    );
    // And the next round uses the new token.
    server.deliver("inbox", "C", "Grace", "grace@example.com");
    assert_eq!(subjects(&check_now(&watch)), ["C"]);
    assert!(watch.stop());
    assert_read_only(&server);
}

#[test]
fn throttling_sends_nothing_before_retry_after() {
    let server = GraphServer::start(USER, TOKEN);
    let home = Home::new();
    config(&home, &server, "response_timeout_secs = 5", "[\"inbox\"]");
    let mut watch = start(&home, 1);
    server.throttle(6);
    watch.signal("USR1");
    // Shown as "throttled", not as an error: nothing is wrong with the connection.
    let mut events = watch.until(secs(30), |v| {
        v["type"] == "state" && v["state"] == "throttled"
    });
    // The reason is on stderr (read by another thread: it may come a moment after the event).
    let said = "throttled (HTTP 429): the server asked to wait 6 s";
    let deadline = Instant::now() + secs(5);
    while !watch.stderr_text().contains(said) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        watch.stderr_text().contains(said),
        "{}",
        watch.stderr_text()
    ); // "Check now" during the wait must not send anything either.
    std::thread::sleep(Duration::from_millis(1500));
    watch.signal("USR1");
    server.deliver("inbox", "After the throttle", "Ken", "ken@example.com");
    let more = watch.until(secs(60), |v| v["type"] == "new_mail");
    assert_eq!(subjects(&more), ["After the throttle"], "{more:?}");
    events.extend(more);
    assert!(
        of_type(&events, "error").is_empty(),
        "throttling is no error: {events:?}"
    );
    assert!(watch.stop());
    let log = server.log();
    let throttled: Vec<_> = log.iter().filter(|l| l.status == 429).collect();
    assert_eq!(throttled.len(), 1, "a request before Retry-After: {log:?}");
    let at = log.iter().position(|l| l.status == 429).unwrap();
    let next = &log[at + 1];
    let gap = next.at.duration_since(log[at].at);
    assert!(
        gap >= Duration::from_millis(5900),
        "the next request came {gap:?} after the 429"
    );
    assert_read_only(&server);
}

/// 503 Service Unavailable with `Retry-After` (Graph's answer when a backend is overloaded) is
/// throttling too: the same state, no error, nothing sent before the time is up.
#[test]
fn a_503_with_retry_after_is_throttling_too() {
    let server = GraphServer::start(USER, TOKEN);
    let home = Home::new();
    config(&home, &server, "response_timeout_secs = 5", "[\"inbox\"]");
    let mut watch = start(&home, 1);
    server.throttle_with(503, 5);
    watch.signal("USR1");
    let mut events = watch.until(secs(30), |v| {
        v["type"] == "state" && v["state"] == "throttled"
    });
    server.deliver("inbox", "After the outage", "Lea", "lea@example.com");
    events.extend(watch.until(secs(60), |v| v["type"] == "new_mail"));
    assert_eq!(subjects(&events), ["After the outage"], "{events:?}");
    assert!(
        of_type(&events, "error").is_empty(),
        "a 503 with Retry-After is no error: {events:?}"
    );
    assert!(watch.stop());
    let log = server.log();
    let at = log
        .iter()
        .position(|l| l.status == 503)
        .expect("a 503 was answered");
    assert_eq!(log.iter().filter(|l| l.status == 503).count(), 1, "{log:?}");
    let gap = log[at + 1].at.duration_since(log[at].at);
    assert!(
        gap >= Duration::from_millis(4900),
        "the next request came {gap:?} after the 503"
    );
    assert_read_only(&server);
}

#[test]
fn an_expired_token_is_renewed_once_then_an_auth_error() {
    let server = GraphServer::start(USER, TOKEN);
    let home = Home::new();
    config(&home, &server, "response_timeout_secs = 5", "[\"inbox\"]");
    let mut watch = start(&home, 1);
    // The token expires; password_command now prints a new one.
    server.set_token("token-2");
    home.password_file("token-2");
    server.deliver("inbox", "With the new token", "Ann", "ann@example.com");
    let events = check_now(&watch);
    assert_eq!(subjects(&events), ["With the new token"], "{events:?}");
    assert!(of_type(&events, "error").is_empty(), "{events:?}");
    let unauthorized = server.log().iter().filter(|l| l.status == 401).count();
    assert_eq!(unauthorized, 1, "{:?}", server.log());

    // Revoked for good: the renewed token is refused too → one auth error.
    server.set_token("token-3");
    watch.signal("USR1");
    let events = watch.until_type(secs(30), "error");
    let error = of_type(&events, "error")[0];
    assert_eq!(error["kind"], "auth", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("HTTP 401"),
        "{error}"
    );
    let unauthorized = server.log().iter().filter(|l| l.status == 401).count();
    assert_eq!(unauthorized, 3, "one renewal, not more: {:?}", server.log());
    assert!(watch.stop());
    assert_read_only(&server);
}

#[test]
fn no_answer_within_the_response_timeout_is_a_timeout() {
    let server = GraphServer::start(USER, TOKEN);
    let home = Home::new();
    config(&home, &server, "response_timeout_secs = 3", "[\"inbox\"]");
    let mut watch = start(&home, 1);
    server.stall(true);
    let asked = Instant::now();
    watch.signal("USR1");
    let events = watch.until_type(secs(30), "error");
    let noticed = asked.elapsed();
    let error = of_type(&events, "error")[0];
    assert_eq!(error["kind"], "timeout", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&format!("localhost:{}", server.port)),
        "{error}"
    );
    assert!(noticed < secs(12), "noticed only after {noticed:?}");
    server.stall(false);
    server.deliver("inbox", "After the stall", "Ken", "ken@example.com");
    let events = watch.until(secs(60), |v| v["type"] == "new_mail");
    assert_eq!(subjects(&events), ["After the stall"]);
    assert!(watch.stop());
    assert_read_only(&server);
}

#[test]
fn several_folders_by_well_known_name_and_by_path() {
    let server = GraphServer::start(USER, TOKEN);
    let work = server.add_folder("inbox", "Work");
    server.add_folder(&work, "Other");
    let project = server.add_folder(&work, "Project X");
    let home = Home::new();
    config(
        &home,
        &server,
        "response_timeout_secs = 5",
        "[\"inbox\", \"Inbox/Work/Project X\", \"archive\"]",
    );
    let mut watch = start(&home, 3);
    assert!(
        server.count("/childFolders") >= 2,
        "looked up by display name: {:?}",
        server.log()
    );
    server.deliver("archive", "Archived", "Bob", "bob@example.com");
    server.deliver("inbox", "In the inbox", "Carol", "carol@example.com");
    server.deliver(&project, "For the project", "Dave", "dave@example.com");
    watch.signal("USR1");
    let mut mail: Vec<(String, String)> = Vec::new();
    let deadline = Instant::now() + secs(60);
    while mail.len() < 3 {
        assert!(Instant::now() < deadline, "{mail:?}");
        let events = watch.until_type(secs(60), "new_mail");
        for v in of_type(&events, "new_mail") {
            mail.push((
                v["folder"].as_str().unwrap().to_owned(),
                v["subject"].as_str().unwrap().to_owned(),
            ));
        }
    }
    mail.sort();
    assert_eq!(
        mail,
        [
            (
                "Inbox/Work/Project X".to_owned(),
                "For the project".to_owned()
            ),
            ("archive".to_owned(), "Archived".to_owned()),
            ("inbox".to_owned(), "In the inbox".to_owned()),
        ]
    );
    // Each once.
    let later = watch.during(secs(3));
    assert!(subjects(&later).is_empty(), "{later:?}");
    assert!(watch.stop());
    assert_read_only(&server);
}

#[test]
fn a_folder_the_mailbox_does_not_have_is_named() {
    let server = GraphServer::start(USER, TOKEN);
    server.add_folder("inbox", "Work");
    let home = Home::new();
    config(
        &home,
        &server,
        "response_timeout_secs = 5",
        "[\"Inbox/Wrok\"]",
    );
    let out = home.run(&["check", "--account", "m365"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"Wrok\"") && stderr.contains("\"Work\""),
        "{stderr}"
    );
    assert_read_only(&server);
}
