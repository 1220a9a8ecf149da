//! Jittered exponential backoff: 1 s doubling to a 5-minute cap; at least 10 minutes after the
//! server rejected the credentials (retrying a wrong password sooner only gets the account locked).

use std::time::Duration;

use crate::error::ErrorKind;

pub const FIRST: Duration = Duration::from_secs(1);
pub const CAP: Duration = Duration::from_secs(5 * 60);
pub const AUTH_MIN: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    rng: fastrand::Rng,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Backoff {
            next: FIRST,
            rng: fastrand::Rng::new(),
        }
    }

    /// A backoff whose jitter is reproducible (for tests).
    #[cfg(test)]
    pub fn with_seed(seed: u64) -> Self {
        Backoff {
            next: FIRST,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay before the next attempt after a failure of `kind`.
    ///
    /// The delay is drawn from [base/2, base] ("equal jitter") so that many agents behind one
    /// gateway that lost its link do not all reconnect in the same second.
    pub fn next_delay(&mut self, kind: ErrorKind) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(CAP);
        let half = base / 2;
        let jitter = Duration::from_millis(self.rng.u64(0..=half.as_millis() as u64));
        let delay = half + jitter;
        if kind == ErrorKind::Auth {
            delay.max(AUTH_MIN)
        } else {
            delay
        }
    }

    /// A session came up: the next failure starts from the first step again.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::with_seed(7);
        let mut base = FIRST;
        for _ in 0..20 {
            let d = b.next_delay(ErrorKind::Connect);
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
            base = (base * 2).min(CAP);
        }
        assert_eq!(base, CAP);
        b.reset();
        assert!(b.next_delay(ErrorKind::Connect) <= FIRST);
    }

    #[test]
    fn auth_failures_wait_at_least_ten_minutes() {
        let mut b = Backoff::with_seed(1);
        for _ in 0..12 {
            assert!(b.next_delay(ErrorKind::Auth) >= AUTH_MIN);
        }
    }

    #[test]
    fn jitter_spreads_agents() {
        let delays: std::collections::HashSet<_> = (0..20)
            .map(|seed| {
                let mut b = Backoff::with_seed(seed);
                b.next_delay(ErrorKind::Connect);
                b.next_delay(ErrorKind::Connect).as_millis()
            })
            .collect();
        assert!(delays.len() > 10, "jitter too weak: {delays:?}");
    }
}
