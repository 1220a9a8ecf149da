//! Tests of the private-Dovecot test harness itself (tests/support).
//!
//! Each test starts its own Dovecot (own temp dir and ports), so they run in
//! parallel. Every wait is bounded; every server is stopped by PID on drop.
// Linux only: needs a private Dovecot (Debian's package).
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::{Dovecot, DovecotOptions, ImapClient};

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(50));
    }
}

/// Runs a command with stdin `input`, killing it after `timeout`.
/// Returns (success, stdout + stderr).
fn run_bounded(cmd: &mut Command, input: &str, timeout: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("wait_with_output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The CAPABILITY list a logged-in client sees.
fn capabilities_after_login(dovecot: &Dovecot) -> Vec<String> {
    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.login("alice", "secret-pw");
    let lines = imap.command_ok("CAPABILITY");
    imap.command_ok("LOGOUT");
    let caps = lines
        .iter()
        .find_map(|l| l.strip_prefix("* CAPABILITY "))
        .expect("untagged CAPABILITY");
    caps.split_whitespace().map(str::to_string).collect()
}

#[test]
fn start_login_examine_logout_and_tls() {
    let dovecot = Dovecot::start(DovecotOptions::default());
    assert!(dovecot.pid().is_some());

    let (mut imap, greeting) = ImapClient::connect_greeted(dovecot.imap_port());
    assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
    assert!(greeting.contains("STARTTLS"), "greeting: {greeting}");
    assert!(greeting.contains("AUTH=PLAIN"), "greeting: {greeting}");
    imap.login("alice", "secret-pw");
    let examine = imap.command_ok("EXAMINE INBOX");
    assert!(examine.iter().any(|l| l == "* 0 EXISTS"), "{examine:#?}");
    assert!(examine.last().unwrap().contains("[READ-ONLY]"));
    let logout = imap.command_ok("LOGOUT");
    assert!(logout.iter().any(|l| l.starts_with("* BYE")), "{logout:#?}");

    if !openssl_available() {
        eprintln!("openssl CLI not found: skipping TLS checks");
        return;
    }
    // The chain: server.pem is signed by ca.pem, for localhost/127.0.0.1.
    let (ok, out) = run_bounded(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(dovecot.ca_pem())
            .args(["-verify_hostname", "localhost", "-verify_ip", "127.0.0.1"])
            .arg(dovecot.server_cert_pem()),
        "",
        Duration::from_secs(20),
    );
    assert!(ok && out.contains(": OK"), "openssl verify: {out}");

    // Implicit TLS on the imaps port, and STARTTLS on the plain port, both
    // verified against the test CA.
    let imaps = format!("127.0.0.1:{}", dovecot.imaps_port());
    let imap = format!("127.0.0.1:{}", dovecot.imap_port());
    for (addr, starttls) in [(imaps, false), (imap, true)] {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &addr, "-servername", "localhost"])
            .arg("-CAfile")
            .arg(dovecot.ca_pem())
            .args([
                "-verify_return_error",
                "-verify_hostname",
                "localhost",
                "-ign_eof",
            ]);
        if starttls {
            cmd.args(["-starttls", "imap"]);
        }
        let (ok, out) = run_bounded(&mut cmd, "a LOGOUT\r\n", Duration::from_secs(20));
        assert!(ok, "openssl s_client {addr} failed:\n{out}");
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "s_client {addr}:\n{out}"
        );
        assert!(out.contains("* BYE"), "no IMAP over TLS on {addr}:\n{out}");
        let tls12_or_13 = out.contains("TLSv1.2") || out.contains("TLSv1.3");
        assert!(tls12_or_13, "protocol version not shown:\n{out}");
    }
}

#[test]
fn deliver_then_idle_push() {
    let dovecot = Dovecot::start(DovecotOptions::default());

    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.login("alice", "secret-pw");
    let select = imap.command_ok("SELECT INBOX");
    assert!(select.iter().any(|l| l == "* 0 EXISTS"), "{select:#?}");
    imap.send_line("idle1 IDLE");
    let cont = imap.read_line(Duration::from_secs(10));
    assert_eq!(cont.as_deref(), Some("+ idling"));

    let t0 = Instant::now();
    dovecot.deliver(
        "alice",
        "Bob Example <bob@example.org>",
        "Grüße aus Köln – a long subject so that it needs more than one encoded word ✓",
        "Hello Alice,\n.leading dot line\nbye\n",
    );
    let mut seen = Vec::new();
    let exists = imap.wait_for(Duration::from_secs(10), &mut seen, |l| l == "* 1 EXISTS");
    let latency = t0.elapsed();
    assert!(
        exists.is_some(),
        "no * 1 EXISTS within 10 s during IDLE; got {seen:#?}\nlog:\n{}",
        dovecot.log()
    );
    eprintln!("IDLE push latency after LMTP delivery: {latency:?}");
    imap.send_line("DONE");
    let mut seen = Vec::new();
    let done = imap.wait_for(Duration::from_secs(10), &mut seen, |l| {
        l.starts_with("idle1 ")
    });
    assert!(done.is_some_and(|l| l.starts_with("idle1 OK")), "{seen:#?}");

    dovecot.deliver("alice", "carol@example.org", "plain subject", "second\n");
    let snapshot = dovecot.flags_snapshot("alice");
    assert_eq!(snapshot.len(), 2, "{snapshot:#?}");

    // The headers arrived as built: RFC 2047 subject, dot-stuffing undone.
    let fetch =
        imap.command_ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[TEXT])");
    let all = fetch.join("\n");
    assert!(all.contains("Subject: =?UTF-8?B?"), "{all}");
    assert!(all.contains("From: Bob Example <bob@example.org>"), "{all}");
    assert!(all.contains("\n.leading dot line"), "{all}");
    let envelope = imap.command_ok("FETCH 2 (ENVELOPE)");
    assert!(envelope[0].contains("\"plain subject\""), "{envelope:#?}");
    imap.command_ok("LOGOUT");

    // PEEK and LOGOUT changed no flags; SELECT moved new/ -> cur/ but the
    // snapshot ignores the directory.
    assert_eq!(dovecot.flags_snapshot("alice"), snapshot);
}

#[test]
fn idle_false_hides_idle() {
    let with_idle = Dovecot::start(DovecotOptions::default());
    let without = Dovecot::start(DovecotOptions {
        idle: false,
        ..DovecotOptions::default()
    });

    let normal = capabilities_after_login(&with_idle);
    let reduced = capabilities_after_login(&without);
    assert!(normal.iter().any(|c| c == "IDLE"), "{normal:?}");
    assert!(!reduced.iter().any(|c| c == "IDLE"), "{reduced:?}");
    let expected: Vec<String> = normal.iter().filter(|c| *c != "IDLE").cloned().collect();
    assert_eq!(
        reduced, expected,
        "idle=false must be the normal list minus IDLE"
    );

    // The pre-login capability in the greeting lacks IDLE as well.
    let (_imap, greeting) = ImapClient::connect_greeted(without.imap_port());
    assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
    assert!(
        !greeting.split_whitespace().any(|c| c == "IDLE"),
        "{greeting}"
    );
}

#[test]
fn restart_keeps_messages_ports_and_cert() {
    let mut dovecot = Dovecot::start(DovecotOptions::default());
    for i in 1..=3 {
        dovecot.deliver("alice", "Bob <bob@example.org>", &format!("m{i}"), "x\n");
    }
    let before = dovecot.flags_snapshot("alice");
    let ports = (
        dovecot.imap_port(),
        dovecot.imaps_port(),
        dovecot.lmtp_port(),
    );
    let pid = dovecot.pid().expect("running");
    let ca = std::fs::read(dovecot.ca_pem()).expect("read CA");

    // A client connected across the restart is disconnected.
    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.login("alice", "secret-pw");

    let t0 = Instant::now();
    dovecot.restart();
    eprintln!("restart took {:?}", t0.elapsed());
    let new_pid = dovecot.pid().expect("running again");
    assert_ne!(pid, new_pid);
    assert_eq!(
        ports,
        (
            dovecot.imap_port(),
            dovecot.imaps_port(),
            dovecot.lmtp_port()
        )
    );
    assert_eq!(std::fs::read(dovecot.ca_pem()).unwrap(), ca);
    assert_eq!(dovecot.flags_snapshot("alice"), before);
    let mut seen = Vec::new();
    let eof = imap.wait_for(Duration::from_secs(5), &mut seen, |_| false);
    assert!(eof.is_none());

    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.login("alice", "secret-pw");
    let select = imap.command_ok("EXAMINE INBOX");
    assert!(select.iter().any(|l| l == "* 3 EXISTS"), "{select:#?}");
    imap.command_ok("LOGOUT");
    dovecot.deliver("alice", "Bob <bob@example.org>", "after restart", "x\n");
    assert_eq!(dovecot.flags_snapshot("alice").len(), 4);

    dovecot.stop();
    assert_eq!(dovecot.pid(), None);
    dovecot.stop(); // idempotent
    assert!(std::net::TcpStream::connect(("127.0.0.1", ports.0)).is_err());
}

#[test]
fn login_attempts_counts_successes_and_failures() {
    let dovecot = Dovecot::start(DovecotOptions {
        users: vec![
            ("alice".into(), "secret-pw".into()),
            ("alice2".into(), "other-pw".into()),
        ],
        ..DovecotOptions::default()
    });
    // LMTP deliveries do passdb lookups too; they must not count.
    dovecot.deliver("alice", "Bob <bob@example.org>", "hi", "x\n");
    assert_eq!(dovecot.login_attempts("alice"), 0);

    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.login("alice", "secret-pw");
    imap.command_ok("LOGOUT");
    assert!(
        eventually(Duration::from_secs(5), || dovecot.login_attempts("alice")
            == 1),
        "log:\n{}",
        dovecot.log()
    );

    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    let failed = imap.command("LOGIN alice wrong-password");
    let last = failed.last().unwrap();
    assert!(last.contains("NO [AUTHENTICATIONFAILED]"), "{failed:#?}");
    // AUTHENTICATE PLAIN (SASL-IR) on the same connection succeeds.
    let plain = support::message::base64(b"\0alice\0secret-pw");
    imap.command_ok(&format!("AUTHENTICATE PLAIN {plain}"));
    imap.command_ok("LOGOUT");
    assert!(
        eventually(Duration::from_secs(5), || dovecot.login_attempts("alice")
            == 3),
        "expected 3 attempts, got {}; log:\n{}",
        dovecot.login_attempts("alice"),
        dovecot.log()
    );
    // Other users are counted separately (no prefix confusion).
    assert_eq!(dovecot.login_attempts("alice2"), 0);
    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    let failed = imap.command("LOGIN nobody-here pw");
    assert!(failed.last().unwrap().contains("NO"), "{failed:#?}");
    assert!(eventually(Duration::from_secs(5), || {
        dovecot.login_attempts("nobody-here") == 1
    }));
    assert_eq!(dovecot.login_attempts("alice"), 3);
}

#[test]
fn imap_commands_are_recorded() {
    let dovecot = Dovecot::start(DovecotOptions::default());
    dovecot.deliver("alice", "Bob <bob@example.org>", "hi", "x\n");
    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.command_ok("CAPABILITY");
    imap.login("alice", "secret-pw");
    imap.command_ok("SELECT INBOX");
    imap.command_ok("UID FETCH 1:* (UID FLAGS)");
    imap.send_line("t9 IDLE");
    assert_eq!(
        imap.read_line(Duration::from_secs(10)).as_deref(),
        Some("+ idling")
    );
    imap.send_line("DONE");
    let mut seen = Vec::new();
    let idle_done = imap.wait_for(Duration::from_secs(10), &mut seen, |l| {
        l.starts_with("t9 OK")
    });
    assert!(idle_done.is_some(), "{seen:#?}");
    imap.command_ok("NOOP");
    // Lines show up while the session is still open.
    assert!(
        eventually(Duration::from_secs(5), || {
            dovecot.imap_commands("alice").last().map(String::as_str) == Some("t5 NOOP")
        }),
        "{:#?}",
        dovecot.imap_commands("alice")
    );
    imap.command_ok("LOGOUT");

    let expected = [
        "t1 CAPABILITY",
        "t2 LOGIN \"alice\" ***",
        "t3 SELECT INBOX",
        "t4 UID FETCH 1:* (UID FLAGS)",
        "t9 IDLE",
        "DONE",
        "t5 NOOP",
        "t6 LOGOUT",
    ];
    let mut got = Vec::new();
    let complete = eventually(Duration::from_secs(5), || {
        got = dovecot.imap_commands("alice");
        got.len() >= expected.len()
    });
    assert!(complete, "rawlog incomplete: {got:#?}");
    assert_eq!(got, expected);
    assert!(dovecot.rawlog_dir("alice").read_dir().unwrap().count() >= 2);
    assert!(dovecot.imap_commands("nobody").is_empty());

    // SASL: the initial response and continuation lines are masked.
    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.send_line("s1 AUTHENTICATE PLAIN");
    assert_eq!(
        imap.read_line(Duration::from_secs(10)).as_deref(),
        Some("+ ")
    );
    imap.send_line(&support::message::base64(b"\0alice\0secret-pw"));
    let mut seen = Vec::new();
    let ok = imap.wait_for(Duration::from_secs(10), &mut seen, |l| l.starts_with("s1 "));
    assert!(ok.is_some_and(|l| l.starts_with("s1 OK")), "{seen:#?}");
    imap.command_ok("LOGOUT");
    let ir = support::message::base64(b"\0alice\0secret-pw");
    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.command_ok(&format!("AUTHENTICATE PLAIN {ir}"));
    imap.command_ok("LOGOUT");
    // A connection that never logs in belongs to no user.
    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.command_ok("ID NIL");
    imap.command_ok("LOGOUT");

    let tail = [
        "s1 AUTHENTICATE PLAIN",
        "***",
        "t1 LOGOUT",
        "t1 AUTHENTICATE PLAIN ***",
        "t2 LOGOUT",
    ];
    let complete = eventually(Duration::from_secs(5), || {
        got = dovecot.imap_commands("alice");
        got.len() >= expected.len() + tail.len()
    });
    assert!(complete, "{got:#?}");
    assert_eq!(got[expected.len()..], tail);
    let all = dovecot.all_imap_commands();
    assert!(all.iter().any(|l| l == "t1 ID NIL"), "{all:#?}");
    assert_eq!(all.len(), got.len() + 2, "{all:#?}");
    for text in [&got, &all] {
        let joined = text.join("\n");
        assert!(
            !joined.contains("secret-pw") && !joined.contains(&ir),
            "{joined}"
        );
    }
}

#[test]
fn imap_commands_with_starttls_and_imaps() {
    if !openssl_available() {
        eprintln!("openssl CLI not found: skipping");
        return;
    }
    let dovecot = Dovecot::start(DovecotOptions::default());
    let imap = format!("127.0.0.1:{}", dovecot.imap_port());
    let imaps = format!("127.0.0.1:{}", dovecot.imaps_port());
    for (addr, starttls) in [(imap, true), (imaps, false)] {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &addr, "-servername", "localhost"])
            .arg("-CAfile")
            .arg(dovecot.ca_pem())
            .args(["-verify_return_error", "-ign_eof", "-quiet"]);
        if starttls {
            cmd.args(["-starttls", "imap"]);
        }
        let input = "a LOGIN alice secret-pw\r\nb NOOP\r\nc LOGOUT\r\n";
        let (ok, out) = run_bounded(&mut cmd, input, Duration::from_secs(20));
        assert!(ok && out.contains("c OK"), "{addr}: {out}");
    }
    // s_client sends ". CAPABILITY" and ". STARTTLS" in plaintext; the LOGIN
    // inside TLS is pre-login and encrypted, so it is in no rawlog.
    let expected = [
        ". CAPABILITY",
        ". STARTTLS",
        "b NOOP",
        "c LOGOUT",
        "b NOOP",
        "c LOGOUT",
    ];
    let mut got = Vec::new();
    let complete = eventually(Duration::from_secs(5), || {
        got = dovecot.imap_commands("alice");
        got.len() >= expected.len()
    });
    assert!(complete, "{got:#?}");
    assert_eq!(got, expected);
    assert_eq!(dovecot.login_attempts("alice"), 2);
}

/// What Dovecot 2.3 answers to UID FETCH * and NOOP on an EXAMINEd empty and
/// non-empty INBOX (printed with --nocapture; asserted loosely).
#[test]
fn examine_fetch_star_transcript() {
    let dovecot = Dovecot::start(DovecotOptions::default());
    let fetch = "UID FETCH * (UID FLAGS ENVELOPE INTERNALDATE)";

    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.login("alice", "secret-pw");
    let empty_examine = imap.command_ok("EXAMINE INBOX");
    eprintln!("EXAMINE empty INBOX:\n{empty_examine:#?}");
    let empty_fetch = imap.command_ok(fetch);
    let empty_noop = imap.command_ok("NOOP");
    imap.command_ok("LOGOUT");
    eprintln!("empty INBOX:\n{empty_fetch:#?}\n{empty_noop:#?}");
    assert_eq!(empty_fetch.len(), 1, "no untagged FETCH expected");
    assert_eq!(empty_noop.len(), 1);

    dovecot.deliver("alice", "Bob <bob@example.org>", "one", "1\n");
    dovecot.deliver("alice", "Bob <bob@example.org>", "two", "2\n");
    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.login("alice", "secret-pw");
    let full_examine = imap.command_ok("EXAMINE INBOX");
    eprintln!("EXAMINE non-empty INBOX:\n{full_examine:#?}");
    let full_fetch = imap.command_ok(fetch);
    let full_noop = imap.command_ok("NOOP");
    imap.command_ok("LOGOUT");
    eprintln!("non-empty INBOX:\n{full_fetch:#?}\n{full_noop:#?}");
    assert_eq!(full_fetch.len(), 2, "{full_fetch:#?}");
    assert!(
        full_fetch[0].starts_with("* 2 FETCH (UID 2 "),
        "{full_fetch:#?}"
    );
    assert!(full_fetch[0].contains("\"two\""), "{full_fetch:#?}");
    assert_eq!(full_noop.len(), 1);

    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    let _ = imap.command("LOGIN alice wrong");
    imap.command_ok("LOGOUT");
    assert!(eventually(Duration::from_secs(5), || {
        dovecot.login_attempts("alice") == 3
    }));
    let log = dovecot.log();
    let interesting: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("imap-login") || l.contains("auth:"))
        .collect();
    eprintln!("log lines:\n{}", interesting.join("\n"));
}

#[test]
fn deliver_many_20000_is_fast() {
    let dovecot = Dovecot::start(DovecotOptions::default());
    let n = 20_000;
    let t0 = Instant::now();
    dovecot.deliver_many("alice", n);
    let took = t0.elapsed();
    eprintln!("deliver_many({n}) took {took:?}");
    assert!(took < Duration::from_secs(60), "deliver_many took {took:?}");

    assert_eq!(dovecot.flags_snapshot("alice").len(), n);
    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.login("alice", "secret-pw");
    let t1 = Instant::now();
    let examine = imap.command_ok("EXAMINE INBOX");
    eprintln!("EXAMINE of {n} messages took {:?}", t1.elapsed());
    assert!(
        examine.iter().any(|l| *l == format!("* {n} EXISTS")),
        "{examine:#?}"
    );
    // UIDs were assigned in delivery order.
    for seq in [1, 2, n / 2, n] {
        let fetch = imap.command_ok(&format!(
            "FETCH {seq} (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
        ));
        let text = fetch.join("\n");
        assert!(text.contains(&format!("UID {seq} ")), "{text}");
        let subject = format!("Subject: bulk {seq}");
        assert!(fetch.contains(&subject), "{text}");
    }
    imap.command_ok("LOGOUT");
}

#[test]
fn parallel_instances_are_independent() {
    let a = Dovecot::start(DovecotOptions::default());
    let b = Dovecot::start(DovecotOptions::default());
    let ports: BTreeSet<u16> = [
        a.imap_port(),
        a.imaps_port(),
        a.lmtp_port(),
        b.imap_port(),
        b.imaps_port(),
        b.lmtp_port(),
    ]
    .into();
    assert_eq!(ports.len(), 6);
    a.deliver("alice", "Bob <bob@example.org>", "only in a", "x\n");
    assert_eq!(a.flags_snapshot("alice").len(), 1);
    assert_eq!(b.flags_snapshot("alice").len(), 0);
    assert_ne!(a.dir(), b.dir());
}

#[test]
fn idle_notify_interval_controls_keepalives() {
    // Returns the first untagged line seen during IDLE within `wait`.
    fn idle_line(dovecot: &Dovecot, wait: Duration) -> Option<String> {
        let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
        imap.login("alice", "secret-pw");
        imap.command_ok("SELECT INBOX");
        imap.send_line("i IDLE");
        assert_eq!(
            imap.read_line(Duration::from_secs(10)).as_deref(),
            Some("+ idling")
        );
        let line = imap.read_line(wait);
        imap.send_line("DONE");
        let mut seen = Vec::new();
        assert!(
            imap.wait_for(Duration::from_secs(10), &mut seen, |l| l
                .starts_with("i OK"))
                .is_some()
        );
        line
    }

    let quiet = Dovecot::start(DovecotOptions::default());
    let chatty = Dovecot::start(DovecotOptions {
        idle_notify_interval_secs: 1,
        ..DovecotOptions::default()
    });
    // Dovecot aligns keepalives to a per-user slot: first one within 2 intervals.
    assert_eq!(
        idle_line(&chatty, Duration::from_secs(4)).as_deref(),
        Some("* OK Still here")
    );
    // 0 = no keepalives at all.
    assert_eq!(idle_line(&quiet, Duration::from_secs(4)), None);
}

#[test]
fn deliver_many_keeps_order_with_later_deliveries() {
    let dovecot = Dovecot::start(DovecotOptions::default());
    dovecot.deliver_many("alice", 5);
    dovecot.deliver("alice", "Bob <bob@example.org>", "after bulk", "x\n");
    dovecot.deliver_many("alice", 3);
    assert_eq!(dovecot.flags_snapshot("alice").len(), 9);
    // doveadm caused no login and no rawlog entry.
    assert_eq!(dovecot.login_attempts("alice"), 0);
    assert!(dovecot.imap_commands("alice").is_empty());

    let (mut imap, _) = ImapClient::connect_greeted(dovecot.imap_port());
    imap.login("alice", "secret-pw");
    let select = imap.command_ok("SELECT INBOX");
    assert!(select.iter().any(|l| l == "* 9 EXISTS"), "{select:#?}");
    assert!(select.iter().any(|l| l == "* 9 RECENT"), "{select:#?}");
    let fetch = imap.command_ok("UID FETCH 1:* (FLAGS ENVELOPE)");
    let subjects: Vec<String> = fetch[..9]
        .iter()
        .map(|l| l.split('"').nth(3).unwrap_or("").to_string())
        .collect();
    let expected = [
        "bulk 1",
        "bulk 2",
        "bulk 3",
        "bulk 4",
        "bulk 5",
        "after bulk",
        "bulk 1",
        "bulk 2",
        "bulk 3",
    ];
    assert_eq!(subjects, expected, "{fetch:#?}");
    for (i, line) in fetch[..9].iter().enumerate() {
        let head = format!("* {} FETCH (UID {} FLAGS (\\Recent)", i + 1, i + 1);
        assert!(line.starts_with(&head), "{line}");
    }
    imap.command_ok("LOGOUT");
}
