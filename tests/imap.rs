//! mailpulse against a real, private Dovecot: what a user sees from `mailpulse check` and
//! `mailpulse watch --json`. Deadlines are generous (the machine is shared); nothing here
//! depends on timing luck, only on upper bounds.
// Linux only: needs a private Dovecot (Debian's package).
#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::{Home, Watch, of_type, secs, subjects};
use support::dovecot::{Dovecot, DovecotOptions};
use support::imap_setup::*;
use support::relay::Relay;

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

/// An empty folder has no newest message to ask for: its keep-alive is NOOP, sent with DONE and
/// the next IDLE like the query of a folder with mail (never a FETCH of a `*` that does not
/// exist); its first mail is announced once, and from then on the keep-alive asks for the
/// newest UID.
#[test]
fn an_empty_folder_is_kept_alive_with_noop_and_its_first_mail_announced_once() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = setup(&d, tls(&d), "interval_secs = 30");
    let w = Watch::start(&home);
    connected(&w);
    w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");
    for _ in 0..2 {
        w.signal("USR1");
        let seen = w.until_type(secs(30), "keepalive");
        assert!(of_type(&seen, "error").is_empty(), "{seen:?}");
    }
    let cmds: Vec<String> = d
        .imap_commands(USER)
        .iter()
        .map(|c| c.to_uppercase())
        .collect();
    assert!(
        cmds.iter().filter(|c| c.ends_with(" NOOP")).count() >= 2,
        "{cmds:?}"
    );
    assert!(!cmds.iter().any(|c| c.contains("FETCH *")), "{cmds:?}");
    let done = cmds.iter().rposition(|c| c == "DONE").expect("IDLE ended");
    assert!(
        cmds[done + 1].ends_with(" NOOP") && cmds[done + 2].ends_with(" IDLE"),
        "DONE, NOOP, IDLE: {cmds:?}"
    );

    d.deliver(USER, "Bob <bob@example.org>", "the first one", "x");
    assert_eq!(new_mail(&w)["subject"], "the first one");
    w.signal("USR1");
    let seen = w.until_type(secs(30), "keepalive");
    assert!(subjects(&seen).is_empty(), "never twice: {seen:?}");
    let cmds = d.imap_commands(USER);
    assert!(
        cmds.iter()
            .any(|c| c.to_uppercase().contains("UID FETCH * (UID")),
        "{cmds:?}"
    );
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
    assert_eq!(missed[0]["offline"], true);
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
