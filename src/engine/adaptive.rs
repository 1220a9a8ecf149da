//! Adaptive keep-alive: learn how long the network path keeps an idle connection, so that the
//! main session sends keep-alives only as often as this network needs.
//!
//! The main session never takes part: it keeps running at a known-safe interval (the floor, or
//! what was learned before), so learning never costs a notification. The measurement runs on
//! *probe connections* to the same server (logged in, nothing selected, no IDLE, no TCP
//! keep-alive): a probe is held silent for T, then sends a `NOOP`; an answer within the response
//! timeout means flows idle for T survive on this path, none means the path forgot the flow.
//!
//! The search ([`Search`], pure and clock-free) brackets the idle timeout between the largest T
//! that survived (`lo`) and the smallest that did not (`hi`), in rounds. A round holds up to
//! [`PROBES`] probe connections idle from the same moment, each for another T spread
//! geometrically over the open bracket (the first round also tests the floor and the maximum),
//! so one round narrows the bracket as much as several steps of a plain binary search, and ends
//! at the first failure. Once `hi − lo` is within an eighth of `lo` (or the maximum survived),
//! `lo` is confirmed twice, on two more connections; a failed confirmation narrows the bracket
//! and the search goes on. The main session then runs at 80 % of `lo`, never under the floor.
//! If the path forgets idle flows below the maximum, [`measure`] finally holds connections in
//! IDLE (as the main session waits) for the maximum: if they survive, the server's own
//! keep-alives during IDLE keep the mapping and the interval relies on them.
//!
//! [`measure`] runs the search with `tokio::time`, so the tests below run it on a paused clock
//! against a simulated gateway; the engine and `mailpulse probe` use it with the real
//! connector. [`Memory`] remembers the result per network and server (`adaptive.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep_until, timeout};

use crate::error::ProtoError;
use crate::fs::write_atomic;
use crate::protocol::{Connector, Probe};

/// Probe connections held idle at the same time in one search round (plus one for the floor in
/// the first round). Servers allow 10 or more connections per user and address (Dovecot's
/// default `mail_max_userip_connections = 10`, Gmail 15).
pub const PROBES: usize = 3;
/// How often the final `lo` is confirmed (on that many further connections, in one round).
pub const CONFIRMATIONS: usize = 2;
/// The main session's interval as a share of the largest idle time that survived.
pub const MARGIN_PERCENT: u32 = 80;

/// What a search is bounded by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The smallest T tried; also the interval used until something is learned.
    pub floor: Duration,
    /// The largest T tried (29 minutes at most: servers end idle sessions after 30).
    pub max: Duration,
    /// No answer to the probe's NOOP within this means the flow was forgotten.
    pub response_timeout: Duration,
}

/// The safe interval for a path on which flows idle for `survived` were kept.
pub fn safe_interval(survived: Duration, floor: Duration) -> Duration {
    let secs = survived.as_secs() * u64::from(MARGIN_PERCENT) / 100;
    Duration::from_secs(secs).max(floor)
}

/// The binary (really: multi-section) search over T, without any clock or socket.
#[derive(Debug, Clone)]
pub struct Search {
    params: Params,
    /// Largest T that survived (`None`: not even the floor was measured yet).
    lo: Option<Duration>,
    /// Smallest T that did not survive.
    hi: Option<Duration>,
    /// Confirmations of the current `lo` that succeeded.
    confirmed: usize,
    /// Whether the floor and the maximum were tried (the first round).
    started: bool,
}

/// One measurement: a probe idle for `idle` survived or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub idle: Duration,
    pub survived: bool,
}

/// What the search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The largest idle time that survived (confirmed), `None` if not even the floor did.
    pub survived: Option<Duration>,
    /// The smallest idle time that did not survive, `None` if the maximum survived.
    pub failed: Option<Duration>,
    /// The interval the main session should use.
    pub interval: Duration,
    /// Idle flows did not survive `failed`, but connections waiting in IDLE survived the
    /// maximum: the server's own keep-alives during IDLE keep the mapping, and `interval` relies
    /// on them.
    pub server_keepalive: bool,
}

impl Outcome {
    /// The sentence `mailpulse probe` ends with.
    pub fn sentence(&self) -> String {
        let s = |d: Duration| d.as_secs();
        if self.server_keepalive
            && let (Some(lo), Some(hi)) = (self.survived, self.failed)
        {
            return format!(
                "This network forgets idle connections after between {} and {} s, but the server's own \
                 keep-alives during IDLE keep them open; a keep-alive every {} s is safe.",
                s(lo),
                s(hi),
                s(self.interval)
            );
        }
        match (self.survived, self.failed) {
            (Some(lo), Some(hi)) => format!(
                "This network forgets idle connections after between {} and {} s; a keep-alive every {} s is safe.",
                s(lo),
                s(hi),
                s(self.interval)
            ),
            (Some(lo), None) => format!(
                "Idle connections survived the longest test ({} s); a keep-alive every {} s is safe.",
                s(lo),
                s(self.interval)
            ),
            (None, Some(hi)) => format!(
                "This network forgets idle connections in less than {} s, the shortest test; \
                 keep-alives every {} s may not be enough.",
                s(hi),
                s(self.interval)
            ),
            (None, None) => "Nothing was measured.".into(),
        }
    }
}

impl Search {
    pub fn new(params: Params) -> Search {
        Search {
            params,
            lo: None,
            hi: None,
            confirmed: 0,
            started: false,
        }
    }

    pub fn bounds(&self) -> (Option<Duration>, Option<Duration>) {
        (self.lo, self.hi)
    }

    /// The bracket is narrow enough: an eighth of `lo` (at least 2 s), or the maximum survived.
    fn narrow(&self) -> bool {
        let Some(lo) = self.lo else {
            return self.hi.is_some(); // even the floor failed: nothing below it is tried
        };
        match self.hi {
            None => lo >= self.params.max,
            Some(hi) => hi.saturating_sub(lo) <= (lo / 8).max(Duration::from_secs(2)),
        }
    }

    /// The idle times to test in the next round (each on its own connection, all idle from the
    /// same moment), ascending; empty when the search is over.
    pub fn next_round(&self) -> Vec<Duration> {
        let p = self.params;
        if !self.started {
            let mut ts = vec![p.floor];
            match self.hi {
                None => ts.extend(spread(p.floor, p.max, PROBES, true)),
                Some(hi) => ts.extend(spread(p.floor, hi, PROBES, false)),
            }
            ts.dedup();
            return ts;
        }
        if self.narrow() {
            return match self.lo {
                Some(lo) if lo > p.floor && self.confirmed < CONFIRMATIONS => {
                    vec![lo; CONFIRMATIONS - self.confirmed]
                }
                _ => Vec::new(),
            };
        }
        let lo = self.lo.unwrap_or(p.floor);
        let ts = match self.hi {
            Some(hi) => spread(lo, hi, PROBES, false),
            None => spread(lo, p.max, PROBES, true),
        };
        if ts.is_empty() {
            // Whole seconds leave nothing between lo and hi: as narrow as it gets.
            return match self.lo {
                Some(lo) if lo > p.floor && self.confirmed < CONFIRMATIONS => {
                    vec![lo; CONFIRMATIONS - self.confirmed]
                }
                _ => Vec::new(),
            };
        }
        ts
    }

    /// Whether the next round confirms `lo` rather than searching.
    pub fn confirming(&self) -> bool {
        let round = self.next_round();
        !round.is_empty() && self.started && Some(round[0]) == self.lo
    }

    /// Record what one round measured (samples of one round, in any order).
    pub fn record(&mut self, samples: &[Sample]) {
        let confirming = self.confirming();
        self.started = true;
        for s in samples {
            if s.survived {
                if self.hi.is_some_and(|hi| s.idle >= hi) {
                    continue; // contradicts a failure already seen: trust the failure
                }
                match self.lo {
                    Some(lo) if s.idle == lo && confirming => self.confirmed += 1,
                    Some(lo) if s.idle <= lo => {}
                    _ => {
                        self.lo = Some(s.idle.min(self.params.max));
                        self.confirmed = 0;
                    }
                }
            } else {
                if self.hi.is_none_or(|hi| s.idle < hi) {
                    self.hi = Some(s.idle);
                }
                if self.lo.is_some_and(|lo| s.idle <= lo) {
                    // What survived before did not survive now: distrust every survivor and
                    // measure again from the floor, below the new failure.
                    self.lo = None;
                    self.confirmed = 0;
                    self.started = false;
                }
            }
        }
    }

    pub fn done(&self) -> bool {
        self.started && self.next_round().is_empty()
    }

    pub fn outcome(&self) -> Outcome {
        Outcome {
            survived: self.lo,
            failed: self.hi,
            interval: match self.lo {
                Some(lo) => safe_interval(lo, self.params.floor).min(self.params.max),
                None => self.params.floor,
            },
            server_keepalive: false,
        }
    }
}

/// `n` points spread geometrically over (lo, hi] (with `hi` when `include_hi`, else strictly
/// inside (lo, hi)), in whole seconds, ascending, distinct.
fn spread(lo: Duration, hi: Duration, n: usize, include_hi: bool) -> Vec<Duration> {
    let (l, h) = (lo.as_secs_f64().max(1.0), hi.as_secs_f64());
    if h <= l {
        return Vec::new();
    }
    let parts = if include_hi { n } else { n + 1 };
    let mut out: Vec<Duration> = (1..=n)
        .map(|i| {
            let t = l * (h / l).powf(i as f64 / parts as f64);
            Duration::from_secs(t.floor() as u64)
        })
        .filter(|t| *t > lo && (*t < hi || (include_hi && *t <= hi)))
        .collect();
    if include_hi && out.last() != Some(&hi) {
        out.push(hi);
    }
    out.dedup();
    out
}

/// What [`measure`] reports while it runs (for `mailpulse probe` and the settings window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Since the measurement started.
    pub elapsed: Duration,
    /// The idle times being tested in this round.
    pub testing: Vec<Duration>,
    pub confirming: bool,
    /// Largest survived / smallest failed so far.
    pub lo: Option<Duration>,
    pub hi: Option<Duration>,
    /// A sample just measured, if this report is about one.
    pub sample: Option<Sample>,
}

impl Progress {
    /// The report in words, after the elapsed time (which each caller formats its own way):
    /// a round ("testing idle connections for 30, 40 s (kept: 20 s, forgotten: ?)") or a
    /// sample ("  idle 30 s: answered").
    pub fn describe(&self) -> String {
        if let Some(s) = &self.sample {
            return format!(
                "  idle {} s: {}",
                s.idle.as_secs(),
                if s.survived {
                    "answered"
                } else {
                    "no answer (forgotten)"
                }
            );
        }
        let bound = |d: Option<Duration>| {
            d.map_or_else(|| "?".to_string(), |d| format!("{} s", d.as_secs()))
        };
        format!(
            "{} idle connections for {} s (kept: {}, forgotten: {})",
            if self.confirming {
                "confirming with"
            } else {
                "testing"
            },
            self.testing
                .iter()
                .map(|t| t.as_secs().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            bound(self.lo),
            bound(self.hi)
        )
    }

    /// Elapsed time as minutes:seconds.
    pub fn clock(&self) -> String {
        let s = self.elapsed.as_secs();
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Run the search on probe connections from `connector`. `Err` when not even the first probe
/// connection could be opened (e.g. the server refuses a second login): learning is skipped.
///
/// With `idle_folder`, a path that forgets idle flows below the maximum is measured once more
/// the way the main session really waits: [`CONFIRMATIONS`] connections in IDLE on that folder,
/// held for the maximum. If they all survive, what the server sends by itself while in IDLE
/// (Dovecot's `* OK Still here`) keeps the mapping, and the interval relies on it.
pub async fn measure(
    connector: &dyn Connector,
    params: Params,
    idle_folder: Option<&str>,
    mut progress: impl FnMut(&Progress),
) -> Result<Outcome, ProtoError> {
    let start = Instant::now();
    let mut search = Search::new(params);
    let mut first = true;
    // Bounded: every round either narrows the bracket, confirms, or lowers lo; a few dozen
    // rounds cover 30 s .. 29 min many times over.
    for _ in 0..40 {
        let ts = search.next_round();
        if ts.is_empty() {
            break;
        }
        let confirming = search.confirming();
        let (lo, hi) = search.bounds();
        progress(&Progress {
            elapsed: start.elapsed(),
            testing: ts.clone(),
            confirming,
            lo,
            hi,
            sample: None,
        });
        let samples = round(connector, &ts, params.response_timeout, first, |s| {
            progress(&Progress {
                elapsed: start.elapsed(),
                testing: ts.clone(),
                confirming,
                lo,
                hi,
                sample: Some(*s),
            })
        })
        .await?;
        first = false;
        search.record(&samples);
    }
    let mut outcome = search.outcome();
    if let Some(folder) = idle_folder
        && outcome.survived.is_some()
        && outcome.failed.is_some_and(|hi| hi < params.max)
    {
        let ts = vec![params.max; CONFIRMATIONS];
        let (lo, hi) = search.bounds();
        progress(&Progress {
            elapsed: start.elapsed(),
            testing: ts.clone(),
            confirming: false,
            lo,
            hi,
            sample: None,
        });
        let samples = idle_round(connector, folder, &ts, params.response_timeout).await;
        let kept = samples.len() == ts.len() && samples.iter().all(|s| s.survived);
        tracing::debug!("in IDLE for {} s: {samples:?}", params.max.as_secs());
        if kept {
            outcome.server_keepalive = true;
            outcome.interval = safe_interval(params.max, params.floor).min(params.max);
        }
    }
    Ok(outcome)
}

/// Connections waiting in IDLE for T each (opened together), then ended with DONE.
async fn idle_round(
    connector: &dyn Connector,
    folder: &str,
    ts: &[Duration],
    rt: Duration,
) -> Vec<Sample> {
    let mut probes = Vec::new();
    for &t in ts {
        match timeout(rt * 3, connector.open_idle_probe(folder)).await {
            Ok(Ok(p)) => probes.push((t, p, Instant::now())),
            Ok(Err(e)) => tracing::debug!("idle probe connection failed: {e}"),
            Err(_) => tracing::debug!("idle probe connection timed out"),
        }
    }
    let pending: FuturesUnordered<_> = probes
        .into_iter()
        .map(|(t, probe, opened)| hold_and_ping(probe, opened, t, rt))
        .collect();
    pending.collect().await
}

/// Hold a probe connection idle until `t` after it was opened, then ping it (within `rt`); a
/// survivor is logged out politely. The sample carries the nominal T: a ping that went out late
/// only makes a survival more certain.
async fn hold_and_ping(
    mut probe: Box<dyn Probe>,
    opened: Instant,
    t: Duration,
    rt: Duration,
) -> Sample {
    sleep_until(opened + t).await;
    let ok = matches!(timeout(rt, probe.ping()).await, Ok(Ok(())));
    if ok {
        let _ = timeout(rt, probe.close()).await;
    }
    Sample {
        idle: t,
        survived: ok,
    }
}

/// One round: open a probe connection per T, hold each idle for its T, then ping it. Ends at
/// the first failure (larger T would fail too). Connections that cannot be opened are left out,
/// unless it is the very first one (`strict`), which means the server refuses a second login.
async fn round(
    connector: &dyn Connector,
    ts: &[Duration],
    rt: Duration,
    strict: bool,
    mut on_sample: impl FnMut(&Sample),
) -> Result<Vec<Sample>, ProtoError> {
    let mut probes: Vec<(Duration, Box<dyn Probe>, Instant)> = Vec::new();
    for (i, &t) in ts.iter().enumerate() {
        match timeout(rt * 3, connector.open_probe()).await {
            Ok(Ok(p)) => probes.push((t, p, Instant::now())),
            Ok(Err(e)) if strict && i == 0 => return Err(e),
            Err(_) if strict && i == 0 => {
                return Err(ProtoError::new(
                    crate::error::ErrorKind::Timeout,
                    "no answer while opening a probe connection",
                ));
            }
            Ok(Err(e)) => tracing::debug!("probe connection {i} failed: {e}"),
            Err(_) => tracing::debug!("probe connection {i} timed out"),
        }
    }
    let mut pending: FuturesUnordered<_> = probes
        .into_iter()
        .map(|(t, probe, opened)| hold_and_ping(probe, opened, t, rt))
        .collect();
    let mut samples = Vec::new();
    while let Some(sample) = pending.next().await {
        on_sample(&sample);
        samples.push(sample);
        if !sample.survived {
            break; // dropping the rest closes their sockets
        }
    }
    Ok(samples)
}

/// One learned value, per network and server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub interval_secs: u64,
    pub survived_secs: Option<u64>,
    pub failed_secs: Option<u64>,
    /// The main session died idle at this interval: relearn before trusting it again.
    pub suspect: bool,
    /// The interval relies on the server's keep-alives during IDLE.
    #[serde(default)]
    pub server_keepalive: bool,
    /// When it was learned (RFC 3339).
    pub learned: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MemoryData {
    /// network id → `user@host:port` → record.
    networks: BTreeMap<String, BTreeMap<String, Record>>,
}

/// What was learned, per network; `adaptive.json` in the state dir, written atomically.
#[derive(Debug, Clone)]
pub struct Memory {
    path: Option<PathBuf>,
    data: Arc<Mutex<MemoryData>>,
}

impl Memory {
    pub fn in_memory() -> Memory {
        Memory {
            path: None,
            data: Arc::default(),
        }
    }

    pub fn open(dir: &std::path::Path) -> Memory {
        let path = dir.join("adaptive.json");
        let data = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Memory {
            path: Some(path),
            data: Arc::new(Mutex::new(data)),
        }
    }

    /// The trusted (not suspect) record for this network and server.
    pub fn get(&self, network: &str, server: &str) -> Option<Record> {
        let data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        data.networks
            .get(network)
            .and_then(|m| m.get(server))
            .filter(|r| !r.suspect)
            .cloned()
    }

    pub fn set(&self, network: &str, server: &str, record: Record) {
        self.update(|d| {
            d.networks
                .entry(network.to_owned())
                .or_default()
                .insert(server.to_owned(), record);
        });
    }

    pub fn mark_suspect(&self, network: &str, server: &str) {
        self.update(|d| {
            if let Some(r) = d.networks.get_mut(network).and_then(|m| m.get_mut(server)) {
                r.suspect = true;
            }
        });
    }

    fn update(&self, f: impl FnOnce(&mut MemoryData)) {
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut data);
        if let Some(path) = &self.path {
            let json = serde_json::to_vec_pretty(&*data).expect("state serialises");
            if let Err(e) = write_atomic(path, &json) {
                tracing::warn!(path = %path.display(), "cannot save learned intervals: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    use crate::error::ErrorKind;
    use crate::protocol::{FolderInfo, Session};

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn params(floor: u64, max: u64) -> Params {
        Params {
            floor: S(floor),
            max: S(max),
            response_timeout: S(5),
        }
    }

    /// Drive the pure search against a path that forgets flows idle for `nat` s or longer.
    fn simulate(p: Params, nat: Option<u64>) -> (Outcome, usize) {
        let mut s = Search::new(p);
        let mut rounds = 0;
        while !s.done() {
            rounds += 1;
            assert!(rounds < 40, "the search ends: {s:?}");
            let samples: Vec<Sample> = s
                .next_round()
                .into_iter()
                .map(|t| Sample {
                    idle: t,
                    survived: nat.is_none_or(|n| t < S(n)),
                })
                .collect();
            s.record(&samples);
        }
        (s.outcome(), rounds)
    }

    #[test]
    fn first_round_tests_floor_spread_and_max() {
        let s = Search::new(params(30, 120));
        assert_eq!(s.next_round(), vec![S(30), S(47), S(75), S(120)]);
    }

    #[test]
    fn brackets_the_timeout_and_keeps_a_margin() {
        for nat in [35, 45, 60, 90, 300, 600, 1500] {
            let (o, rounds) = simulate(params(30, 1740), Some(nat));
            let (lo, hi) = (o.survived.unwrap(), o.failed.unwrap());
            assert!(lo < S(nat) && hi >= S(nat), "{nat}: {o:?}");
            assert!(
                hi - lo <= (lo / 8).max(S(2)) || hi - lo <= S(1),
                "{nat}: {o:?}"
            );
            assert!(
                o.interval <= lo * 8 / 10 || o.interval == S(30),
                "{nat}: {o:?}"
            );
            assert!(o.interval >= S(30));
            assert!(rounds <= 8, "{nat}: {rounds} rounds");
        }
        // A gateway that keeps idle flows: 80 % of 29 minutes (the benchmark's figure).
        assert_eq!(simulate(params(30, 1740), None).0.interval, S(1392));
        // The testbed's case: 60 s NAT, 30 s floor → an interval in [40, 60).
        let (o, _) = simulate(params(30, 120), Some(60));
        assert!(o.interval >= S(40) && o.interval < S(60), "{o:?}");
    }

    #[test]
    fn no_timeout_grows_to_the_maximum() {
        let (o, rounds) = simulate(params(30, 90), None);
        assert_eq!(o.survived, Some(S(90)));
        assert_eq!(o.failed, None);
        assert_eq!(o.interval, S(72));
        assert_eq!(rounds, 2, "one search round, one confirmation round");
        assert!(o.sentence().contains("survived the longest test (90 s)"));
    }

    #[test]
    fn a_failed_confirmation_searches_again_below() {
        let mut s = Search::new(params(30, 120));
        s.record(&[
            Sample {
                idle: S(30),
                survived: true,
            },
            Sample {
                idle: S(47),
                survived: true,
            },
            Sample {
                idle: S(75),
                survived: false,
            },
        ]);
        // ... narrowed to [70, 75], then a confirmation of 70 fails: search again below 70.
        s.record(&[
            Sample {
                idle: S(52),
                survived: true,
            },
            Sample {
                idle: S(59),
                survived: true,
            },
            Sample {
                idle: S(70),
                survived: true,
            },
        ]);
        assert!(s.confirming(), "{s:?}");
        assert_eq!(s.next_round(), vec![S(70), S(70)]);
        s.record(&[Sample {
            idle: S(70),
            survived: false,
        }]);
        assert_eq!(s.bounds(), (None, Some(S(70))));
        assert_eq!(s.next_round()[0], S(30), "the floor is measured again");
        assert!(!s.done());
        // It goes on and settles below 66.
        for _ in 0..20 {
            if s.done() {
                break;
            }
            let round: Vec<Sample> = s
                .next_round()
                .into_iter()
                .map(|t| Sample {
                    idle: t,
                    survived: t < S(62),
                })
                .collect();
            s.record(&round);
        }
        let o = s.outcome();
        assert!(
            s.done() && o.survived.unwrap() < S(62) && o.failed.unwrap() <= S(70),
            "{o:?}"
        );
    }

    #[test]
    fn floor_failing_is_reported() {
        let (o, _) = simulate(params(30, 120), Some(20));
        assert_eq!((o.survived, o.failed), (None, Some(S(30))));
        assert_eq!(o.interval, S(30));
        assert!(o.sentence().contains("less than 30 s"), "{}", o.sentence());
    }

    #[test]
    fn progress_in_words() {
        let mut p = Progress {
            elapsed: S(75),
            testing: vec![S(30), S(40)],
            confirming: false,
            lo: Some(S(20)),
            hi: None,
            sample: None,
        };
        assert_eq!(p.clock(), "1:15");
        assert_eq!(
            p.describe(),
            "testing idle connections for 30, 40 s (kept: 20 s, forgotten: ?)"
        );
        p.confirming = true;
        assert!(
            p.describe()
                .starts_with("confirming with idle connections for 30, 40 s")
        );
        p.sample = Some(Sample {
            idle: S(40),
            survived: false,
        });
        assert_eq!(p.describe(), "  idle 40 s: no answer (forgotten)");
    }

    #[test]
    fn sentences() {
        let mut o = Outcome {
            survived: Some(S(40)),
            failed: Some(S(45)),
            interval: S(32),
            server_keepalive: false,
        };
        assert_eq!(
            o.sentence(),
            "This network forgets idle connections after between 40 and 45 s; a keep-alive every 32 s is safe."
        );
        o.server_keepalive = true;
        o.interval = S(72);
        assert!(o.sentence().contains("but the server's own keep-alives during IDLE keep them open; a keep-alive every 72 s is safe."));
    }

    /// A gateway that forgets flows idle for `nat` (tokio clock), and a login limit.
    #[derive(Clone)]
    struct Path {
        nat: Option<Duration>,
        /// The server sends by itself in IDLE more often than `nat`.
        server_keepalive: bool,
        max_logins: usize,
        open: Arc<Mutex<usize>>,
        opened: Arc<Mutex<usize>>,
    }

    struct FakeProbe {
        since: Instant,
        nat: Option<Duration>,
        open: Arc<Mutex<usize>>,
    }

    impl Drop for FakeProbe {
        fn drop(&mut self) {
            *self.open.lock().unwrap() -= 1;
        }
    }

    #[async_trait]
    impl Probe for FakeProbe {
        async fn ping(&mut self) -> Result<(), ProtoError> {
            if self.nat.is_some_and(|n| self.since.elapsed() >= n) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.since = Instant::now();
            Ok(())
        }
        async fn close(self: Box<Self>) {}
    }

    #[async_trait]
    impl Connector for Path {
        async fn open(&self, _: &str) -> Result<(Box<dyn Session>, FolderInfo), ProtoError> {
            unimplemented!()
        }
        async fn open_probe(&self) -> Result<Box<dyn Probe>, ProtoError> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut open = self.open.lock().unwrap();
            if *open >= self.max_logins {
                return Err(ProtoError::new(
                    ErrorKind::Disconnected,
                    "Maximum number of connections from user+IP exceeded",
                ));
            }
            *open += 1;
            *self.opened.lock().unwrap() += 1;
            Ok(Box::new(FakeProbe {
                since: Instant::now(),
                nat: self.nat,
                open: self.open.clone(),
            }))
        }
        async fn open_idle_probe(&self, _folder: &str) -> Result<Box<dyn Probe>, ProtoError> {
            *self.open.lock().unwrap() += 1;
            Ok(Box::new(FakeProbe {
                since: Instant::now(),
                nat: if self.server_keepalive {
                    None
                } else {
                    self.nat
                },
                open: self.open.clone(),
            }))
        }
    }

    fn path(nat: Option<u64>, max_logins: usize) -> Path {
        Path {
            nat: nat.map(S),
            server_keepalive: false,
            max_logins,
            open: Arc::default(),
            opened: Arc::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn measures_a_60_s_gateway_in_bounded_time() {
        let p = path(Some(60), 10);
        let started = Instant::now();
        let mut reports = Vec::new();
        let o = measure(&p, params(30, 120), None, |r| reports.push(r.clone()))
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            o.survived.unwrap() < S(60) && o.failed.unwrap() >= S(60),
            "{o:?}"
        );
        assert!(o.interval >= S(40) && o.interval < S(60), "{o:?}");
        assert!(took < S(6 * 60), "took {took:?}");
        assert!(reports.iter().any(|r| r.confirming), "{reports:?}");
        assert_eq!(*p.open.lock().unwrap(), 0, "every probe connection closed");
        assert!(*p.opened.lock().unwrap() <= 12);
    }

    #[tokio::test(start_paused = true)]
    async fn server_keepalives_in_idle_are_measured_and_relied_on() {
        let mut p = path(Some(45), 10);
        let plain = measure(&p, params(30, 90), Some("INBOX"), |_| {})
            .await
            .unwrap();
        assert!(!plain.server_keepalive, "{plain:?}");
        assert!(plain.interval < S(45), "{plain:?}");
        p.server_keepalive = true;
        let started = Instant::now();
        let o = measure(&p, params(30, 90), Some("INBOX"), |_| {})
            .await
            .unwrap();
        assert!(o.server_keepalive, "{o:?}");
        assert!(
            o.survived.unwrap() < S(45) && o.failed.unwrap() >= S(45),
            "{o:?}"
        );
        assert_eq!(o.interval, S(72));
        assert!(started.elapsed() < S(5 * 60), "{:?}", started.elapsed());
        assert_eq!(*p.open.lock().unwrap(), 0, "every probe connection closed");
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeout_takes_three_maxima_at_most() {
        let p = path(None, 10);
        let started = Instant::now();
        let o = measure(&p, params(30, 90), None, |_| {}).await.unwrap();
        assert_eq!(
            (o.survived, o.failed, o.interval),
            (Some(S(90)), None, S(72))
        );
        assert!(started.elapsed() < S(3 * 90), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn second_login_refused_skips_learning() {
        // The main session holds the only allowed connection.
        let p = path(Some(60), 1);
        *p.open.lock().unwrap() = 1;
        let e = measure(&p, params(30, 120), None, |_| {})
            .await
            .unwrap_err();
        assert!(e.message.contains("Maximum number"), "{e}");
    }

    #[test]
    fn memory_persists_per_network_and_forgets_suspects() {
        let dir = tempfile::tempdir().unwrap();
        let m = Memory::open(dir.path());
        let r = Record {
            interval_secs: 48,
            survived_secs: Some(60),
            failed_secs: Some(66),
            suspect: false,
            server_keepalive: false,
            learned: "now".into(),
        };
        m.set("gw 10.0.0.1 dev wlan0", "a@h:993", r.clone());
        let again = Memory::open(dir.path());
        assert_eq!(again.get("gw 10.0.0.1 dev wlan0", "a@h:993"), Some(r));
        assert_eq!(again.get("gw 10.0.0.2 dev wlan0", "a@h:993"), None);
        again.mark_suspect("gw 10.0.0.1 dev wlan0", "a@h:993");
        assert_eq!(
            Memory::open(dir.path()).get("gw 10.0.0.1 dev wlan0", "a@h:993"),
            None
        );
    }
}
