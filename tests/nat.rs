//! mailpulse behind a real NAT gateway that forgets idle connections (tests/support/netns.rs):
//! the agent runs in a client network namespace, its connection crosses a gateway namespace
//! (nftables masquerade + stateful firewall with a short conntrack idle timeout) to the server
//! namespace. What a user sees is asserted: which mail is announced, how fast, how often, and
//! what the agent says about its connection while it cannot know better.
//!
//! The scenarios wait for NAT timeouts by nature (20 s – 3.2 min each) and mostly sleep. They
//! run in parallel (own namespaces, address ranges, Dovecot and agent per test): run them with
//! more test threads than cores, as `make test` does (`cargo test --test nat --
//! --test-threads=8`: ~3.3 min on 2 cores; with the default of one thread per core, ~6 min).
//! Needs root, iproute2, nftables and conntrack.
//!
//! Numbers worth knowing for the README are printed with `--nocapture` as `figure: …` lines.
// Linux only: needs network namespaces, nftables and a private Dovecot.
#![cfg(target_os = "linux")]

#[path = "support/netns.rs"]
mod netns;
mod support;

use std::time::{Duration, Instant};

use netns::{GatewayMode, Isolated, Testbed, in_netns};
use serde_json::Value;
use support::agent::{Home, Watch, of_type, secs, subjects};
use support::dovecot::{Dovecot, DovecotOptions};
use support::relay::Relay;

const USER: &str = "alice";
const PASSWORD: &str = "secret-pw";

/// A private Dovecot that never sends `* OK Still here` during IDLE (that traffic would refresh
/// the gateway's mapping and hide the problem), with a few messages in the INBOX, some flagged.
fn dovecot() -> Dovecot {
    let d = Dovecot::start(DovecotOptions::default());
    let conf = std::fs::read_to_string(d.dir().join("dovecot.conf")).unwrap();
    assert!(
        conf.contains("imap_idle_notify_interval = 0 secs"),
        "the server must stay silent in IDLE:\n{conf}"
    );
    for (i, subject) in ["old one", "old two", "old three"].iter().enumerate() {
        d.deliver(USER, "Old <old@example.org>", subject, &format!("{i}"));
    }
    // Flags the agent must leave alone.
    for (uid, flags) in [("1", "\\Seen \\Flagged"), ("2", "\\Answered")] {
        d.doveadm(&[
            "flags", "add", "-u", USER, flags, "mailbox", "INBOX", "uid", uid,
        ]);
    }
    d
}

/// An agent home whose account is the server as the client namespace sees it.
/// The scenarios time keep-alives exactly. The machine they run on may be paused by its host,
/// which the agent rightly treats as a resume and checks at once; that is switched off here.
const NO_WAKE: &str = "check_on_wake = false";

fn home_for(tb: &Testbed, keepalive: &str) -> Home {
    let home = Home::new();
    let pw = home.password_file(PASSWORD);
    home.write_config(&format!(
        "[keepalive]\n{keepalive}\n{NO_WAKE}\n\n[[accounts]]\nname = \"work\"\nhost = \"{}\"\nport = {}\n\
         security = \"plain\"\nusername = \"{USER}\"\npassword_command = \"cat '{}'\"\n",
        tb.server_ip(),
        tb.server_port(),
        pw.display()
    ));
    home
}

/// `mailpulse watch --json` plus everything it printed so far, in order.
struct Agent {
    w: Watch,
    log: Vec<Value>,
}

impl Agent {
    /// Starts the real binary inside the client namespace.
    fn start(tb: &Testbed, home: &Home) -> Agent {
        Agent {
            w: tb.in_client(|| Watch::start(home)),
            log: Vec::new(),
        }
    }

    fn until(&mut self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let seen = self.w.until(limit, pred);
        self.log.extend(seen.iter().cloned());
        seen
    }

    fn until_type(&mut self, limit: Duration, kind: &str) -> Vec<Value> {
        self.until(limit, |v| v["type"] == kind)
    }

    fn during(&mut self, d: Duration) -> Vec<Value> {
        let seen = self.w.during(d);
        self.log.extend(seen.iter().cloned());
        seen
    }

    /// Connected and waiting in IDLE.
    fn connect(&mut self) -> Instant {
        self.until_type(secs(40), "connected");
        self.until(secs(20), |v| v["type"] == "state" && v["state"] == "idle");
        Instant::now()
    }

    /// Waits until the agent has said both `connected` (again) and `recovered` after an error
    /// (they come before the catch-up `new_mail`).
    fn reconnected(&mut self) {
        for kind in ["connected", "recovered"] {
            let since_error = self
                .log
                .iter()
                .rev()
                .take_while(|v| v["type"] != "error")
                .any(|v| v["type"] == kind);
            if !since_error {
                self.until_type(secs(30), kind);
            }
        }
    }

    /// The account state the agent reported last (what the tray shows).
    fn state(&self) -> String {
        self.log
            .iter()
            .rev()
            .find(|v| v["type"] == "state")
            .and_then(|v| v["state"].as_str())
            .unwrap_or("none")
            .to_owned()
    }

    /// How often each subject was announced so far.
    fn count(&self, subject: &str) -> usize {
        subjects(&self.log).iter().filter(|s| *s == subject).count()
    }

    fn errors(&self) -> Vec<&Value> {
        of_type(&self.log, "error")
    }

    /// Delivers and waits (generously) for the announcement; returns the latency from the
    /// moment the message is in the mailbox to the moment the event is read.
    fn deliver_and_wait(&mut self, d: &Dovecot, subject: &str, limit: Duration) -> Duration {
        d.deliver(USER, "Bob <bob@example.org>", subject, "hello");
        let delivered = Instant::now();
        self.until(limit, |v| {
            v["type"] == "new_mail" && v["subject"] == subject
        });
        delivered.elapsed()
    }

    fn transcript(&self) -> String {
        format!(
            "events:\n{}\nstderr:\n{}",
            self.w.stdout_text(),
            self.w.stderr_text()
        )
    }
}

/// Scenario 9: the agent changes no flag. Messages there before the session keep their flags
/// byte for byte; messages delivered during it are as unflagged as they arrived.
fn assert_flags_untouched(d: &Dovecot, before: &[(String, String)]) {
    let after = d.flags_snapshot(USER);
    for entry in before {
        assert!(
            after.contains(entry),
            "flags changed: before {before:?}, after {after:?}"
        );
    }
    for (name, flags) in &after {
        if !before.iter().any(|(b, _)| b == name) {
            assert_eq!(flags, "", "a new message got flags: {after:?}");
        }
    }
    assert!(before.iter().any(|(_, f)| f == "FS"), "{before:?}");
}

/// The gateway's public port of the flow to the server (the PAT mapping), if there is one.
fn mapping(tb: &Testbed) -> Option<String> {
    let flows = tb.server_flows();
    let line = flows.first()?;
    // "… src=<server> dst=<gateway> sport=143 dport=<mapped port> …": the reply direction.
    let reply = &line[line.rfind(&format!("src={}", tb.server_ip()))?..];
    reply
        .split_whitespace()
        .find_map(|f| f.strip_prefix("dport="))
        .map(str::to_owned)
}

#[test]
fn testbed_gateway_forgets_idle_flows_and_drops_or_resets_them() {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    let d = Dovecot::start(DovecotOptions::default());
    for mode in [GatewayMode::Drop, GatewayMode::Reset] {
        let tb = Testbed::new(4, mode);
        tb.serve(d.imap_port());
        let root =
            std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established")
                .unwrap_or_default();
        assert_ne!(root.trim(), "4", "the timeout must be the gateway's only");
        let addr = tb.server_addr();
        let mut s = tb.in_client(|| TcpStream::connect(addr).expect("connect through the NAT"));
        s.set_read_timeout(Some(secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).expect("greeting");
        assert!(buf[..n].starts_with(b"* OK"), "{:?}", &buf[..n]);
        let flows = tb.server_flows();
        assert_eq!(flows.len(), 1, "{}", tb.conntrack_entries());
        assert!(flows[0].contains("ESTABLISHED") && flows[0].contains(&tb.public_ip()));
        std::thread::sleep(secs(6));
        assert!(tb.server_flows().is_empty(), "{}", tb.conntrack_entries());
        s.write_all(b"a1 NOOP\r\n").unwrap();
        s.set_read_timeout(Some(secs(3))).unwrap();
        let r = s.read(&mut buf);
        match mode {
            GatewayMode::Drop => assert!(
                matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
                "a forgotten flow is silently dropped: {r:?}"
            ),
            GatewayMode::Reset => assert!(
                matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
                "a forgotten flow is reset: {r:?}"
            ),
        }
        // Nothing from the server side may start a flow through the gateway.
        let public = format!("{}:40000", tb.public_ip());
        let started = in_netns(tb.server_ns(), || {
            TcpStream::connect_timeout(&public.parse().unwrap(), secs(2)).is_ok()
        });
        assert!(!started);
        // A new connection gets a new mapping at once.
        let addr = tb.server_addr();
        let mut s = tb.in_client(|| TcpStream::connect(addr).expect("reconnect"));
        s.set_read_timeout(Some(secs(5))).unwrap();
        assert!(s.read(&mut buf).unwrap() > 0);
    }
}

/// Scenario 1: keep-alive off. The gateway forgets the idle connection after 40 s; mail that
/// arrives after that is pushed by the server into the void, and the agent, which cannot know,
/// still says it is connected and waiting.
#[test]
fn keepalive_off_mail_stops_arriving_once_the_gateway_forgets_the_connection() {
    const NAT: u64 = 40;
    let d = dovecot();
    let tb = Testbed::new(NAT as u32, GatewayMode::Drop);
    tb.serve(d.imap_port());
    // interval_secs only sets the TCP keep-alive here (the agent probes after interval + 5 s of
    // silence even with keep-alive off); 600 keeps it out of this picture.
    let home = home_for(&tb, "enabled = false\ninterval_secs = 600");
    let mut a = Agent::start(&tb, &home);
    a.connect();
    assert!(mapping(&tb).is_some(), "{}", tb.conntrack_entries());

    let quiet = a.during(secs(2 * NAT));
    assert!(quiet.is_empty(), "nothing to say while idle: {quiet:?}");
    assert!(
        tb.server_flows().is_empty(),
        "the gateway forgot the flow: {}",
        tb.conntrack_entries()
    );

    let (_, pushed_before) = tb.server_bytes();
    d.deliver(USER, "Bob <bob@example.org>", "lost in the NAT", "hello");
    let after = a.during(secs(20));
    let (_, pushed_after) = tb.server_bytes();
    assert!(
        pushed_after > pushed_before,
        "the server did push the news (into the void)"
    );
    assert!(
        subjects(&after).is_empty(),
        "no new mail without keep-alive: {after:?}"
    );
    assert_eq!(a.count("lost in the NAT"), 0);
    // What the user is told meanwhile: all is well.
    assert_eq!(a.state(), "idle", "{}", a.transcript());
    assert!(a.errors().is_empty(), "{}", a.transcript());
    eprintln!(
        "figure: keep-alive off, NAT {NAT} s: 0 of 1 mails announced within 20 s after a quiet \
         {} s; agent state meanwhile: {}",
        2 * NAT,
        a.state()
    );
}

/// Scenario 2: keep-alive on (30 s) against a 45 s NAT: the mapping never expires, and mail
/// after long quiet gaps arrives at once, over the same connection.
#[test]
fn keepalive_on_mail_arrives_within_2_s_after_long_quiet_gaps() {
    const NAT: u64 = 45;
    let d = dovecot();
    let before = d.flags_snapshot(USER);
    let tb = Testbed::new(NAT as u32, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(
        &tb,
        "enabled = true\ninterval_secs = 30\nresponse_timeout_secs = 10",
    );
    let mut a = Agent::start(&tb, &home);
    a.connect();
    let mapped = mapping(&tb).expect("a mapping");

    let mut latencies = Vec::new();
    for i in 1..=2 {
        // A quiet gap of more than twice the NAT timeout.
        let gap = a.during(secs(2 * NAT + 5));
        let keepalives = of_type(&gap, "keepalive").len();
        assert!(keepalives >= 2, "keep-alives every 30 s: {gap:?}");
        assert_eq!(
            mapping(&tb).as_deref(),
            Some(mapped.as_str()),
            "the same mapping, kept alive: {}",
            tb.conntrack_entries()
        );
        let subject = format!("after quiet gap {i}");
        let latency = a.deliver_and_wait(&d, &subject, secs(30));
        assert!(
            latency <= Duration::from_secs(2),
            "{subject:?} announced after {latency:?}\n{}",
            a.transcript()
        );
        latencies.push(latency);
    }
    a.during(secs(3));
    for i in 1..=2 {
        assert_eq!(
            a.count(&format!("after quiet gap {i}")),
            1,
            "{}",
            a.transcript()
        );
    }
    assert_eq!(subjects(&a.log).len(), 2, "{}", a.transcript());
    assert!(a.errors().is_empty(), "{}", a.transcript());
    assert_eq!(d.login_attempts(USER), 1, "one connection carried it all");
    assert_eq!(tb.server_connections(), 1);
    let rtts: Vec<f64> = of_type(&a.log, "keepalive")
        .iter()
        .filter_map(|k| k["round_trip_ms"].as_f64())
        .collect();
    a.w.stop();
    assert_flags_untouched(&d, &before);
    eprintln!(
        "figure: keep-alive on (30 s), NAT {NAT} s: 2 of 2 mails announced after quiet gaps of \
         {} s, latencies {latencies:?}; {} keep-alives, round trips {rtts:?} ms",
        2 * NAT + 5,
        rtts.len()
    );
}

/// Scenarios 3 and 4: the keep-alive interval (60 s) is longer than the NAT timeout (30 s).
/// Mail delivered after the gateway forgot the flow cannot get through; the next keep-alive
/// finds the connection dead within its response timeout, the agent reconnects and announces
/// that mail, once.
fn dead_connection_is_found_by_the_next_keepalive(mode: GatewayMode) -> String {
    const NAT: u64 = 30;
    const INTERVAL: u64 = 60;
    const RT: u64 = 5;
    let d = dovecot();
    let before = d.flags_snapshot(USER);
    let tb = Testbed::new(NAT as u32, mode);
    tb.serve(d.imap_port());
    let home = home_for(
        &tb,
        &format!("enabled = true\ninterval_secs = {INTERVAL}\nresponse_timeout_secs = {RT}"),
    );
    let mut a = Agent::start(&tb, &home);
    let idle_since = a.connect();

    let quiet = a.during(secs(NAT + 10));
    assert!(quiet.is_empty(), "{quiet:?}");
    assert!(tb.server_flows().is_empty(), "{}", tb.conntrack_entries());
    let subject = "sent into a dead connection";
    d.deliver(USER, "Bob <bob@example.org>", subject, "hello");
    let delivered = Instant::now();

    let upto_error = a.until_type(secs(INTERVAL + RT + 20), "error");
    let found = idle_since.elapsed();
    let error = upto_error.last().unwrap().clone();
    assert!(
        subjects(&upto_error).is_empty() && of_type(&upto_error, "keepalive").is_empty(),
        "nothing got through before: {upto_error:?}"
    );
    assert!(
        found <= secs(INTERVAL + RT + 3),
        "dead connection found {found:?} after IDLE began (interval {INTERVAL} s + response \
         timeout {RT} s)\n{}",
        a.transcript()
    );
    assert!(
        found >= secs(INTERVAL - 2),
        "found by the keep-alive: {found:?}"
    );
    let kind = error["kind"].as_str().unwrap().to_owned();
    match mode {
        GatewayMode::Drop => assert_eq!(kind, "timeout", "{error}"),
        GatewayMode::Reset => assert!(kind == "timeout" || kind == "disconnected", "{error}"),
    }

    let mail = a.until(secs(30), |v| v["type"] == "new_mail");
    assert_eq!(mail.last().unwrap()["subject"], subject, "{mail:?}");
    let late = delivered.elapsed();
    a.reconnected();
    a.during(secs(5));
    assert_eq!(of_type(&a.log, "connected").len(), 2, "{}", a.transcript());
    assert_eq!(a.count(subject), 1, "announced once: {}", a.transcript());
    assert_eq!(subjects(&a.log).len(), 1, "{}", a.transcript());
    assert_eq!(
        a.errors().len(),
        1,
        "one error per episode: {}",
        a.transcript()
    );
    assert_eq!(a.state(), "idle");
    assert_eq!(d.login_attempts(USER), 2);
    a.w.stop();
    assert_flags_untouched(&d, &before);
    eprintln!(
        "figure: {mode:?} gateway, NAT {NAT} s, keep-alive {INTERVAL} s, response timeout {RT} s: \
         dead connection found {:.1} s after IDLE began ({kind}); mail delivered into it \
         announced {:.1} s after delivery, once",
        found.as_secs_f64(),
        late.as_secs_f64()
    );
    kind
}

#[test]
fn interval_longer_than_nat_timeout_drop_reconnects_and_catches_up_once() {
    dead_connection_is_found_by_the_next_keepalive(GatewayMode::Drop);
}

#[test]
fn interval_longer_than_nat_timeout_rst_reconnects_and_catches_up_once() {
    dead_connection_is_found_by_the_next_keepalive(GatewayMode::Reset);
}

/// Scenario 5: the client's link goes down for 10 s across a keep-alive (the mapping itself
/// survives: the gateway's timeout is long). The keep-alive gets no answer, the agent
/// reconnects once the link is back and announces the mail delivered meanwhile, once.
#[test]
fn link_down_for_10_s_reconnects_and_catches_up_without_duplicates() {
    const INTERVAL: u64 = 30;
    const RT: u64 = 5;
    let d = dovecot();
    let before = d.flags_snapshot(USER);
    let tb = Testbed::new(600, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(
        &tb,
        &format!("enabled = true\ninterval_secs = {INTERVAL}\nresponse_timeout_secs = {RT}"),
    );
    let mut a = Agent::start(&tb, &home);
    a.connect();
    a.until_type(secs(INTERVAL + 15), "keepalive");
    let t = Instant::now();
    // Down from 3 s before the next keep-alive (DONE, then the query) until 2 s after its
    // response timeout: DONE and its TCP retransmissions are lost, the deadline passes while
    // the link is down.
    a.during(secs(INTERVAL - 3));
    tb.link_down();
    let down = Instant::now();
    let subject = "delivered while the link was down";
    d.deliver(USER, "Bob <bob@example.org>", subject, "hello");
    let seen_down = a.during(secs(10).saturating_sub(down.elapsed()));
    tb.link_up();
    eprintln!("link was down for {:?}", down.elapsed());
    assert!(subjects(&seen_down).is_empty(), "{seen_down:?}");

    let upto_mail = a.until(secs(40), |v| v["type"] == "new_mail");
    assert_eq!(upto_mail.last().unwrap()["subject"], subject);
    // The keep-alive's deadline is what notices; a reconnect attempt while the link is still
    // down may add a "connect" error (a different error is reported again in an episode).
    let errors = a.errors();
    assert_eq!(errors[0]["kind"], "timeout", "{}", a.transcript());
    assert!(
        errors.iter().skip(1).all(|e| e["kind"] == "connect") && errors.len() <= 2,
        "{}",
        a.transcript()
    );
    a.reconnected();
    a.during(secs(5));
    assert_eq!(a.count(subject), 1, "announced once: {}", a.transcript());
    assert_eq!(subjects(&a.log).len(), 1, "{}", a.transcript());
    assert_eq!(of_type(&a.log, "connected").len(), 2, "{}", a.transcript());
    assert_eq!(a.state(), "idle");
    a.w.stop();
    assert_flags_untouched(&d, &before);
    eprintln!(
        "figure: link down 10 s across a keep-alive: mail announced {:.1} s after the link \
         went down (t = {:.1} s after the keep-alive before)",
        down.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}

/// Scenario 8: one keep-alive cycle (DONE, the last-item query, IDLE) costs the same bytes on
/// the wire whether the mailbox holds 10 or 20 000 messages. Measured at a counting relay on
/// loopback, over one full cycle between two quiet moments.
#[test]
fn keepalive_cycle_bytes_do_not_grow_with_the_mailbox() {
    fn cycle_bytes(messages: usize) -> ((u64, u64), Duration) {
        let d = Dovecot::start(DovecotOptions::default());
        let t = Instant::now();
        d.deliver_many(USER, messages);
        // The same newest message in both mailboxes: only its number differs.
        d.deliver(USER, "Newest <newest@example.org>", "the newest one", "x");
        let filled = t.elapsed();
        let relay = Relay::start(d.imap_port());
        let home = Home::new();
        let pw = home.password_file(PASSWORD);
        home.write_config(&format!(
            "[keepalive]\nenabled = true\ninterval_secs = 30\nresponse_timeout_secs = 20\n\n\
             [[accounts]]\nname = \"work\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
             username = \"{USER}\"\npassword_command = \"cat '{}'\"\n",
            relay.port(),
            pw.display()
        ));
        let w = Watch::start(&home);
        let connected = w.until_type(secs(60), "connected");
        assert_eq!(
            connected.last().unwrap()["exists"],
            messages as u64 + 1,
            "{connected:?}"
        );
        // Snapshots 5 s after a keep-alive, when the session is quietly in IDLE again.
        w.until_type(secs(45), "keepalive");
        w.during(secs(5));
        let (up0, down0) = relay.bytes();
        w.until_type(secs(45), "keepalive");
        w.during(secs(5));
        let (up1, down1) = relay.bytes();
        ((up1 - up0, down1 - down0), filled)
    }
    let small = std::thread::spawn(|| cycle_bytes(10));
    let large = cycle_bytes(20_000);
    let small = small.join().unwrap();
    let ((up_s, down_s), _) = small;
    let ((up_l, down_l), fill) = large;
    eprintln!(
        "figure: one keep-alive cycle: 11 messages {up_s} B up + {down_s} B down; 20 001 \
         messages {up_l} B up + {down_l} B down (filling took {fill:?})"
    );
    assert_eq!(up_s, up_l, "the client sends the same commands");
    // The answer differs only in digits: message number and UID (11 vs 20001), and the
    // harness's Message-ID counter in the newest message's header (2 vs 5 digits).
    assert!(
        down_l >= down_s && down_l - down_s <= 12,
        "server bytes per cycle: {down_s} vs {down_l}"
    );
    assert!(up_s + down_s < 2_000, "a tiny cycle: {up_s} + {down_s} B");
}

/// Scenario 6: a host name that does not resolve (a typo, or a laptop without DNS). The agent
/// runs in a namespace without any route, so the resolver fails at once and no query leaves
/// the test's own namespaces. `check` says what to fix; `watch` reports it once, keeps retrying
/// with backoff, and never claims to be connected.
#[test]
fn a_name_that_does_not_resolve_is_one_clear_error_and_slow_retries() {
    let ns = Isolated::new();
    let home = Home::new();
    let pw = home.password_file(PASSWORD);
    home.write_config(&format!(
        "[keepalive]\n{NO_WAKE}\nresponse_timeout_secs = 5\n\n[[accounts]]\nname = \"work\"\n\
         host = \"imap.does-not-exist.invalid\"\nusername = \"{USER}\"\n\
         password_command = \"cat '{}'\"\n",
        pw.display()
    ));
    let started = Instant::now();
    let out = ns.run(|| home.run(&["check"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("cannot resolve imap.does-not-exist.invalid")
            && err.contains("check the host name"),
        "{err}"
    );
    assert!(started.elapsed() < secs(30), "{:?}", started.elapsed());

    let mut w = ns.run(|| Watch::start(&home));
    let first = w.until_type(secs(30), "error");
    let error = first.last().unwrap();
    assert_eq!(error["kind"], "resolve", "{error}");
    let more = w.during(secs(20));
    let attempts = of_type(&more, "state")
        .iter()
        .filter(|v| v["state"] == "connecting")
        .count();
    // Backoff 1, 2, 4, 8 s (jittered) between attempts: a handful in 20 s, not hundreds.
    assert!(
        (2..=6).contains(&attempts),
        "{attempts} attempts in 20 s: {more:?}"
    );
    assert!(
        of_type(&more, "error").is_empty(),
        "reported once: {more:?}"
    );
    assert!(of_type(&first, "connected").is_empty() && of_type(&more, "connected").is_empty());
    assert!(!w.stderr_text().contains("panicked"), "{}", w.stderr_text());
    assert!(w.stop(), "the agent ends cleanly");
}

/// Scenario 5: the link is down for 3 minutes — long enough for the backoff to have grown to
/// minutes. When the path returns, the network-change notification (rtnetlink in the client
/// namespace) makes the agent try at once instead of sleeping through a working network:
/// connected again within 2 s, the mail delivered meanwhile announced once.
#[test]
fn link_down_for_3_min_reconnects_within_2_s_of_the_link_returning() {
    let d = dovecot();
    let before = d.flags_snapshot(USER);
    let tb = Testbed::new(600, GatewayMode::Drop);
    tb.serve(d.imap_port());
    // Network-change checks on (the point of this test); a paused VM may add a harmless check.
    let home = home_for(
        &tb,
        "enabled = true\ninterval_secs = 30\nresponse_timeout_secs = 5\ncheck_on_wake = true",
    );
    let config = std::fs::read_to_string(home.config_path()).unwrap();
    home.write_config(&config.replace(&format!("{NO_WAKE}\n"), ""));
    let mut a = Agent::start(&tb, &home);
    a.connect();
    tb.link_down();
    let subject = "delivered during the 3-minute outage";
    d.deliver(USER, "Bob <bob@example.org>", subject, "hello");
    let outage = a.during(secs(180));
    assert!(subjects(&outage).is_empty(), "{outage:?}");
    assert!(
        !a.errors().is_empty(),
        "the outage was noticed: {}",
        a.transcript()
    );
    let attempts = of_type(&outage, "state")
        .iter()
        .filter(|v| v["state"] == "connecting")
        .count();
    // Backoff, not hammering: 1, 2, 4, … s plus each attempt's own timeout.
    assert!(
        attempts <= 12,
        "{attempts} attempts in 3 min: {}",
        a.transcript()
    );

    tb.link_up();
    let up = Instant::now();
    a.until_type(secs(60), "connected");
    let reconnect = up.elapsed();
    a.reconnected();
    a.during(secs(3));
    eprintln!(
        "figure: link down 3 min ({attempts} attempts meanwhile): connected again {:.2} s after \
         the link returned",
        reconnect.as_secs_f64()
    );
    assert!(
        reconnect <= secs(2),
        "reconnected after {reconnect:?}\n{}",
        a.transcript()
    );
    assert_eq!(a.count(subject), 1, "announced once: {}", a.transcript());
    assert_eq!(subjects(&a.log).len(), 1, "{}", a.transcript());
    assert_eq!(a.state(), "idle");
    a.w.stop();
    assert_flags_untouched(&d, &before);
}

/// Scenario 5: the server restarts behind the gateway. The agent notices the closed
/// connection, retries with backoff while the server is down, reconnects through a new
/// mapping, and announces the mail delivered right after the restart once.
#[test]
fn server_restart_behind_the_gateway_reconnects_and_catches_up_once() {
    let mut d = dovecot();
    let before = d.flags_snapshot(USER);
    let tb = Testbed::new(600, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(
        &tb,
        "enabled = true\ninterval_secs = 30\nresponse_timeout_secs = 5",
    );
    let mut a = Agent::start(&tb, &home);
    a.connect();
    d.stop();
    let errors = a.until_type(secs(30), "error");
    assert_eq!(
        errors.last().unwrap()["kind"],
        "disconnected",
        "{}",
        a.transcript()
    );
    a.during(secs(5));
    d.restart();
    let subject = "right after the restart";
    d.deliver(USER, "Bob <bob@example.org>", subject, "hello");
    a.until(secs(60), |v| v["type"] == "new_mail");
    a.reconnected();
    a.during(secs(3));
    assert_eq!(a.count(subject), 1, "announced once: {}", a.transcript());
    assert_eq!(subjects(&a.log).len(), 1, "{}", a.transcript());
    assert_eq!(of_type(&a.log, "connected").len(), 2, "{}", a.transcript());
    assert_eq!(a.state(), "idle");
    assert!(mapping(&tb).is_some(), "{}", tb.conntrack_entries());
    a.w.stop();
    assert_flags_untouched(&d, &before);
}

/// Dovecot's own `* OK Still here` during IDLE is server-initiated traffic over the client's
/// connection: when it comes more often than the gateway forgets (here every 30 s against a
/// 45 s NAT timeout), it keeps the mapping alive even with mailpulse's keep-alive off. The
/// default (every 2 min) is longer than many gateways' timeouts, which is why mailpulse does
/// not rely on it.
#[test]
fn dovecot_still_here_notifications_keep_a_short_nat_mapping_alive() {
    const NAT: u64 = 45;
    let d = Dovecot::start(DovecotOptions {
        idle_notify_interval_secs: 30,
        ..DovecotOptions::default()
    });
    let tb = Testbed::new(NAT as u32, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(&tb, "enabled = false\ninterval_secs = 600");
    let mut a = Agent::start(&tb, &home);
    a.connect();
    let (_, pushed_before) = tb.server_bytes();
    let quiet = a.during(secs(3 * NAT));
    assert!(quiet.is_empty(), "nothing to say while idle: {quiet:?}");
    let (_, pushed) = tb.server_bytes();
    assert!(pushed > pushed_before, "the server spoke in IDLE");
    assert!(
        mapping(&tb).is_some(),
        "mapping kept: {}",
        tb.conntrack_entries()
    );
    let latency = a.deliver_and_wait(&d, "kept alive by the server", secs(20));
    assert!(latency <= secs(2), "{latency:?}");
    assert_eq!(a.count("kept alive by the server"), 1);
    assert!(a.errors().is_empty(), "{}", a.transcript());
    eprintln!(
        "figure: keep-alive off, Dovecot 'Still here' every 30 s, NAT {NAT} s: mail after {} s \
         quiet announced in {:.2} s",
        3 * NAT,
        latency.as_secs_f64()
    );
}
