//! mailpulse against a scripted, misbehaving IMAP server on loopback (tests/support/hostile_imap.rs):
//! a huge literal, a line without end, garbage, `BAD` in reply to IDLE, 100 000 new messages at
//! once, a rejected login, a BYE in the middle of a command. Each ends in an error event and a
//! reconnect with backoff (or, for the login, no retry for minutes), never a panic, with the
//! agent's peak resident memory (VmHWM of the `mailpulse watch --json` process) at most 64 MiB.
// Linux only: reads /proc.
#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::{Home, Watch, of_type, secs};
use support::hostile_imap::{Hostile, Misbehaviour, peak_rss_kib};
use support::imap_setup::{config, plain};

const MAX_RSS_KIB: u64 = 64 * 1024;

fn agent(server: &Hostile) -> (Home, Watch) {
    let home = Home::new();
    home.write_config(&config(
        &home,
        &[plain(server.port())],
        "response_timeout_secs = 5",
    ));
    let w = Watch::start(&home);
    (home, w)
}

/// The peak memory so far is bounded, nothing panicked, and the agent ends cleanly.
fn finish(mut w: Watch) {
    let kib = peak_rss_kib(w.pid());
    let stderr = w.stderr_text();
    assert!(kib > 0, "no VmHWM for pid {}", w.pid());
    assert!(
        kib <= MAX_RSS_KIB,
        "peak resident memory {kib} KiB > {MAX_RSS_KIB} KiB\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(w.stop(), "the agent ends cleanly\n{stderr}");
}

/// The first error, of `kind`; then the agent connects again after a backoff: a second
/// connection comes within `within`, and not more than `most` in all by then.
fn error_then_reconnect(
    server: &Hostile,
    w: &Watch,
    kind: &str,
    within: Duration,
    most: usize,
) -> Value {
    let error = w.until_type(secs(30), "error").pop().unwrap();
    assert_eq!(error["kind"], kind, "{error}\n{}", w.stderr_text());
    let deadline = Instant::now() + within;
    while server.connections() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.connections() >= 2, "no reconnect within {within:?}");
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    assert!(
        server.connections() <= most,
        "{} connections within {within:?}: no backoff\n{}",
        server.connections(),
        w.stderr_text()
    );
    error
}

#[test]
fn a_huge_literal_is_refused_before_it_is_allocated() {
    let server = Hostile::start(Misbehaviour::HugeLiteral);
    let (_home, w) = agent(&server);
    let error = error_then_reconnect(&server, &w, "protocol", secs(8), 5);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("literal of 400000000 bytes") && message.contains("127.0.0.1:")
            || message.contains("literal of 400000000 bytes") && message.contains("localhost:"),
        "{message}"
    );
    finish(w);
}

#[test]
fn a_line_without_end_is_refused_at_the_bound() {
    let server = Hostile::start(Misbehaviour::EndlessLine);
    let (_home, w) = agent(&server);
    let error = error_then_reconnect(&server, &w, "protocol", secs(8), 5);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("without ending it"), "{message}");
    assert!(message.len() < 600, "{message}");
    finish(w);
}

/// IDLE answered with a bare tagged BAD — at once, or after its continuation: an error within
/// a second or two (not at the next keep-alive), then reconnects that back off.
#[test]
fn bad_without_text_in_reply_to_idle_is_an_error_at_once() {
    for how in [Misbehaviour::IdleBad, Misbehaviour::IdleBadLater] {
        let server = Hostile::start(how);
        let (_home, w) = agent(&server);
        w.until_type(secs(30), "connected");
        let connected = Instant::now();
        let error = w.until_type(secs(10), "error").pop().unwrap();
        assert!(
            connected.elapsed() < secs(4),
            "{how:?}: noticed after {:?}",
            connected.elapsed()
        );
        assert_eq!(error["kind"], "protocol", "{how:?}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("answered IDLE with BAD without a reason"),
            "{how:?}: {message}"
        );
        // Backoff 1, 2, 4 s (jittered) while each session fails the same way: 3 to 5
        // connections in 8 s, not one a second.
        let start = server.connections();
        std::thread::sleep(secs(8));
        let more = server.connections() - start;
        assert!(
            (1..=4).contains(&more),
            "{how:?}: {more} reconnects in 8 s\n{}",
            w.stderr_text()
        );
        finish(w);
    }
}

/// 100 000 messages arrive at once (EXISTS jumps during IDLE): the catch-up asks for at most
/// 200 at a time, announces the first 200 one by one and the rest in one summary (one toast, not
/// a flood), and the agent's memory stays bounded.
#[test]
fn a_hundred_thousand_new_messages_arrive_in_bounded_batches() {
    const N: u32 = 100_001;
    let server = Hostile::start(Misbehaviour::Flood(N));
    let (_home, w) = agent(&server);
    w.until_type(secs(30), "connected");
    let events = w.until(secs(240), |v| {
        v["type"] == "missed_mail" || v["type"] == "error"
    });
    let summary = events.last().unwrap();
    assert_eq!(summary["type"], "missed_mail", "{summary}");
    // Not mail from while mailpulse was off: the part of this backlog beyond the first 200.
    assert_eq!(summary["offline"], false, "{summary}");
    let uids: Vec<u64> = of_type(&events, "new_mail")
        .iter()
        .map(|v| v["uid"].as_u64().unwrap())
        .collect();
    assert_eq!(
        uids,
        (2..=201).collect::<Vec<u64>>(),
        "the first 200, once, in order"
    );
    assert_eq!(summary["count"], N - 201, "{summary}");
    assert_eq!(summary["uid"], N, "the newest: {summary}");
    let largest = server
        .largest_fetch
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(largest <= 200, "one UID FETCH asked for {largest} messages");
    let quiet = w.during(secs(2));
    assert!(
        of_type(&quiet, "error").is_empty() && of_type(&quiet, "new_mail").is_empty(),
        "{quiet:?}"
    );
    finish(w);
}

/// A refused login: an authentication error in the server's words, and no second login for
/// minutes (the policy after a rejection).
#[test]
fn a_rejected_login_is_not_retried_soon() {
    let server = Hostile::start(Misbehaviour::AuthFailed);
    let (_home, w) = agent(&server);
    let error = w.until_type(secs(30), "error").pop().unwrap();
    assert_eq!(error["kind"], "auth", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("Authentication failed.)") && !message.contains("code:"),
        "in words: {message}"
    );
    std::thread::sleep(secs(6));
    assert_eq!(server.logins.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(server.connections(), 1);
    finish(w);
}

#[test]
fn garbage_is_a_protocol_error_and_a_reconnect_with_backoff() {
    let server = Hostile::start(Misbehaviour::Garbage);
    let (_home, w) = agent(&server);
    let error = error_then_reconnect(&server, &w, "protocol", secs(8), 5);
    let message = error["message"].as_str().unwrap();
    assert!(message.len() < 600, "{message}");
    // In words, with the bytes escaped: not the parser's debug output.
    assert!(
        message.contains("the server sent something that is not IMAP: \"")
            && !message.contains("Error {"),
        "{message}"
    );
    finish(w);
}

#[test]
fn a_bye_in_the_middle_of_a_command_is_a_disconnect_and_a_reconnect() {
    let server = Hostile::start(Misbehaviour::ByeMidCommand);
    let (_home, w) = agent(&server);
    let error = error_then_reconnect(&server, &w, "disconnected", secs(8), 5);
    assert!(
        error["message"].as_str().unwrap().contains("127.0.0.1")
            || error["message"].as_str().unwrap().contains("localhost"),
        "{error}"
    );
    finish(w);
}

/// A server that refuses commands pipelined after DONE: the first keep-alive cycle is a
/// protocol error and a reconnect; from then on the account's cycles go one command at a time
/// and work (never a reconnect per cycle).
#[test]
fn a_server_refusing_pipelined_commands_gets_one_at_a_time() {
    let server = Hostile::start(Misbehaviour::NoPipelining);
    let (_home, w) = agent(&server);
    w.until_type(secs(30), "connected");
    let fetches = server.fetches.load(std::sync::atomic::Ordering::SeqCst);
    w.signal("USR1");
    let error = w.until_type(secs(30), "error").pop().unwrap();
    assert_eq!(error["kind"], "protocol", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("command received before the previous one ended"),
        "{error}"
    );
    assert_eq!(
        server
            .refused_pipelined
            .load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the query and IDLE came with DONE"
    );
    w.until_type(secs(60), "connected");
    let connections = server.connections();
    for _ in 0..3 {
        w.signal("USR1");
        w.until_type(secs(30), "keepalive");
    }
    assert_eq!(
        server
            .refused_pipelined
            .load(std::sync::atomic::Ordering::SeqCst),
        2,
        "pipelined again"
    );
    assert_eq!(server.connections(), connections, "a reconnect per cycle");
    assert!(server.fetches.load(std::sync::atomic::Ordering::SeqCst) >= fetches + 3);
    finish(w);
}
