//! mailpulse against the test Exchange Web Services server (`support::ews_server`): the real
//! binary (`mailpulse watch --json`, `mailpulse check`), over HTTPS with the test CA. Every
//! request mailpulse sends and every answer the server gives is validated against Microsoft's
//! EWS schema at the end of each test. Deadlines are generous upper bounds, never sleeps that
//! hope for the best.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use support::agent::{Home, Watch, of_type, secs, subjects};
use support::ews_server::{AuthMode, EwsServer, Options};

const USER: &str = "alice@example.com";
const PASSWORD: &str = "secret-pw";

/// Operations a read-only notifier may send; anything else (UpdateItem, MarkAsRead, ...) fails.
const READ_ONLY: &[&str] = &[
    "cookie",
    "GetFolder",
    "FindItem",
    "GetItem",
    "Subscribe",
    "GetStreamingEvents",
    "GetEvents",
    "Unsubscribe",
    "401",
];

fn config(home: &Home, server: &EwsServer, password: &str, keepalive: &str, extra: &str) {
    let pw = home.password_file(password);
    home.write_config(&format!(
        "[keepalive]\ncheck_on_wake = false\n{keepalive}\n\n\
         [[accounts]]\nname = \"work\"\nprotocol = \"ews\"\nurl = \"{}\"\nusername = \"{USER}\"\n\
         password_command = \"cat '{}'\"\nca_file = \"{}\"\n{extra}\n",
        server.url(),
        pw.display(),
        server.ca_pem().display()
    ));
}

fn assert_read_only(server: &EwsServer) {
    for (op, n) in server.counts() {
        assert!(
            READ_ONLY.contains(&op.as_str()),
            "mailpulse sent {n} {op} request(s): it must never change the mailbox"
        );
    }
}

fn new_mail_subjects(events: &[Value]) -> Vec<String> {
    subjects(events)
}

#[test]
fn check_prints_the_newest_inbox_item() {
    let server = EwsServer::start(Options::default());
    server.deliver("Older", "Bob", "bob@example.com");
    std::thread::sleep(Duration::from_millis(1100));
    server.deliver("Quarterly report", "Carol Jones", "carol@example.com");
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let out = home.run(&["check", "--account", "work"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("work: ")
            && stdout.contains("subject=\"Quarterly report\"")
            && stdout.contains("from=\"Carol Jones <carol@example.com>\""),
        "{stdout}"
    );
    let out = home.run(&["check", "--account", "work", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(v["subject"], "Quarterly report");
    assert_eq!(v["exists"], 2);
    assert_eq!(server.count("FindItem"), 2);
    assert!(
        server.anchors().iter().all(|a| a == USER) && !server.anchors().is_empty(),
        "X-AnchorMailbox names the mailbox"
    );
    assert!(
        server.count("cookie") >= 1,
        "X-BackEndOverrideCookie is sent back: {:?}",
        server.counts()
    );
    assert_read_only(&server);
    assert!(server.validate() >= 6);
}

#[test]
fn new_mail_is_one_event_with_sender_and_subject() {
    let server = EwsServer::start(Options::default());
    server.deliver("Before start", "Bob", "bob@example.com");
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    // The stream is open once the server sent something on it; deliver after that.
    let deadline = std::time::Instant::now() + secs(30);
    while server.count("GetStreamingEvents") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no GetStreamingEvents"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.deliver("Lunch?", "Dave Smith", "dave@example.com");
    let events = watch.until_type(secs(30), "new_mail");
    let mail = of_type(&events, "new_mail");
    assert_eq!(mail.len(), 1, "{events:?}");
    assert_eq!(mail[0]["subject"], "Lunch?");
    assert_eq!(mail[0]["from"], "Dave Smith <dave@example.com>");
    assert_eq!(mail[0]["seen"], false);
    // Nothing twice: a few heartbeats later still one event.
    let later = watch.during(secs(5));
    assert!(new_mail_subjects(&later).is_empty(), "{later:?}");
    assert!(of_type(&later, "error").is_empty(), "{later:?}");
    assert!(watch.stop(), "clean exit");
    assert_eq!(server.count("Subscribe"), 1);
    assert_read_only(&server);
    server.validate();
}

#[test]
fn missing_heartbeats_mean_a_dead_connection_then_reconnect_and_catch_up_once() {
    let server = EwsServer::start(Options {
        heartbeat: Duration::from_secs(1),
        ..Options::default()
    });
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 3", "");
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    // Two heartbeats teach mailpulse the period.
    std::thread::sleep(Duration::from_millis(2500));
    server.stall_streams();
    let stalled = std::time::Instant::now();
    server.deliver("Sent while the line was dead", "Erin", "erin@example.com");
    // Dead within 2 × 1 s + 3 s (plus slack for a loaded machine), not at the 30 s keep-alive.
    let events = watch.until_type(secs(30), "error");
    let noticed = stalled.elapsed();
    assert!(
        noticed < secs(15),
        "the dead stream was noticed only after {noticed:?}"
    );
    let error = of_type(&events, "error")[0];
    assert_eq!(error["kind"], "timeout", "{error}");
    let text = error["message"].as_str().unwrap();
    assert!(
        text.contains("no heartbeat") && text.contains(&format!("localhost:{}", server.port)),
        "{text}"
    );
    let events = watch.until_type(secs(30), "new_mail");
    assert_eq!(
        new_mail_subjects(&events),
        ["Sent while the line was dead"],
        "{events:?}"
    );
    let later = watch.during(secs(4));
    assert!(
        new_mail_subjects(&later).is_empty(),
        "announced twice: {later:?}"
    );
    // The dead connection's subscription was ended over the new one: reconnects do not pile
    // subscriptions up against the mailbox's limit.
    assert_eq!(server.subscriptions(), 1, "{:?}", server.counts());
    assert!(watch.stop());
    assert!(server.count("Subscribe") >= 2, "subscribed again");
    // Quitting ends the last one.
    assert_eq!(server.subscriptions(), 0, "{:?}", server.counts());
    assert_read_only(&server);
    server.validate();
}

#[test]
fn an_expired_subscription_is_renewed_and_nothing_is_lost() {
    let server = EwsServer::start(Options::default());
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    wait_for("GetStreamingEvents", secs(30), || {
        server.count("GetStreamingEvents") > 0
    });
    server.expire_subscriptions();
    server.deliver("After the expiry", "Frank", "frank@example.com");
    let events = watch.until_type(secs(30), "new_mail");
    assert_eq!(new_mail_subjects(&events), ["After the expiry"]);
    wait_for("a new subscription", secs(30), || {
        server.subscriptions() > 0
    });
    server.deliver("Over the new subscription", "Grace", "grace@example.com");
    let events = watch.until_type(secs(30), "new_mail");
    assert_eq!(new_mail_subjects(&events), ["Over the new subscription"]);
    let later = watch.during(secs(3));
    assert!(new_mail_subjects(&later).is_empty(), "{later:?}");
    let all: Vec<Value> = events.into_iter().chain(later).collect();
    assert!(
        of_type(&all, "error").is_empty(),
        "renewal is routine: {all:?}"
    );
    assert!(watch.stop());
    assert_eq!(server.count("Subscribe"), 2);
    assert_eq!(server.count("GetFolder"), 1, "no reconnect was needed");
    assert_read_only(&server);
    server.validate();
}

#[test]
fn a_wrong_password_is_one_error_and_no_hammering() {
    let server = EwsServer::start(Options::default());
    let home = Home::new();
    config(
        &home,
        &server,
        "wrong",
        "response_timeout_secs = 10",
        "auth = \"basic\"\n",
    );
    let mut watch = Watch::start(&home);
    let events = watch.until_type(secs(30), "error");
    let error = of_type(&events, "error")[0];
    assert_eq!(error["kind"], "auth", "{error}");
    let text = error["message"].as_str().unwrap();
    assert!(
        text.contains("rejected the login") && text.contains(USER),
        "{text}"
    );
    assert!(
        !text.contains("wrong"),
        "the password is never shown: {text}"
    );
    // One request, refused; then a long backoff (10 minutes), not hammering.
    assert_eq!(server.count("401"), 1);
    let later = watch.during(secs(6));
    assert!(of_type(&later, "error").is_empty(), "{later:?}");
    assert_eq!(server.count("401"), 1, "no retry within 6 s");
    assert!(watch.stop());
}

#[test]
fn ntlm_handshake_carries_requests_and_the_stream_on_its_connection() {
    let server = EwsServer::start(Options {
        auth: AuthMode::Ntlm,
        ..Options::default()
    });
    server.deliver("Before start", "Bob", "bob@example.com");
    let home = Home::new();
    config(
        &home,
        &server,
        PASSWORD,
        "response_timeout_secs = 10",
        "auth = \"ntlm\"\n",
    );
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    let deadline = std::time::Instant::now() + secs(30);
    while server.count("GetStreamingEvents") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no GetStreamingEvents"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.deliver("Over NTLM", "Heidi", "heidi@example.com");
    let events = watch.until_type(secs(30), "new_mail");
    assert_eq!(new_mail_subjects(&events), ["Over NTLM"]);
    assert!(watch.stop());
    // One handshake per connection (requests, stream), none per request.
    assert_eq!(server.count("401"), 2, "{:?}", server.counts());
    assert!(server.count("FindItem") >= 2);
    assert_read_only(&server);
    server.validate();
}

#[test]
fn password_auth_finds_ntlm_by_itself_and_a_wrong_password_says_so() {
    let server = EwsServer::start(Options {
        auth: AuthMode::Ntlm,
        ..Options::default()
    });
    server.deliver("Hello NTLM", "Ivan", "ivan@example.com");
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let out = home.run(&["check", "--account", "work"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("subject=\"Hello NTLM\""), "{stdout}");
    config(&home, &server, "wrong", "response_timeout_secs = 10", "");
    let out = home.run(&["check", "--account", "work"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rejected the NTLM login of \"alice@example.com\""),
        "{stderr}"
    );
}

#[test]
fn an_untrusted_certificate_is_refused_naming_host_and_ca_file() {
    let server = EwsServer::start(Options::default());
    let other = tempfile::tempdir().unwrap();
    let other_ca = support::tls::write_test_pki(other.path()).ca_pem;
    let home = Home::new();
    let pw = home.password_file(PASSWORD);
    home.write_config(&format!(
        "[[accounts]]\nname = \"work\"\nprotocol = \"ews\"\nurl = \"{}\"\nusername = \"{USER}\"\n\
         password_command = \"cat '{}'\"\nca_file = \"{}\"\n",
        server.url(),
        pw.display(),
        other_ca.display()
    ));
    let out = home.run(&["check"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("certificate of localhost is not trusted")
            && stderr.contains(&other_ca.display().to_string()),
        "{stderr}"
    );
    let ops: HashSet<String> = server.counts().into_keys().collect();
    assert!(
        ops.is_empty(),
        "nothing sent over an untrusted connection: {ops:?}"
    );
}

#[test]
fn schema_rejects_the_real_notification_namespace_and_accepts_our_requests() {
    use support::ews_schema::{body_child, xmllint};
    // The known mismatch, kept visible: Exchange's m:Notification fails the published schema.
    let real = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
         <m:GetStreamingEventsResponse xmlns:m=\"{m}\" xmlns:t=\"{t}\"><m:ResponseMessages>\
         <m:GetStreamingEventsResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>\
         <m:Notifications><m:Notification><t:SubscriptionId>x</t:SubscriptionId><t:StatusEvent><t:Watermark>w</t:Watermark></t:StatusEvent></m:Notification></m:Notifications>\
         </m:GetStreamingEventsResponseMessage></m:ResponseMessages></m:GetStreamingEventsResponse></s:Body></s:Envelope>",
        m = support::ews_server::NS_M,
        t = support::ews_server::NS_T
    );
    let doc = body_child(&real).unwrap();
    assert!(xmllint(&[("real".into(), doc.clone())]).is_err());
    assert!(xmllint(&[("fixed".into(), support::ews_schema::schema_form(&doc))]).is_ok());
    // And a broken request is caught (the validator is not a rubber stamp).
    let bad = mailpulse::testing::xml::find_items("inbox", 1, 0)
        .replace("<m:SortOrder>", "<m:Bogus/><m:SortOrder>");
    assert!(xmllint(&[("bad".into(), body_child(&bad).unwrap())]).is_err());
    // Every request builder, including those a given test may not reach.
    use mailpulse::testing::xml;
    let requests = [
        xml::get_folder("inbox"),
        xml::find_items("inbox", 25, 50),
        xml::get_items(&["AAMk=".into(), "AAMl=".into()]),
        xml::subscribe_streaming("inbox"),
        xml::subscribe_pull("junkemail", 30),
        xml::get_events("sub", "wm"),
        xml::get_streaming_events("sub", 30),
    ];
    let docs: Vec<(String, String)> = requests
        .iter()
        .map(|r| ("request".to_string(), body_child(r).unwrap()))
        .collect();
    xmllint(&docs).unwrap();
}

fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_without_streaming_is_followed_by_a_pull_subscription() {
    let server = EwsServer::start(Options {
        streaming: false,
        ..Options::default()
    });
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    server.deliver("Pulled", "Judy", "judy@example.com");
    // GetEvents runs every 10 s.
    let events = watch.until_type(secs(40), "new_mail");
    assert_eq!(new_mail_subjects(&events), ["Pulled"]);
    assert!(of_type(&events, "error").is_empty(), "{events:?}");
    assert!(watch.stop());
    assert!(server.count("GetEvents") >= 1);
    assert_eq!(server.count("GetStreamingEvents"), 0);
    assert_eq!(server.count("Subscribe"), 2, "streaming refused, then pull");
    assert_read_only(&server);
    server.validate();
}

#[test]
fn a_server_without_subscriptions_is_polled_with_finditem() {
    let server = EwsServer::start(Options {
        streaming: false,
        pull: false,
        ..Options::default()
    });
    let home = Home::new();
    config(
        &home,
        &server,
        PASSWORD,
        "interval_secs = 30\nresponse_timeout_secs = 10",
        "",
    );
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    let finds = server.count("FindItem");
    server.deliver("Polled", "Ken", "ken@example.com");
    let events = watch.until_type(secs(60), "new_mail");
    assert_eq!(new_mail_subjects(&events), ["Polled"]);
    assert!(watch.stop());
    assert!(server.count("FindItem") > finds);
    assert_eq!(
        server.count("GetEvents") + server.count("GetStreamingEvents"),
        0
    );
    assert_read_only(&server);
    server.validate();
}

#[test]
fn server_busy_back_off_hint_is_honoured() {
    let server = EwsServer::start(Options::default());
    server.busy_next(4000);
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let mut watch = Watch::start(&home);
    let events = watch.until_type(secs(30), "error");
    let error = of_type(&events, "error")[0];
    let text = error["message"].as_str().unwrap();
    assert!(
        text.contains("ErrorServerBusy") && text.contains("asked to wait 4 s"),
        "{text}"
    );
    watch.until_type(secs(60), "connected");
    assert!(watch.stop());
    let log = server.log();
    let busy_at = log.iter().position(|(_, op)| op == "GetFolder").unwrap();
    let (t0, _) = log[busy_at];
    let (t1, next) = &log[busy_at + 1];
    assert!(
        t1.duration_since(t0) >= Duration::from_millis(3900),
        "{next} only {:?} after the busy answer",
        t1.duration_since(t0)
    );
    server.validate();
}

fn discover(home: &Home, server: &EwsServer, email: &str, password: &str) -> std::process::Output {
    discover_args(home, server, email, password, &[])
}

fn discover_args(
    home: &Home,
    server: &EwsServer,
    email: &str,
    password: &str,
    extra: &[&str],
) -> std::process::Output {
    use std::io::Write;
    let port = server.port.to_string();
    let ca = server.ca_pem().display().to_string();
    let named = format!("localhost:{port}");
    let mut args = vec![
        "discover",
        email,
        "--username",
        USER,
        "--server",
        &named,
        "--ca-file",
        &ca,
    ];
    args.extend_from_slice(extra);
    let mut child = home
        .command(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let deadline = std::time::Instant::now() + secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn discover_finds_the_ews_url_from_the_address() {
    let server = EwsServer::start(Options {
        auth: AuthMode::Ntlm,
        ..Options::default()
    });
    let home = Home::new();
    let out = discover(&home, &server, USER, PASSWORD);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("url = \"{}\"", server.url()));
    // A redirect to another address is followed.
    let out = discover(&home, &server, "old@example.com", PASSWORD);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("url = \"{}\"", server.url())
    );
    assert_eq!(server.count("Autodiscover"), 3);
    // A redirect to a server outside the address's domain and the named server is not
    // followed: whoever answers for the domain must not be able to send the password on.
    let out = discover(&home, &server, "moved@example.com", PASSWORD);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "redirected to https://127.0.0.1:{}/autodiscover/autodiscover.xml is outside example.com and localhost",
            server.port
        )) && stderr.contains("not followed"),
        "{stderr}"
    );
    assert_eq!(server.count("Autodiscover"), 4, "the redirect was followed");
    // An unknown address and a wrong password say so.
    let out = discover(&home, &server, "nobody@example.com", PASSWORD);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("autodiscover found no EWS URL for nobody@example.com")
            && stderr.contains("can't be found"),
        "{stderr}"
    );
    // A server's words reach the terminal escaped: no control sequence, no reordering.
    let out = discover(&home, &server, "escape@example.com", PASSWORD);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Not here\\u{9b}2J\\u{202e}gnp.exe")
            && !stderr.contains('\u{9b}')
            && !stderr.contains('\u{202e}'),
        "{stderr:?}"
    );
    let out = discover(&home, &server, USER, "wrong");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rejected the NTLM login"), "{stderr}");
}

/// Autodiscover asks servers the user did not name: the password goes only with NTLM or
/// Negotiate, never Basic, unless the user says so (`--basic`, `auth = "basic"`).
#[test]
fn discover_sends_the_password_with_basic_only_when_asked_to() {
    let server = EwsServer::start(Options {
        auth: AuthMode::Basic,
        ..Options::default()
    });
    let home = Home::new();
    let out = discover(&home, &server, USER, PASSWORD);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("offers neither NTLM nor Negotiate (it offers Basic")
            && stderr.contains("--basic"),
        "{stderr}"
    );
    assert_eq!(
        server.count("Autodiscover"),
        0,
        "the password went with Basic: {:?}",
        server.counts()
    );
    let out = discover_args(&home, &server, USER, PASSWORD, &["--basic"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("url = \"{}\"", server.url()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.count("Autodiscover"), 1);
}

#[test]
fn three_mails_in_one_second_are_three_events() {
    let server = EwsServer::start(Options::default());
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    wait_for("GetStreamingEvents", secs(30), || {
        server.count("GetStreamingEvents") > 0
    });
    for n in 1..=3 {
        server.deliver(&format!("Burst {n}"), "Lee", "lee@example.com");
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let events = watch.until_type(secs(30), "new_mail");
        got.extend(new_mail_subjects(&events));
    }
    let later = watch.during(secs(3));
    got.extend(new_mail_subjects(&later));
    got.sort();
    assert_eq!(got, ["Burst 1", "Burst 2", "Burst 3"]);
    assert!(watch.stop());
}

#[test]
fn a_closed_stream_is_reopened_quietly() {
    let server = EwsServer::start(Options {
        heartbeat: Duration::from_secs(1),
        stream_lifetime: Duration::from_secs(2),
        ..Options::default()
    });
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 5", "");
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    wait_for("three streams", secs(30), || {
        server.count("GetStreamingEvents") >= 3
    });
    server.deliver("After two Closed", "Mia", "mia@example.com");
    let events = watch.until_type(secs(30), "new_mail");
    assert_eq!(new_mail_subjects(&events), ["After two Closed"]);
    assert!(of_type(&events, "error").is_empty(), "{events:?}");
    assert!(watch.stop());
    assert_eq!(server.count("GetFolder"), 1, "no reconnect");
    assert_eq!(server.count("Subscribe"), 1, "the subscription is kept");
    server.validate();
}

#[test]
fn mail_that_arrived_while_mailpulse_was_off_is_one_summary() {
    let server = EwsServer::start(Options::default());
    server.deliver("Seen before", "Ned", "ned@example.com");
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    assert!(watch.stop());
    std::thread::sleep(Duration::from_millis(1100));
    server.deliver("While off 1", "Olga", "olga@example.com");
    server.deliver("While off 2", "Olga", "olga@example.com");
    let mut watch = Watch::start(&home);
    let events = watch.until_type(secs(30), "missed_mail");
    let missed = of_type(&events, "missed_mail")[0];
    assert_eq!(missed["count"], 2, "{missed}");
    assert!(new_mail_subjects(&events).is_empty(), "{events:?}");
    let later = watch.during(secs(3));
    assert!(new_mail_subjects(&later).is_empty(), "{later:?}");
    assert!(watch.stop());
}

#[test]
fn malformed_answers_are_clear_errors() {
    let server = EwsServer::start(Options::default());
    server.deliver("x", "y", "y@example.com");
    server.malformed_next();
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("localhost:{}: malformed answer", server.port)),
        "{stderr}"
    );
    // The next attempt works.
    assert!(home.run(&["check"]).status.success());
}

/// Exchange Online blocks EWS for most apps since October 2026 and answers them 403: `check`
/// says so in one sentence and names the backend to use instead.
#[test]
fn a_blocked_ews_says_to_use_graph() {
    let server = EwsServer::start(Options::default());
    server.forbid();
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refuses EWS to this account (HTTP 403 Forbidden)")
            && stderr.contains("protocol = \"graph\""),
        "{stderr}"
    );
}

#[test]
fn bearer_tokens_from_password_command() {
    let server = EwsServer::start(Options {
        auth: AuthMode::Bearer,
        password: "eyJ0eXAiOiJKV1QiLCJhbGciOi.token".into(),
        ..Options::default()
    });
    server.deliver("Token mail", "Pat", "pat@example.com");
    let home = Home::new();
    config(
        &home,
        &server,
        "eyJ0eXAiOiJKV1QiLCJhbGciOi.token",
        "response_timeout_secs = 10",
        "auth = \"bearer\"\n",
    );
    let out = home.run(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Token mail"));
    config(
        &home,
        &server,
        "expired",
        "response_timeout_secs = 10",
        "auth = \"bearer\"\n",
    );
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rejected the OAuth2 token"), "{stderr}");
    assert!(
        !stderr.contains("expired"),
        "the token is never shown: {stderr}"
    );
}

#[test]
fn a_server_that_ends_every_stream_at_once_is_not_hammered() {
    let server = EwsServer::start(Options {
        stream_lifetime: Duration::ZERO,
        ..Options::default()
    });
    let home = Home::new();
    config(&home, &server, PASSWORD, "response_timeout_secs = 10", "");
    let mut watch = Watch::start(&home);
    watch.until_type(secs(30), "connected");
    wait_for("the first stream", secs(30), || {
        server.count("GetStreamingEvents") > 0
    });
    let first = std::time::Instant::now();
    std::thread::sleep(secs(8));
    let streams = server.count("GetStreamingEvents");
    // Pauses of 1, 2, 4 s between streams that end at once: 4 or 5 within 8 s, not hundreds.
    assert!(
        streams <= 6,
        "{streams} GetStreamingEvents in {:?}",
        first.elapsed()
    );
    assert!(watch.stop());
}

#[test]
fn a_host_alone_means_the_default_ews_path() {
    let server = EwsServer::start(Options::default());
    server.deliver("By host name", "Quinn", "quinn@example.com");
    let home = Home::new();
    let pw = home.password_file(PASSWORD);
    home.write_config(&format!(
        "[[accounts]]\nname = \"work\"\nprotocol = \"ews\"\nhost = \"localhost\"\nport = {}\n\
         username = \"{USER}\"\npassword_command = \"cat '{}'\"\nca_file = \"{}\"\n",
        server.port,
        pw.display(),
        server.ca_pem().display()
    ));
    let out = home.run(&["check", "--account", "work"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("subject=\"By host name\""), "{stdout}");
}
