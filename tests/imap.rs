//! mailpulse against a real, private Dovecot: what a user sees from `mailpulse check` and
//! `mailpulse watch --json`. Deadlines are generous (the machine is shared); nothing here
//! depends on timing luck, only on upper bounds.
// Linux only: needs a private Dovecot (Debian's package).
#![cfg(target_os = "linux")]

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::{Home, Watch, of_type, secs, subjects};
use support::dovecot::{Dovecot, DovecotOptions};
use support::relay::Relay;

const USER: &str = "alice";
const PASSWORD: &str = "secret-pw";

/// How the agent reaches the server.
struct Account<'a> {
    port: u16,
    security: &'a str,
    ca_file: Option<PathBuf>,
    password: &'a str,
    extra: &'a str,
}

fn config(home: &Home, accounts: &[Account<'_>], keepalive: &str) -> String {
    // Keep-alive counts are exact here; a paused test VM must not add a "resume" check.
    let mut text = format!("[keepalive]\ncheck_on_wake = false\n{keepalive}\n\n");
    for (i, a) in accounts.iter().enumerate() {
        let pw = home.path().join(format!("password-{i}"));
        std::fs::write(&pw, a.password).unwrap();
        text += &format!(
            "[[accounts]]\nname = \"{}\"\nhost = \"localhost\"\nport = {}\nsecurity = \"{}\"\n\
             username = \"{USER}\"\npassword_command = \"cat '{}'\"\n{}{}\n",
            if i == 0 {
                "work".to_string()
            } else {
                format!("work{i}")
            },
            a.port,
            a.security,
            pw.display(),
            a.ca_file
                .as_ref()
                .map(|c| format!("ca_file = \"{}\"\n", c.display()))
                .unwrap_or_default(),
            a.extra,
        );
    }
    text
}

fn tls(dovecot: &Dovecot) -> Account<'static> {
    Account {
        port: dovecot.imaps_port(),
        security: "tls",
        ca_file: Some(dovecot.ca_pem()),
        password: PASSWORD,
        extra: "",
    }
}

fn plain(port: u16) -> Account<'static> {
    Account {
        port,
        security: "plain",
        ca_file: None,
        password: PASSWORD,
        extra: "",
    }
}

fn setup(_dovecot: &Dovecot, account: Account<'_>, keepalive: &str) -> Home {
    let home = Home::new();
    home.write_config(&config(&home, &[account], keepalive));
    home
}

fn connected(w: &Watch) -> Vec<Value> {
    w.until_type(secs(30), "connected")
}

fn new_mail(w: &Watch) -> Value {
    w.until_type(secs(30), "new_mail").pop().unwrap()
}

/// A message's INTERNALDATE as the agent prints it (RFC 3339) is a real timestamp, within a
/// few minutes of now: every message here was delivered during the test.
fn assert_recent(date: &str) {
    let t = chrono::DateTime::parse_from_rfc3339(date)
        .unwrap_or_else(|e| panic!("date {date:?} is not an RFC 3339 timestamp: {e}"));
    let off = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .abs();
    assert!(off < 300, "date {date} is {off} s away from now");
}

#[test]
fn check_prints_the_newest_message_over_verified_tls() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "first", "1");
    d.deliver(USER, "Bob Builder <bob@example.org>", "Grüße aus Köln", "2");
    let home = setup(&d, tls(&d), "");
    let out = home.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(
            "work: uid=2 from=\"Bob Builder <bob@example.org>\" subject=\"Grüße aus Köln\" date="
        ),
        "{stdout}"
    );
    let (_, date) = stdout.trim_end().rsplit_once(" date=").unwrap();
    assert_recent(date);

    let out = home.run(&["check", "--json", "--account", "work"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["uid"], 2);
    assert_eq!(v["exists"], 2);
    assert_eq!(v["from"], "Bob Builder <bob@example.org>");
    assert_eq!(v["seen"], false);
    assert_recent(v["date"].as_str().unwrap_or_else(|| panic!("no date: {v}")));
}

#[test]
fn check_on_an_empty_mailbox_says_empty() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = setup(&d, tls(&d), "");
    let out = home.run(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "work: empty\n");
}

/// Without `--config`, the file comes from the platform's config folder
/// (`$XDG_CONFIG_HOME/mailpulse/config.toml` on Linux), and a missing one is named in the error.
#[test]
fn without_config_the_platform_config_folder_is_used() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "found by default", "x");
    let home = setup(&d, tls(&d), "");
    let strip = |c: &mut std::process::Command| {
        let mut plain = std::process::Command::new(support::agent::BIN);
        plain.args(c.get_args().skip(2)); // without "--config PATH"
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => plain.env(k, v),
                None => plain.env_remove(k),
            };
        }
        plain
    };
    let expected = home.path().join("config/mailpulse/config.toml");
    let out = strip(&mut home.command(&["check"])).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&expected.display().to_string()), "{err}");

    std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
    std::fs::copy(home.config_path(), &expected).unwrap();
    let out = strip(&mut home.command(&["check"])).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("subject=\"found by default\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn starttls_is_negotiated_before_login() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "over starttls", "x");
    let home = setup(
        &d,
        Account {
            port: d.imap_port(),
            security: "starttls",
            ..tls(&d)
        },
        "",
    );
    let out = home.run(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("subject=\"over starttls\""));
    let cmds = d.imap_commands(USER).join("\n").to_uppercase();
    let starttls = cmds.find("STARTTLS").expect("STARTTLS sent");
    // After STARTTLS the rawlog of the plaintext phase ends; LOGIN must not precede it.
    assert!(
        cmds.find("LOGIN").is_none_or(|login| login > starttls),
        "{cmds}"
    );
}

#[test]
fn untrusted_certificate_is_refused_naming_the_host_and_the_fix() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = setup(
        &d,
        Account {
            ca_file: None,
            ..tls(&d)
        },
        "",
    );
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("certificate of localhost is not trusted"),
        "{err}"
    );
    assert!(err.contains("set ca_file"), "{err}");
    assert_eq!(
        d.login_attempts(USER),
        0,
        "no password sent to an unverified server"
    );
}

#[test]
fn wrong_password_is_one_error_and_no_hammering() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = setup(
        &d,
        Account {
            password: "wrong",
            ..tls(&d)
        },
        "response_timeout_secs = 10",
    );
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rejected the login of \"alice\""), "{err}");
    assert!(
        err.contains("check the user name and the password"),
        "{err}"
    );
    assert!(
        !err.contains("wrong"),
        "the password must not be echoed: {err}"
    );

    let before = d.login_attempts(USER);
    let w = Watch::start(&home);
    let events = w.until_type(secs(30), "error");
    assert_eq!(events.last().unwrap()["kind"], "auth");
    let more = w.during(secs(15));
    assert!(
        of_type(&more, "error").is_empty(),
        "reported once: {more:?}"
    );
    assert_eq!(
        d.login_attempts(USER) - before,
        1,
        "one attempt, then at least 10 minutes of quiet"
    );
}

#[test]
fn watch_announces_each_delivered_mail_once_with_sender_and_subject() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Old <old@example.org>", "already there", "x");
    let home = setup(&d, tls(&d), "");
    let w = Watch::start(&home);
    let start = connected(&w);
    assert!(
        subjects(&start).is_empty(),
        "old mail is not news: {start:?}"
    );
    let idle = w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");
    assert!(subjects(&idle).is_empty());

    d.deliver(USER, "Bob <bob@example.org>", "lunch?", "at noon");
    let mail = new_mail(&w);
    assert_eq!(mail["account"], "work");
    assert_eq!(mail["folder"], "INBOX");
    assert_eq!(mail["from"], "Bob <bob@example.org>");
    assert_eq!(mail["subject"], "lunch?");
    assert_eq!(mail["uid"], 2);
    assert_recent(
        mail["date"]
            .as_str()
            .unwrap_or_else(|| panic!("no date: {mail}")),
    );

    // Several at once: each once, in order.
    for i in 1..=4 {
        d.deliver(USER, "List <list@example.org>", &format!("digest {i}"), "x");
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + secs(30);
    while got.len() < 4 && Instant::now() < deadline {
        got.push(new_mail(&w)["subject"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, ["digest 1", "digest 2", "digest 3", "digest 4"]);
    let quiet = w.during(secs(3));
    assert!(subjects(&quiet).is_empty(), "never twice: {quiet:?}");
}

#[test]
fn keepalive_queries_reach_the_server_at_the_interval_and_stop_when_disabled() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "x", "x");
    let home = setup(&d, tls(&d), "interval_secs = 30");
    let w = Watch::start(&home);
    connected(&w);
    let t0 = Instant::now();
    let base = d.keepalive_queries(USER);
    assert_eq!(base, 1, "the baseline query: {:?}", d.imap_commands(USER));

    let events = w.during(secs(65));
    let keepalives = of_type(&events, "keepalive");
    assert_eq!(
        keepalives.len(),
        2,
        "two keep-alives in 65 s at 30 s: {events:?}"
    );
    assert!(
        keepalives
            .iter()
            .all(|k| k["round_trip_ms"].as_f64().unwrap() < 10_000.0)
    );
    // The server saw them: IDLE ended, the last-item query, IDLE again.
    assert_eq!(
        d.keepalive_queries(USER),
        base + 2,
        "{:?}",
        d.imap_commands(USER)
    );
    assert!(t0.elapsed() >= secs(60));
    let cmds = d.imap_commands(USER);
    assert!(
        cmds.iter()
            .filter(|c| c.to_uppercase().ends_with("IDLE"))
            .count()
            >= 3,
        "{cmds:?}"
    );
    assert!(
        cmds.iter().any(|c| c.to_uppercase().contains("EXAMINE")),
        "read-only open"
    );
    assert!(
        !cmds.iter().any(|c| c.to_uppercase().contains("SELECT")),
        "never SELECT: {cmds:?}"
    );

    // Keep-alive off (config reloaded with SIGHUP): no more queries, IDLE stays up.
    std::fs::write(
        home.config_path(),
        std::fs::read_to_string(home.config_path())
            .unwrap()
            .replace("interval_secs = 30", "interval_secs = 30\nenabled = false"),
    )
    .unwrap();
    w.signal("HUP");
    w.until_type(secs(10), "reloaded");
    w.during(secs(2));
    let after_off = d.keepalive_queries(USER);
    let events = w.during(secs(35));
    assert!(of_type(&events, "keepalive").is_empty(), "{events:?}");
    assert_eq!(d.keepalive_queries(USER), after_off);
    // Mail is still pushed while IDLE.
    d.deliver(USER, "Bob <bob@example.org>", "still pushed", "x");
    assert_eq!(new_mail(&w)["subject"], "still pushed");
}

#[test]
fn server_without_idle_is_polled() {
    let d = Dovecot::start(DovecotOptions {
        idle: false,
        ..DovecotOptions::default()
    });
    let home = setup(&d, tls(&d), "interval_secs = 30");
    let w = Watch::start(&home);
    connected(&w);
    d.deliver(USER, "Bob <bob@example.org>", "found by polling", "x");
    let mail = w.until_type(secs(45), "new_mail").pop().unwrap();
    assert_eq!(mail["subject"], "found by polling");
    let cmds = d.imap_commands(USER);
    assert!(
        !cmds.iter().any(|c| c.to_uppercase().ends_with(" IDLE")),
        "no IDLE: {cmds:?}"
    );
}

#[test]
fn mail_that_arrives_while_the_connection_is_down_is_caught_up_once() {
    let d = Dovecot::start(DovecotOptions::default());
    let relay = Relay::start(d.imap_port());
    let home = setup(&d, plain(relay.port()), "");
    let w = Watch::start(&home);
    connected(&w);
    w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");

    relay.refuse();
    relay.cut();
    let events = w.until_type(secs(30), "error");
    assert_eq!(events.last().unwrap()["kind"], "disconnected", "{events:?}");
    d.deliver(USER, "Bob <bob@example.org>", "while you were away", "x");
    d.deliver(USER, "Bob <bob@example.org>", "and another", "x");
    std::thread::sleep(Duration::from_secs(3));

    relay.forward();
    // "Restored" and "connected" first, then the mail of the outage (the order toasts follow).
    let back = w.until_type(secs(60), "connected");
    assert!(subjects(&back).is_empty(), "{back:?}");
    assert_eq!(of_type(&back, "recovered").len(), 1, "{back:?}");
    let mut caught_up = w.until_type(secs(30), "new_mail");
    caught_up.extend(w.until_type(secs(30), "new_mail"));
    assert_eq!(subjects(&caught_up), ["while you were away", "and another"]);
    let quiet = w.during(secs(3));
    assert!(subjects(&quiet).is_empty(), "{quiet:?}");
}

/// The server goes down; meanwhile a message reaches the mailbox by another path (an MTA
/// writing the Maildir itself), so no IDLE can push it. When the server is back, the agent
/// reconnects and finds the message by its catch-up: announced once, after the reconnect, with
/// its sender and subject.
#[test]
fn dovecot_restart_is_survived_with_catch_up() {
    let mut d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "before the restart", "x");
    let home = setup(&d, tls(&d), "");
    let w = Watch::start(&home);
    connected(&w);
    w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");

    d.stop();
    let down = w.until_type(secs(30), "error");
    assert_eq!(down.last().unwrap()["kind"], "disconnected", "{down:?}");
    let file = d.drop_into_maildir(
        USER,
        "Bob <bob@example.org>",
        "while the server was down",
        "x",
    );
    assert!(
        file.parent().unwrap().ends_with("new"),
        "{}",
        file.display()
    );
    std::thread::sleep(Duration::from_secs(2));
    let quiet = w.during(secs(1));
    assert!(subjects(&quiet).is_empty(), "nothing to push it: {quiet:?}");

    d.start_again();
    let back = w.until_type(secs(60), "connected");
    assert!(
        subjects(&back).is_empty(),
        "not before the reconnect: {back:?}"
    );
    assert_eq!(
        back.last().unwrap()["exists"],
        2,
        "the server found the message: {back:?}"
    );
    let caught_up = w.until_type(secs(30), "new_mail");
    assert!(
        of_type(&caught_up, "connected").is_empty(),
        "one reconnect: {caught_up:?}"
    );
    let mail = caught_up.last().unwrap();
    assert_eq!(mail["subject"], "while the server was down", "{mail}");
    assert_eq!(mail["from"], "Bob <bob@example.org>", "{mail}");
    assert_eq!(mail["uid"], 2, "{mail}");
    let quiet = w.during(secs(3));
    assert!(subjects(&quiet).is_empty(), "exactly once: {quiet:?}");
    assert!(of_type(&quiet, "connected").is_empty(), "{quiet:?}");
}

/// `security = "plain"` is warned about once per account, not on every connection: not again
/// when the connection is lost and made again, nor when a reload restarts the account's
/// sessions (a new response timeout).
#[test]
fn the_plain_warning_is_printed_once_per_account() {
    let d = Dovecot::start(DovecotOptions::default());
    let relay = Relay::start(d.imap_port());
    let home = setup(&d, plain(relay.port()), "response_timeout_secs = 10");
    let mut w = Watch::start(&home);
    let warnings = |w: &Watch| w.stderr_text().matches("security = \"plain\"").count();
    connected(&w);
    w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");

    relay.cut();
    let events = w.until_type(secs(30), "connected");
    assert!(
        !of_type(&events, "error").is_empty(),
        "reconnected: {events:?}"
    );
    assert!(relay.connections() >= 2);

    let text = std::fs::read_to_string(home.config_path()).unwrap();
    home.write_config(&text.replace("response_timeout_secs = 10", "response_timeout_secs = 11"));
    w.signal("HUP");
    w.until_type(secs(10), "reloaded");
    w.until_type(secs(30), "connected");
    assert!(relay.connections() >= 3);

    assert!(w.stop(), "{}", w.stderr_text());
    assert_eq!(warnings(&w), 1, "{}\n{}", w.stderr_text(), w.stdout_text());
    assert!(
        w.stderr_text().contains(&format!(
            "the password and mail travel unencrypted to localhost:{}",
            relay.port()
        )),
        "{}",
        w.stderr_text()
    );
}

#[test]
fn dead_connection_is_detected_by_the_keepalive_and_lost_mail_is_announced() {
    let d = Dovecot::start(DovecotOptions::default());
    let relay = Relay::start(d.imap_port());
    let home = setup(
        &d,
        plain(relay.port()),
        "interval_secs = 30\nresponse_timeout_secs = 3",
    );
    let w = Watch::start(&home);
    connected(&w);
    w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");
    // The path silently drops everything, as a NAT gateway that forgot the mapping does.
    relay.blackhole();
    let lost = Instant::now();
    d.deliver(USER, "Bob <bob@example.org>", "pushed into the void", "x");
    let events = w.until_type(secs(60), "error");
    let err = events.last().unwrap();
    assert_eq!(err["kind"], "timeout", "{events:?}");
    assert!(
        err["message"].as_str().unwrap().contains("no answer"),
        "{err}"
    );
    assert!(
        lost.elapsed() <= secs(30 + 3 + 5),
        "detected after {:?}",
        lost.elapsed()
    );
    assert!(
        subjects(&events).is_empty(),
        "the push was lost: {events:?}"
    );

    relay.forward();
    let back = w.until_type(secs(30), "connected");
    assert!(subjects(&back).is_empty(), "{back:?}");
    let caught_up = w.until_type(secs(30), "new_mail");
    assert_eq!(subjects(&caught_up), ["pushed into the void"]);
    let quiet = w.during(secs(3));
    assert!(subjects(&quiet).is_empty(), "once: {quiet:?}");
}

#[test]
fn restart_of_the_agent_summarises_mail_that_arrived_while_it_was_off() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "before", "x");
    let home = setup(&d, tls(&d), "");
    let mut w = Watch::start(&home);
    connected(&w);
    assert!(w.stop(), "SIGTERM ends watch cleanly: {}", w.stderr_text());
    let cmds = d.imap_commands(USER);
    assert!(
        cmds.iter().any(|c| c.to_uppercase().ends_with("LOGOUT")),
        "logged out: {cmds:?}"
    );

    d.deliver(USER, "Bob <bob@example.org>", "while off 1", "x");
    d.deliver(USER, "Carol <carol@example.org>", "while off 2", "x");
    let w = Watch::start(&home);
    let back = connected(&w);
    assert!(of_type(&back, "missed_mail").is_empty(), "{back:?}");
    // The summary follows "connected", once, and no message is announced on its own.
    let mut events = w.until_type(secs(30), "missed_mail");
    events.extend(w.during(secs(3)));
    let missed = of_type(&events, "missed_mail");
    assert_eq!(missed.len(), 1, "{events:?}");
    assert_eq!(missed[0]["count"], 2);
    assert_eq!(missed[0]["subject"], "while off 2");
    assert_eq!(missed[0]["from"], "Carol <carol@example.org>");
    assert!(subjects(&events).is_empty(), "{events:?}");
}

#[test]
fn flags_are_byte_identical_after_a_whole_session() {
    let d = Dovecot::start(DovecotOptions::default());
    for i in 0..3 {
        d.deliver(USER, "Ann <ann@example.org>", &format!("m{i}"), "x");
    }
    let before = d.flags_snapshot(USER);
    assert_eq!(before.len(), 3);
    let home = setup(&d, tls(&d), "interval_secs = 30");
    let w = Watch::start(&home);
    connected(&w);
    d.deliver(USER, "Bob <bob@example.org>", "new one", "x");
    new_mail(&w);
    w.during(secs(32)); // one keep-alive cycle
    assert!(home.run(&["check"]).status.success());
    drop(w);
    let after = d.flags_snapshot(USER);
    // By file name, not by position: Maildir names of one second do not sort by arrival.
    assert_eq!(after.len(), 4, "{after:?}");
    for entry in &before {
        assert!(
            after.contains(entry),
            "the agent must never change flags: before {before:?}, after {after:?}"
        );
    }
    let new = after
        .iter()
        .find(|(name, _)| !before.iter().any(|(b, _)| b == name))
        .expect("the new message");
    assert_eq!(new.1, "", "the new message is still unread: {after:?}");
    let cmds = d.imap_commands(USER).join("\n").to_uppercase();
    for forbidden in [
        "SELECT", "STORE", "BODY[", "RFC822", "EXPUNGE", "COPY", "MOVE",
    ] {
        assert!(!cmds.contains(forbidden), "{forbidden} sent:\n{cmds}");
    }
}

#[test]
fn on_new_mail_gets_the_details_in_its_environment() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = Home::new();
    let out = home.path().join("hook.out");
    let hook = format!(
        "on_new_mail = \"printf '%s|%s|%s|%s|%s' \\\"$MAILPULSE_ACCOUNT\\\" \\\"$MAILPULSE_FOLDER\\\" \\\"$MAILPULSE_UID\\\" \\\"$MAILPULSE_FROM\\\" \\\"$MAILPULSE_SUBJECT\\\" > '{}'\"\n",
        out.display()
    );
    home.write_config(&config(
        &home,
        &[Account {
            extra: &hook,
            ..tls(&d)
        }],
        "",
    ));
    let w = Watch::start(&home);
    connected(&w);
    d.deliver(USER, "Bob <bob@example.org>", "it's $(rm -rf /) time", "x");
    new_mail(&w);
    let deadline = Instant::now() + secs(10);
    while !out.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "work|INBOX|1|Bob <bob@example.org>|it's $(rm -rf /) time"
    );
}

#[test]
fn secrets_never_reach_output_or_logs() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = Home::new();
    let mut text = config(&home, &[tls(&d)], "");
    text += "\n[logging]\nenabled = true\nlevel = \"trace\"\n";
    home.write_config(&text);
    let mut w = Watch::start_with(&home, &[("RUST_LOG", "trace")]);
    connected(&w);
    d.deliver(USER, "Bob <bob@example.org>", "x", "x");
    new_mail(&w);
    w.stop();
    let mut everything = w.stdout_text() + &w.stderr_text();
    for entry in std::fs::read_dir(home.log_dir()).expect("log dir written") {
        everything += &std::fs::read_to_string(entry.unwrap().path()).unwrap();
    }
    assert!(
        everything.contains("connected") || everything.contains("INBOX"),
        "logs were written"
    );
    assert!(
        !everything.contains(PASSWORD),
        "password leaked:\n{everything}"
    );
    let help = home.run(&["--help"]);
    assert!(!String::from_utf8_lossy(&help.stdout).contains(PASSWORD));
}

/// Everything in the agent's log files so far ("" while there are none).
fn log_files_text(home: &Home) -> String {
    let Ok(entries) = std::fs::read_dir(home.log_dir()) else {
        return String::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

/// `[logging]` is applied on SIGHUP, as the tray does: a log file switched on in the config of
/// a running `watch` starts receiving lines, beginning with the reload itself.
/// The server ends the session with a BYE while the agent waits in IDLE (an administrator's
/// `doveadm kick`): one error that says so and names the server, then a new session.
#[test]
fn a_bye_in_idle_is_one_error_and_a_new_session() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = setup(&d, tls(&d), "");
    let w = Watch::start(&home);
    connected(&w);
    w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");
    d.doveadm(&["kick", USER]);
    let down = w.until_type(secs(30), "error");
    let error = down.last().unwrap();
    assert_eq!(error["kind"], "disconnected", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("the server ended the session")
            && message.contains(&format!("localhost:{}", d.imaps_port())),
        "{message}"
    );
    let back = w.until_type(secs(30), "connected");
    assert!(of_type(&back, "error").is_empty(), "{back:?}");
    let quiet = w.during(secs(3));
    assert!(of_type(&quiet, "error").is_empty(), "{quiet:?}");
}

#[test]
fn reload_applies_logging_changes() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = setup(&d, tls(&d), "");
    let mut w = Watch::start(&home);
    connected(&w);
    assert_eq!(log_files_text(&home), "", "logging is off by default");

    let text = std::fs::read_to_string(home.config_path()).unwrap();
    home.write_config(&format!(
        "{text}\n[logging]\nenabled = true\nlevel = \"info\"\n"
    ));
    w.signal("HUP");
    w.until_type(secs(10), "reloaded");
    d.deliver(USER, "Bob <bob@example.org>", "logged", "x");
    new_mail(&w);
    // Then the level goes up to warn, then logging is switched off (at level info): neither
    // reload's own info line reaches the file.
    for logging in [
        "[logging]\nenabled = true\nlevel = \"warn\"\n",
        "[logging]\nenabled = false\nlevel = \"info\"\n",
    ] {
        home.write_config(&format!("{text}\n{logging}"));
        w.signal("HUP");
        w.until_type(secs(10), "reloaded");
    }
    // A clean exit flushes the file writer.
    assert!(w.stop(), "{}", w.stderr_text());
    let logged = log_files_text(&home);
    assert_eq!(
        logged.matches("configuration reloaded").count(),
        1,
        "switched on by the first reload, quiet after the next two: {logged:?}"
    );
}

#[test]
fn config_errors_exit_2_naming_file_line_and_key_and_reload_keeps_the_last_good_config() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = Home::new();
    home.write_config("[keepalive]\ninterval_secs = 10\n");
    let out = home.run(&["watch"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:2:17: keepalive.interval_secs: must be between 30",
        home.config_path().display()
    );
    assert!(err.contains(&expected), "{err}");

    home.write_config(&config(&home, &[tls(&d)], ""));
    let w = Watch::start(&home);
    connected(&w);
    let good = std::fs::read_to_string(home.config_path()).unwrap();
    let line = good
        .lines()
        .position(|l| l.starts_with("security"))
        .unwrap()
        + 1;
    std::fs::write(
        home.config_path(),
        good.replace("security = \"tls\"", "security = \"ssl\""),
    )
    .unwrap();
    w.signal("HUP");
    let events = w.until_type(secs(10), "error");
    let e = events.last().unwrap();
    assert_eq!(e["kind"], "config");
    let expected = format!(
        "{}:{line}:12: accounts[0].security: unknown variant `ssl`",
        home.config_path().display()
    );
    assert!(e["message"].as_str().unwrap().contains(&expected), "{e}");
    // Still running on the last good config.
    d.deliver(USER, "Bob <bob@example.org>", "still here", "x");
    assert_eq!(new_mail(&w)["subject"], "still here");

    let missing = Home::new();
    let out = missing.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no config file at"));
}

/// A mistyped account name is a configuration error (exit 2) that names it and lists the
/// accounts there are, before anything connects (the same for every `--account`).
#[test]
fn check_of_an_unknown_account_exits_2_listing_the_known_ones() {
    let unused = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    let home = Home::new();
    home.write_config(&config(&home, &[plain(port), plain(port)], ""));
    for args in [
        &["check", "--account", "NOSUCH"][..],
        &["check", "--account", "NOSUCH", "--json"],
        &["probe", "--account", "NOSUCH"],
    ] {
        let out = home.run_within(args, secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("\"NOSUCH\""), "names the account: {err}");
        assert!(
            err.contains(&home.config_path().display().to_string()),
            "names the file: {err}"
        );
        assert!(
            err.contains("\"work\", \"work1\""),
            "lists the known accounts: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    unused.set_nonblocking(true).unwrap();
    assert!(unused.accept().is_err(), "nothing connected");
}

#[test]
fn broken_servers_give_clear_errors_not_hangs_or_panics() {
    // A server that sends garbage instead of a greeting, and one that never speaks.
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let gport = garbage.local_addr().unwrap().port();
    let sport = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut c in garbage.incoming().take(2).flatten() {
            let _ = c.write_all(&[0xffu8, 0x00, b'(', b'(', b'\r', b'\n'].repeat(1000));
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    let _keep = std::thread::spawn(move || {
        let conns: Vec<_> = silent.incoming().take(1).flatten().collect();
        std::thread::sleep(Duration::from_secs(20));
        drop(conns);
    });
    let home = Home::new();
    home.write_config(&config(
        &home,
        &[plain(gport), plain(sport)],
        "response_timeout_secs = 3",
    ));
    let started = Instant::now();
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("work: localhost:{gport} does not speak IMAP")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "work1: localhost:{sport}: no answer within 3 s while waiting for the server greeting"
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(started.elapsed() < secs(30));

    // Nothing listening at all.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let home = Home::new();
    home.write_config(&config(&home, &[plain(port)], ""));
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("check the port and that the server is running")
    );
}

/// A server that stops half-way through its answer to the last-item query and keeps the
/// connection open: `check` (text and `--json`) gives up after the response timeout with exit
/// code 3 and says which server did not answer during which step, instead of hanging.
#[test]
fn check_gives_up_on_a_server_that_stalls_mid_reply() {
    let d = Dovecot::start(DovecotOptions::default());
    // The last-item query is `UID FETCH *` (the relay's trigger) only when there is a message.
    d.deliver(USER, "Ann <ann@example.org>", "already there", "x");
    let relay = Relay::start(d.imap_port());
    relay.stall_mid_response();
    let home = setup(&d, plain(relay.port()), "response_timeout_secs = 3");
    let endpoint = format!("localhost:{}", relay.port());
    for args in [&["check"][..], &["check", "--json"]] {
        let started = Instant::now();
        let out = home.run_within(args, secs(45));
        let took = started.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "work: {endpoint}: no answer within 3 s while asking for the newest message"
            )),
            "{args:?}: names the server and the step: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        // Opening the folder, one response timeout for the stalled answer, and no more than
        // another for the logout that is not even tried on a dead connection.
        assert!(took < secs(20), "{args:?} took {took:?}");
        if args.contains(&"--json") {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["kind"], "timeout", "{v}");
            assert_eq!(v["account"], "work", "{v}");
        }
    }
    assert!(relay.connections() >= 2);
}

/// The logout after the query is best effort, and bounded: a server that never answers it
/// costs `check` one response timeout, not its exit.
#[test]
fn check_does_not_wait_forever_for_the_logout() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "already there", "x");
    let relay = Relay::start(d.imap_port());
    relay.stall_logout();
    let home = setup(&d, plain(relay.port()), "response_timeout_secs = 3");
    let started = Instant::now();
    let out = home.run_within(&["check"], secs(45));
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("subject=\"already there\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(took < secs(20), "took {took:?}");
    let cmds = d.imap_commands(USER);
    assert!(
        cmds.iter().any(|c| c.to_uppercase().ends_with("LOGOUT")),
        "the logout was sent: {cmds:?}"
    );
}

#[test]
fn no_subcommand_explains_what_to_run() {
    let home = Home::new();
    // Without a graphical session the tray cannot start; it says what to run instead.
    let out = home
        .command(&[])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no graphical session") && err.contains("mailpulse watch"),
        "{err}"
    );
}

#[test]
fn a_new_interval_interrupts_a_real_idle_at_once() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = setup(&d, tls(&d), "interval_secs = 600");
    let w = Watch::start(&home);
    connected(&w);
    w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");
    let before = d.keepalive_queries(USER);
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    std::fs::write(
        home.config_path(),
        text.replace("interval_secs = 600", "interval_secs = 30"),
    )
    .unwrap();
    w.signal("HUP");
    let events = w.until_type(secs(10), "keepalive");
    assert!(of_type(&events, "error").is_empty(), "{events:?}");
    assert_eq!(
        d.keepalive_queries(USER),
        before + 1,
        "{:?}",
        d.imap_commands(USER)
    );
    let cmds = d.imap_commands(USER);
    assert!(
        cmds.iter().any(|c| c.trim().eq_ignore_ascii_case("DONE")),
        "IDLE ended with DONE: {cmds:?}"
    );
}

/// The settings window's "Test connection", in words, for a good and a bad password.
#[cfg(feature = "desktop")]
#[test]
fn settings_test_connection_answers_in_words() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Bob <bob@example.org>", "newest", "x");
    let account = serde_json::json!({
        "name": "work", "protocol": "imap", "host": "localhost", "port": d.imaps_port(),
        "security": "tls", "username": USER, "folders": ["INBOX"],
        "ca_file": d.ca_pem(), "password_command": null,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(mailpulse::desktop::settings::test_connection(
        account.clone(),
        Some(PASSWORD.into()),
        None,
    ));
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(
        ok["text"],
        "Connected. INBOX has 1 messages; the newest is from Bob <bob@example.org> — newest."
    );
    let bad = rt.block_on(mailpulse::desktop::settings::test_connection(
        account,
        Some("nope".into()),
        None,
    ));
    assert_eq!(bad["ok"], false);
    let text = bad["text"].as_str().unwrap();
    assert!(text.contains("rejected the login of \"alice\""), "{text}");
    assert!(!text.contains("nope"), "{text}");
}

/// "Test connection" against a server that stalls mid-answer: an answer in words within the
/// response timeout (the settings window would otherwise wait forever), naming the server.
#[cfg(feature = "desktop")]
#[test]
fn settings_test_connection_gives_up_on_a_server_that_stalls_mid_reply() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "already there", "x");
    let relay = Relay::start(d.imap_port());
    relay.stall_mid_response();
    let account = serde_json::json!({
        "name": "work", "protocol": "imap", "host": "localhost", "port": relay.port(),
        "security": "plain", "username": USER, "folders": ["INBOX"], "password_command": null,
    });
    let keepalive = serde_json::json!({"response_timeout_secs": 3});
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let answer = rt.block_on(async {
        tokio::time::timeout(
            secs(45),
            mailpulse::desktop::settings::test_connection(
                account,
                Some(PASSWORD.into()),
                Some(keepalive),
            ),
        )
        .await
        .expect("Test connection must answer, not hang")
    });
    assert_eq!(answer["ok"], false, "{answer}");
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "localhost:{}: no answer within 3 s while asking for the newest message",
            relay.port()
        )),
        "{text}"
    );
    assert!(started.elapsed() < secs(20), "{:?}", started.elapsed());
}

#[test]
fn sigusr1_checks_now() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "x", "x");
    let home = setup(&d, tls(&d), "interval_secs = 600");
    let w = Watch::start(&home);
    connected(&w);
    w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");
    let before = d.keepalive_queries(USER);
    let asked = Instant::now();
    w.signal("USR1");
    w.until_type(secs(10), "keepalive");
    assert!(asked.elapsed() < secs(10));
    assert_eq!(d.keepalive_queries(USER), before + 1);
}

/// Scenario 6 of the NAT issue, mid-session: the server (or something on the path) answers the
/// last-item query with 1 MB of garbage, or stops half-way through the answer and keeps the
/// connection open. Each → one clear error and the matching state, no panic, no session stuck
/// past its response timeout, retries with backoff (not hammering), and recovery once the
/// server behaves again.
#[test]
fn garbage_or_a_stall_mid_session_is_an_error_with_backoff_not_a_hang() {
    let d = Dovecot::start(DovecotOptions::default());
    // The last-item query is `UID FETCH *` only when the folder has a message.
    d.deliver(USER, "Ann <ann@example.org>", "already there", "x");
    let run = |garbage: bool| {
        let relay = Relay::start(d.imap_port());
        if garbage {
            relay.garbage_mid_session();
        } else {
            relay.stall_mid_response();
        }
        let home = setup(&d, plain(relay.port()), "response_timeout_secs = 3");
        let mut w = Watch::start(&home);
        let started = Instant::now();
        let first = w.until_type(secs(30), "error").pop().unwrap();
        let found_after = started.elapsed();
        // Watch the retries for a while: backoff 1, 2, 4, 8 s (jittered) → a handful of
        // attempts, each ending in the same error, which is reported once.
        let mut seen = w.during(secs(20));
        let attempts = relay.connections();
        assert!(
            (3..=7).contains(&attempts),
            "retries with backoff: {attempts} connections in ~20 s\n{}",
            w.stderr_text()
        );
        assert!(
            of_type(&seen, "error").is_empty(),
            "reported once: {seen:?}"
        );
        let states: Vec<_> = of_type(&seen, "state")
            .iter()
            .map(|v| v["state"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            states.contains(&"error".to_owned())
                && states
                    .iter()
                    .all(|s| ["connecting", "working", "error"].contains(&s.as_str())),
            "each retry fails again, and the agent never claims to be idle: {states:?}"
        );
        // The server behaves again; Check now skips the pending backoff.
        relay.forward();
        w.signal("USR1");
        seen.extend(w.until_type(secs(30), "recovered"));
        if of_type(&seen, "connected").is_empty() {
            seen.extend(w.until_type(secs(10), "connected"));
        }
        let stderr = w.stderr_text();
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(w.stop(), "the agent ends cleanly");
        (first, found_after, stderr)
    };
    let (garbage, _, stderr) = run(true);
    assert_eq!(garbage["kind"], "protocol", "{garbage}\n{stderr}");
    let message = garbage["message"].as_str().unwrap();
    assert!(
        message.contains("localhost:") && message.len() < 400,
        "names the server, and is not a megabyte long: {message}"
    );
    let (stall, found_after, stderr) = run(false);
    assert_eq!(stall["kind"], "timeout", "{stall}\n{stderr}");
    let message = stall["message"].as_str().unwrap();
    assert!(
        message.starts_with("localhost:") && message.contains(": no answer within 3 s"),
        "names the server and the deadline: {stall}"
    );
    assert!(
        found_after < secs(15),
        "found within the response timeout: {found_after:?}"
    );
}

/// Event-triggered initiation on resume: logind's `PrepareForSleep(false)` on the system bus
/// makes the agent send its keep-alive query at once (a connection that died during the
/// suspend is found within the response timeout, not at the next timer). Going to sleep
/// (`PrepareForSleep(true)`) sends nothing.
#[test]
fn resume_from_suspend_checks_the_connection_at_once() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "already there", "x");
    let mut logind = support::logind::FakeLogind::start();
    let home = Home::new();
    let text = config(&home, &[tls(&d)], "interval_secs = 600");
    home.write_config(&text.replace("check_on_wake = false", "check_on_wake = true"));
    let w = Watch::start_with(
        &home,
        &[
            ("DBUS_SYSTEM_BUS_ADDRESS", &logind.address),
            ("RUST_LOG", "mailpulse=info"),
        ],
    );
    connected(&w);
    w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");
    let before = d.keepalive_queries(USER);

    logind.sleep();
    let asleep = w.during(secs(3));
    assert!(of_type(&asleep, "keepalive").is_empty(), "{asleep:?}");
    assert_eq!(d.keepalive_queries(USER), before);

    logind.resume();
    let resumed = Instant::now();
    w.until_type(secs(10), "keepalive");
    assert!(resumed.elapsed() < secs(5), "{:?}", resumed.elapsed());
    assert_eq!(d.keepalive_queries(USER), before + 1, "{}", w.stderr_text());
    assert!(
        w.stderr_text().contains("resumed from suspend (logind)"),
        "{}",
        w.stderr_text()
    );
}
