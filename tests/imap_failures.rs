//! mailpulse against a real, private Dovecot when things go wrong: a BYE, broken or stalling
//! servers, config errors and reloads, signals and resume. Deadlines are generous (the machine
//! is shared); nothing here depends on timing luck, only on upper bounds.
// Linux only: needs a private Dovecot (Debian's package).
#![cfg(target_os = "linux")]

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::{Home, Watch, of_type, secs};
use support::dovecot::{Dovecot, DovecotOptions};
use support::imap_setup::*;
use support::relay::Relay;
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

/// `[logging]` is applied on SIGHUP, as the tray does: a log file switched on in the config of
/// a running `watch` starts receiving lines, beginning with the reload itself.
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

/// A folder written without the server's namespace prefix ("Work" where the server — separator
/// "." and prefix "INBOX." — calls it "INBOX.Work"): a folder error in words that suggests the
/// real name, reported once, retried no sooner than after a rejected password (no login for it
/// while the test watches). The same folder written "INBOX/Work" opens under the server's name.
#[test]
fn a_folder_under_another_name_is_a_config_error_with_a_suggestion_and_slow_retries() {
    let d = Dovecot::start(DovecotOptions {
        inbox_prefix_namespace: true,
        ..DovecotOptions::default()
    });
    d.doveadm(&["mailbox", "create", "-u", USER, "INBOX.Work"]);
    let home = setup(
        &d,
        Account {
            extra: "folders = [\"INBOX/Work\", \"Work\"]\n",
            ..tls(&d)
        },
        "",
    );
    let mut w = Watch::start(&home);
    let mut seen = w.until(secs(30), |v| v["type"] == "error");
    let error = seen.last().unwrap().clone();
    assert_eq!(error["kind"], "folder", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("folder \"Work\" does not exist")
            && message.contains("did you mean \"INBOX.Work\"?")
            && !message.contains("Outcome")
            && !message.contains("info:"),
        "{message}"
    );
    if !seen.iter().any(|v| v["type"] == "connected") {
        seen.extend(w.until_type(secs(30), "connected"));
    }
    let connected = of_type(&seen, "connected");
    assert_eq!(connected[0]["folder"], "INBOX/Work", "{connected:?}");
    let logins = d.login_attempts(USER);
    let later = w.during(secs(15));
    assert!(
        of_type(&later, "error").is_empty(),
        "reported once: {later:?}"
    );
    assert_eq!(
        d.login_attempts(USER),
        logins,
        "no retry within seconds for a folder that does not exist\n{}",
        w.stderr_text()
    );
    assert!(w.stop());
}

/// No password reaches stderr or the log file, whatever the log level asked for:
/// `RUST_LOG=trace` with `async_imap=trace` (the target whose traces carry every command sent,
/// LOGIN and AUTHENTICATE included) and a trace-level log file.
#[test]
fn no_password_in_any_log_at_any_level() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = setup(&d, tls(&d), "");
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    home.write_config(&format!(
        "{text}\n[logging]\nenabled = true\nlevel = \"trace\"\n"
    ));
    // What a trace of the credentials could look like: the password itself, or SASL PLAIN's
    // base64 of "\0user\0password".
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    for filter in [
        "trace",
        "trace,async_imap=trace,async_imap::imap_stream=trace,imap_proto=trace",
    ] {
        // `watch` (check logs nothing): until the session idles, then a clean stop.
        let mut w = Watch::start_with(&home, &[("RUST_LOG", filter)]);
        connected(&w);
        w.until(secs(30), |v| v["type"] == "state" && v["state"] == "idle");
        assert!(w.stop());
        let stderr = w.stderr_text();
        let stdout = w.stdout_text();
        // The trace is on: the agent's own lines are there.
        assert!(
            stderr.contains("TRACE") || stderr.contains("DEBUG"),
            "{stderr}"
        );
        let log = log_files_text(&home);
        for (name, text) in [
            ("stderr", &*stderr),
            ("stdout", &*stdout),
            ("log file", &*log),
        ] {
            assert!(
                !text.contains(PASSWORD),
                "{filter}: password in {name}:\n{text}"
            );
            assert!(
                !text.contains(&plain),
                "{filter}: PLAIN credentials in {name}:\n{text}"
            );
        }
    }
}

/// A password with 8-bit characters (and a space) logs in as SASL PLAIN — UTF-8, base64 — not as
/// a quoted `LOGIN` string; a password holding a line break (which in `LOGIN` would end the
/// command and start another) is refused in words before anything is connected.
#[test]
fn passwords_go_as_sasl_plain_and_line_breaks_never_reach_a_server() {
    let password = "pässwörd €uro";
    let d = Dovecot::start(DovecotOptions {
        users: vec![(USER.to_string(), password.to_string())],
        ..DovecotOptions::default()
    });
    let home = setup(
        &d,
        Account {
            password,
            ..plain(d.imap_port())
        },
        "",
    );
    let out = home.run(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commands = d.imap_commands(USER);
    assert!(
        commands.iter().any(|c| c.contains("AUTHENTICATE PLAIN")),
        "{commands:?}"
    );
    assert!(
        !commands
            .iter()
            .any(|c| c.to_uppercase().contains(" LOGIN ")),
        "{commands:?}"
    );

    // Nothing may connect to this port.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let home = Home::new();
    home.write_config(&config(
        &home,
        &[Account {
            password: "secret\r\nA1 DELETE INBOX",
            ..plain(port)
        }],
        "response_timeout_secs = 3",
    ));
    let out = home.run_within(&["check"], secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("line break") && !stderr.contains("DELETE"),
        "{stderr}"
    );
    assert!(
        listener.accept().is_err(),
        "a connection was opened for a password that cannot be sent"
    );
}

/// The issue: a wrong password, then "Check now" six times in 18 s made 7 LOGIN attempts (and
/// wake events and adaptive probes ask too): a laptop on flaky Wi-Fi got its account locked.
/// Now: one rejected login, one error, and "Check now" logs in nothing for 10 minutes — here
/// with two folders and adaptive keep-alive, which would each log in as well.
#[test]
fn a_wrong_password_is_tried_once_whatever_asks_again() {
    let d = Dovecot::start(DovecotOptions::default());
    let home = setup(
        &d,
        Account {
            password: "wrong-pw",
            extra: "folders = [\"INBOX\", \"Sent\"]\n",
            ..tls(&d)
        },
        "adaptive = true",
    );
    let mut w = Watch::start(&home);
    let mut events = w.until_type(secs(30), "error");
    let error = events.last().unwrap().clone();
    assert_eq!(error["kind"], "auth", "{error}");
    for _ in 0..6 {
        w.signal("USR1");
        events.extend(w.during(secs(3)));
    }
    events.extend(w.during(secs(3)));
    assert_eq!(
        of_type(&events, "error").len(),
        1,
        "one error: {events:?}\n{}",
        w.stderr_text()
    );
    let states: Vec<_> = of_type(&events, "state");
    assert_eq!(
        states.last().map(|s| s["state"].clone()),
        Some("error".into()),
        "{states:?}"
    );
    assert_eq!(
        d.login_attempts(USER),
        1,
        "one login attempt\n{}\n{}",
        d.log(),
        w.stderr_text()
    );
    assert!(w.stop());
}
