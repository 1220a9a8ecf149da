//! Adaptive keep-alive behind a real NAT gateway (the testbed of tests/nat.rs,
//! tests/support/netns.rs): the agent learns the gateway's idle timeout on probe connections
//! while its main session keeps running at the floor, so no mail is missed or late while it
//! learns; then it runs just below what the gateway allows. `mailpulse probe` measures the same
//! on demand.
//!
//! The searches are bounded with `adaptive_max_secs` (hidden config key) / `--max` and a 5 s
//! response timeout so that each test takes ≤ ~7 minutes, mostly asleep; they run in parallel
//! (own namespaces, address ranges, Dovecot and agent per test): `cargo test --test adaptive --
//! --test-threads=8`. Needs root, iproute2, nftables and conntrack.
//!
//! Figures for the README/benchmark are printed with `--nocapture` as `figure: …` lines.
// Linux only: needs a private Dovecot and network namespaces.
#![cfg(target_os = "linux")]

#[path = "support/netns.rs"]
mod netns;
mod support;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use netns::{GatewayMode, Testbed};
use serde_json::Value;
use support::agent::{Home, Watch, of_type, secs, subjects};
use support::dovecot::{Dovecot, DovecotOptions};

const USER: &str = "alice";
const PASSWORD: &str = "secret-pw";
/// Probes wait this long for the NOOP's answer (and so does the main session).
const RT: u64 = 5;
/// The floor: the interval the main session uses until something is learned.
const FLOOR: u64 = 30;

/// A private Dovecot that stays silent in IDLE (no "* OK Still here" refreshing the mapping).
fn dovecot() -> Dovecot {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Old <old@example.org>", "old one", "0");
    d
}

fn home_for(tb: &Testbed, keepalive: &str) -> Home {
    let home = Home::new();
    let pw = home.password_file(PASSWORD);
    home.write_config(&format!(
        "[keepalive]\n{keepalive}\n\n[[accounts]]\nname = \"work\"\nhost = \"{}\"\nport = {}\n\
         security = \"plain\"\nusername = \"{USER}\"\npassword_command = \"cat '{}'\"\n",
        tb.server_ip(),
        tb.server_port(),
        pw.display()
    ));
    home
}

/// Adaptive keep-alive with the floor, a response timeout of 5 s and a bounded search.
fn adaptive(max: u64, check_on_wake: bool) -> String {
    format!(
        "enabled = true\nadaptive = true\ninterval_secs = {FLOOR}\nadaptive_max_secs = {max}\n\
         response_timeout_secs = {RT}\ncheck_on_wake = {check_on_wake}"
    )
}

struct Agent {
    w: Watch,
    log: Vec<Value>,
    delivered: Vec<String>,
}

impl Agent {
    fn start(tb: &Testbed, home: &Home) -> Agent {
        Agent {
            w: tb.in_client(|| Watch::start(home)),
            log: Vec::new(),
            delivered: Vec::new(),
        }
    }

    fn until(&mut self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let seen = self.w.until(limit, pred);
        self.log.extend(seen.iter().cloned());
        seen
    }

    fn during(&mut self, d: Duration) -> Vec<Value> {
        let seen = self.w.during(d);
        self.log.extend(seen.iter().cloned());
        seen
    }

    fn connect(&mut self) {
        self.until(secs(40), |v| v["type"] == "connected");
        self.until(secs(20), |v| v["type"] == "state" && v["state"] == "idle");
    }

    /// Delivers and waits (generously) for the announcement; asserts it took at most 2 s.
    fn deliver_and_wait(&mut self, d: &Dovecot, subject: &str) -> Duration {
        d.deliver(USER, "Bob <bob@example.org>", subject, "hello");
        self.delivered.push(subject.to_owned());
        let delivered = Instant::now();
        self.until(secs(60), |v| {
            v["type"] == "new_mail" && v["subject"] == subject
        });
        let latency = delivered.elapsed();
        assert!(
            latency <= secs(2),
            "{subject:?} announced after {latency:?}\n{}",
            self.transcript()
        );
        latency
    }

    /// The `n`-th `learned` event (counting from 1), if there was one yet.
    fn learned(&self, n: usize) -> Option<Value> {
        of_type(&self.log, "learned")
            .get(n - 1)
            .map(|v| (*v).clone())
    }

    /// Keeps delivering mail at varying quiet gaps (each announced within 2 s) until the
    /// `n`-th `learned` event, within `limit`.
    fn deliver_until_learned(
        &mut self,
        d: &Dovecot,
        n: usize,
        limit: Duration,
        prefix: &str,
    ) -> Value {
        let deadline = Instant::now() + limit;
        let gaps = [20, 37, 8, 53, 29];
        for i in 0.. {
            if let Some(v) = self.learned(n) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "not learned within {limit:?}\n{}",
                self.transcript()
            );
            let gap =
                secs(gaps[i % gaps.len()]).min(deadline.saturating_duration_since(Instant::now()));
            self.during(gap);
            if self.learned(n).is_none() {
                self.deliver_and_wait(d, &format!("{prefix} {i}"));
            }
        }
        unreachable!()
    }

    /// Every delivered mail announced exactly once, nothing else; no errors.
    fn assert_all_once(&self) {
        for subject in &self.delivered {
            let n = subjects(&self.log).iter().filter(|s| *s == subject).count();
            assert_eq!(
                n,
                1,
                "{subject:?} announced {n} times\n{}",
                self.transcript()
            );
        }
        assert_eq!(
            subjects(&self.log).len(),
            self.delivered.len(),
            "{}",
            self.transcript()
        );
        assert!(
            of_type(&self.log, "error").is_empty(),
            "no errors: {}",
            self.transcript()
        );
    }

    fn transcript(&self) -> String {
        format!(
            "events:\n{}\nstderr:\n{}",
            self.w.stdout_text(),
            self.w.stderr_text()
        )
    }
}

fn u(v: &Value, key: &str) -> Option<u64> {
    v[key].as_u64()
}

/// NAT timeout 60 s, floor 30 s: the learned interval converges into [40, 60) within a bounded
/// time, while every mail delivered during learning is announced once within 2 s; afterwards
/// a quiet gap longer than the NAT timeout costs nothing.
#[test]
fn learns_a_60_s_gateway_into_40_to_60_s_without_missing_mail() {
    const NAT: u64 = 60;
    let d = dovecot();
    let tb = Testbed::new(NAT as u32, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(&tb, &adaptive(120, false));
    let mut a = Agent::start(&tb, &home);
    let started = Instant::now();
    a.connect();

    let learned = a.deliver_until_learned(&d, 1, secs(8 * 60), "while learning");
    let took = started.elapsed();
    let interval = u(&learned, "interval_secs").unwrap();
    assert!(
        (40..60).contains(&interval),
        "learned {learned}\n{}",
        a.transcript()
    );
    let (lo, hi) = (
        u(&learned, "survived_secs").unwrap(),
        u(&learned, "failed_secs").unwrap(),
    );
    assert!(lo < NAT && hi >= NAT, "{learned}");
    assert_eq!(learned["network"], "no default route");

    // At the learned interval the gateway keeps the mapping: after a quiet gap longer than its
    // timeout, mail still arrives at once over the same session.
    let quiet = a.during(secs(NAT + 15));
    let keepalives = of_type(&quiet, "keepalive").len();
    assert!(
        (1..=3).contains(&keepalives),
        "keep-alives every {interval} s: {quiet:?}"
    );
    a.deliver_and_wait(&d, "after learning");
    a.during(secs(3));
    a.assert_all_once();
    assert_eq!(
        of_type(&a.log, "connected").len(),
        1,
        "the main session never dropped"
    );
    a.w.stop();
    eprintln!(
        "figure: adaptive, NAT {NAT} s, floor {FLOOR} s: learned {interval} s (idle {lo} s \
         survived, {hi} s did not) after {:.0} s; {} mails during learning, all announced once \
         within 2 s",
        took.as_secs_f64(),
        a.delivered.len() - 1
    );
}

/// The client moves to another network (its default route changes: an rtnetlink event) whose
/// gateway keeps idle flows longer than the test's maximum: the agent drops what it learned,
/// starts again from the floor and learns the new network, without missing mail.
#[test]
fn a_network_change_relearns_without_missing_mail() {
    const NAT: u64 = 45;
    const MAX: u64 = 90;
    let d = dovecot();
    let tb = Testbed::new(NAT as u32, GatewayMode::Drop);
    tb.serve(d.imap_port());
    tb.set_client_default_route(&tb.gateway_client_ip());
    let home = home_for(&tb, &adaptive(MAX, true));
    let mut a = Agent::start(&tb, &home);
    a.connect();
    let first = a.deliver_until_learned(&d, 1, secs(7 * 60), "first network");
    let net1 = format!("gw {} dev {}", tb.gateway_client_ip(), tb.client_if());
    assert_eq!(first["network"], net1.as_str(), "{first}");
    let i1 = u(&first, "interval_secs").unwrap();
    assert!((FLOOR..NAT).contains(&i1), "{first}");
    assert!(u(&first, "survived_secs").unwrap() < NAT, "{first}");

    // Another network: another gateway address, and flows kept for an hour.
    tb.set_nat_timeout(3600);
    let gw2 = tb.add_gateway_client_address(3);
    tb.set_client_default_route(&gw2);
    let second = a.deliver_until_learned(&d, 2, secs(5 * 60), "second network");
    let net2 = format!("gw {gw2} dev {}", tb.client_if());
    assert_eq!(second["network"], net2.as_str(), "{second}");
    assert_eq!(u(&second, "survived_secs"), Some(MAX), "{second}");
    assert!(second["failed_secs"].is_null(), "{second}");
    assert_eq!(u(&second, "interval_secs"), Some(MAX * 8 / 10), "{second}");
    a.during(secs(3));
    a.assert_all_once();
    assert_eq!(
        of_type(&a.log, "connected").len(),
        1,
        "the main session never dropped"
    );
    // What was learned is remembered per network.
    let memory = std::fs::read_to_string(home.state_dir().join("adaptive.json")).unwrap();
    assert!(memory.contains(&net1) && memory.contains(&net2), "{memory}");
    a.w.stop();
}

/// No NAT timeout (the gateway keeps flows for an hour; the test's maximum is 90 s): the
/// interval grows to 80 % of the maximum, and the keep-alive traffic drops accordingly.
#[test]
fn without_a_nat_timeout_the_interval_grows_to_the_maximum() {
    const MAX: u64 = 90;
    let d = dovecot();
    let tb = Testbed::new(3600, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(&tb, &adaptive(MAX, false));
    let mut a = Agent::start(&tb, &home);
    a.connect();
    let learned = a.deliver_until_learned(&d, 1, secs(5 * 60), "while learning");
    assert_eq!(u(&learned, "survived_secs"), Some(MAX), "{learned}");
    assert!(learned["failed_secs"].is_null(), "{learned}");
    let interval = u(&learned, "interval_secs").unwrap();
    assert_eq!(interval, MAX * 8 / 10);

    // The learned value ends the current IDLE with one keep-alive; then count a window.
    a.during(secs(5));
    let (up0, down0) = tb.server_bytes();
    const WINDOW: u64 = 150;
    let window = a.during(secs(WINDOW));
    let (up1, down1) = tb.server_bytes();
    let cycles = of_type(&window, "keepalive").len() as u64;
    assert!(
        (1..=2).contains(&cycles),
        "keep-alives every {interval} s over {WINDOW} s: {window:?}"
    );
    let per_cycle = (up1 - up0 + down1 - down0) / cycles;
    let per_hour = |every: u64| per_cycle * 3600 / every;
    a.assert_all_once();
    a.w.stop();
    eprintln!(
        "figure: adaptive, no NAT timeout (max {MAX} s): keep-alive every {interval} s instead \
         of {FLOOR} s; {per_cycle} bytes per cycle (plain IMAP) → {} bytes/hour instead of {} \
         ({:.0} % less)",
        per_hour(interval),
        per_hour(FLOOR),
        100.0 - 100.0 * FLOOR as f64 / interval as f64
    );
}

/// Runs `mailpulse probe --account work --max MAX` in the client namespace; returns stdout
/// and stderr. Bounded: killed by PID after `limit`.
fn probe(tb: &Testbed, home: &Home, max: u64, limit: Duration) -> (String, String, bool) {
    let mut child = tb.in_client(|| {
        home.command(&["probe", "--account", "work", "--max", &max.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailpulse probe")
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (o, e) = (t_out.join().unwrap(), t_err.join().unwrap());
    assert!(
        status.is_some(),
        "probe did not finish within {limit:?}:\n{e}"
    );
    (o, e, status.unwrap().success())
}

/// "… after between A and B s; …" → (A, B).
fn bracket(sentence: &str) -> (u64, u64) {
    let rest = sentence
        .split("after between ")
        .nth(1)
        .unwrap_or_else(|| panic!("no bracket in {sentence:?}"));
    let mut words = rest.split_whitespace();
    let a = words.next().unwrap().parse().unwrap();
    assert_eq!(words.next(), Some("and"));
    let b = words.next().unwrap().parse().unwrap();
    (a, b)
}

fn probe_brackets(nat: u64, max: u64) {
    let d = dovecot();
    let tb = Testbed::new(nat as u32, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(&tb, &format!("response_timeout_secs = {RT}"));
    let started = Instant::now();
    let (out, err, ok) = probe(&tb, &home, max, secs(8 * 60));
    assert!(ok, "probe failed:\n{out}\n{err}");
    let sentence = out.trim();
    let (a, b) = bracket(sentence);
    assert!(a < nat && b >= nat, "{nat} s NAT: {sentence}\n{err}");
    assert!(b - a <= (a / 8).max(2), "narrow: {sentence}");
    assert!(
        sentence.starts_with(&format!(
            "This network forgets idle connections after between {a} and {b} s; a keep-alive every {} s is safe.",
            (a * 8 / 10).max(FLOOR)
        )),
        "{sentence}"
    );
    // Progress went to stderr: elapsed, what is tested, the bounds.
    assert!(
        err.contains("[ 0:00] testing idle connections for 30, "),
        "{err}"
    );
    assert!(err.contains("confirming"), "{err}");
    assert!(err.contains("forgotten"), "{err}");
    eprintln!(
        "figure: mailpulse probe, NAT {nat} s, --max {max}: {sentence:?} after {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn probe_brackets_a_45_s_gateway() {
    probe_brackets(45, 90);
}

#[test]
fn probe_brackets_a_90_s_gateway() {
    probe_brackets(90, 120);
}

/// The settings window's "Diagnose network" (the same measurement, reported in words as it
/// goes): a 40 s gateway, idle times up to 60 s.
#[cfg(feature = "desktop")] // the settings window's Diagnose
#[test]
fn settings_diagnose_network_reports_progress_and_the_bracket() {
    const NAT: u64 = 40;
    let d = dovecot();
    let tb = Testbed::new(NAT as u32, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(&tb, "");
    let pw = home.password_file(PASSWORD);
    let account = serde_json::json!({
        "name": "work", "host": tb.server_ip(), "port": tb.server_port(), "security": "plain",
        "username": USER, "password_command": format!("cat '{}'", pw.display()),
    });
    let keepalive = serde_json::json!({"response_timeout_secs": RT, "adaptive_max_secs": 60});
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let p = progress.clone();
    let answer = tb.in_client(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(
                secs(5 * 60),
                mailpulse::desktop::settings::diagnose(account, None, Some(keepalive), move |t| {
                    p.lock().unwrap().push(t)
                }),
            )
            .await
            .expect("diagnosis within 5 minutes")
        })
    });
    assert_eq!(answer["op"], "diagnosed", "{answer}");
    assert_eq!(answer["ok"], true, "{answer}");
    let text = answer["text"].as_str().unwrap();
    let (a, b) = bracket(text);
    assert!(a < NAT && b >= NAT, "{text}");
    let progress = progress.lock().unwrap();
    assert!(
        progress[0].starts_with("0:00 — testing idle connections for 30, ")
            && progress.iter().any(|t| t.contains("confirming")),
        "{progress:?}"
    );
}

/// The gateway's timeout drops below the learned interval without any network change event
/// (a carrier changing its mind): the main session dies idle at the learned interval, falls
/// back to the floor at once, catches up the mail that was lost in the dead connection (once),
/// and the network is learned again.
#[test]
fn a_session_lost_at_the_learned_interval_falls_back_to_the_floor_and_relearns() {
    const MAX: u64 = 90;
    let d = dovecot();
    let tb = Testbed::new(60, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(&tb, &adaptive(MAX, false));
    let mut a = Agent::start(&tb, &home);
    a.connect();
    let first = a.deliver_until_learned(&d, 1, secs(7 * 60), "while learning");
    let i1 = u(&first, "interval_secs").unwrap();
    assert!((40..60).contains(&i1), "{first}");

    // (The learned value ends the current IDLE with a keep-alive at once: let it pass.)
    a.during(secs(2));
    // 37 s: not one of the idle times the search will try (32, 35, 39 s), so the result does
    // not hang on which side of a one-second race a probe falls.
    const NAT2: u64 = 37;
    tb.set_nat_timeout(NAT2 as u32);
    // The next keep-alive re-arms the flow's timer with 37 s; the one after it finds the flow
    // forgotten. Mail delivered meanwhile is pushed into the dead connection.
    a.until(secs(i1 + 10), |v| v["type"] == "keepalive");
    a.during(secs(NAT2 + 1));
    let subject = "sent into the dead connection";
    d.deliver(USER, "Bob <bob@example.org>", subject, "hello");
    a.delivered.push(subject.to_owned());
    let upto = a.until(secs(i1 + RT + 30), |v| v["type"] == "relearning");
    assert_eq!(
        u(upto.last().unwrap(), "interval_secs"),
        Some(FLOOR),
        "{}",
        a.transcript()
    );
    if !subjects(&a.log).iter().any(|s| s == subject) {
        a.until(secs(30), |v| {
            v["type"] == "new_mail" && v["subject"] == subject
        });
    }
    let second = a.deliver_until_learned(&d, 2, secs(7 * 60), "while relearning");
    let lo = u(&second, "survived_secs").unwrap();
    assert!(
        lo < NAT2 && u(&second, "failed_secs").unwrap() >= NAT2,
        "{second}"
    );
    assert_eq!(u(&second, "interval_secs"), Some(FLOOR), "{second}");
    a.during(secs(3));
    for s in &a.delivered {
        let n = subjects(&a.log).iter().filter(|x| *x == s).count();
        assert_eq!(n, 1, "{s:?} announced {n} times\n{}", a.transcript());
    }
    assert_eq!(of_type(&a.log, "connected").len(), 2, "{}", a.transcript());
    assert_eq!(
        of_type(&a.log, "error").len(),
        1,
        "one error for the lost connection: {}",
        a.transcript()
    );
    a.w.stop();
}

/// Dovecot sends `* OK Still here` every 20 s in IDLE (more often than the gateway's 45 s): the
/// agent measures, on connections waiting in IDLE like its main session, that these keep the
/// mapping, and runs its keep-alive at 80 % of the maximum instead of below the NAT timeout.
/// (The other tests run Dovecot silent in IDLE, where this check fails and changes nothing.)
#[test]
fn server_keepalives_in_idle_are_measured_and_relied_on() {
    const NAT: u64 = 45;
    const MAX: u64 = 90;
    let d = Dovecot::start(DovecotOptions {
        idle_notify_interval_secs: 20,
        ..Default::default()
    });
    d.deliver(USER, "Old <old@example.org>", "old one", "0");
    let tb = Testbed::new(NAT as u32, GatewayMode::Drop);
    tb.serve(d.imap_port());
    let home = home_for(&tb, &adaptive(MAX, false));
    let mut a = Agent::start(&tb, &home);
    a.connect();
    // No mail meanwhile: its EXISTS would refresh the mapping too, so a measurement in IDLE
    // that sees one is not counted (the other tests deliver throughout and show that).
    a.until(secs(7 * 60), |v| v["type"] == "learned");
    let learned = a.learned(1).unwrap();
    assert_eq!(
        learned["server_keepalive"],
        true,
        "{learned}\n{}",
        a.transcript()
    );
    let (lo, hi) = (
        u(&learned, "survived_secs").unwrap(),
        u(&learned, "failed_secs").unwrap(),
    );
    assert!(
        lo < NAT && hi >= NAT,
        "idle flows alone are forgotten: {learned}"
    );
    assert_eq!(
        u(&learned, "interval_secs"),
        Some(MAX * 8 / 10),
        "{learned}"
    );

    // Relying on the server's keep-alives: quiet for twice the NAT timeout, then mail arrives
    // at once over the same session.
    let quiet = a.during(secs(2 * NAT + 5));
    assert!(
        of_type(&quiet, "keepalive").len() <= 2,
        "keep-alives every {} s: {quiet:?}",
        MAX * 8 / 10
    );
    a.deliver_and_wait(&d, "after a quiet gap of twice the NAT timeout");
    a.during(secs(3));
    a.assert_all_once();
    assert_eq!(
        of_type(&a.log, "connected").len(),
        1,
        "the main session never dropped"
    );
    a.w.stop();
    eprintln!(
        "figure: adaptive, NAT {NAT} s, server keep-alive every 20 s in IDLE: idle flows forgotten \
         between {lo} and {hi} s, IDLE connections kept for {MAX} s → keep-alive every {} s",
        MAX * 8 / 10
    );
}
