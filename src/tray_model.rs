//! What the tray shows — icon, unread count, tooltip — derived from engine events, without any
//! GUI, so it is tested on its own. The desktop adapter only renders it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Local};

use crate::event::{Connectivity, Event};
use crate::icons::IconState;

#[derive(Debug, Clone, Default)]
struct AccountView {
    state: Option<Connectivity>,
    last_keepalive: Option<(DateTime<Local>, Duration)>,
    last_error: Option<String>,
    /// Adaptive keep-alive: the interval learned for the current network (`None`: learning).
    learned: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct TrayModel {
    accounts: BTreeMap<String, AccountView>,
    keepalive: bool,
    unread: u32,
    /// A problem that is not any account's (e.g. the config file does not parse).
    pub general_error: Option<String>,
}

impl TrayModel {
    pub fn new(accounts: impl IntoIterator<Item = String>, keepalive: bool) -> Self {
        TrayModel {
            accounts: accounts
                .into_iter()
                .map(|a| (a, AccountView::default()))
                .collect(),
            keepalive,
            unread: 0,
            general_error: None,
        }
    }

    /// After a config reload: keep what is known of accounts that stay.
    pub fn set_accounts(&mut self, accounts: impl IntoIterator<Item = String>) {
        let mut next = BTreeMap::new();
        for name in accounts {
            let view = self.accounts.remove(&name).unwrap_or_default();
            next.insert(name, view);
        }
        self.accounts = next;
    }

    pub fn set_keepalive(&mut self, on: bool) {
        self.keepalive = on;
    }

    pub fn keepalive(&self) -> bool {
        self.keepalive
    }

    /// The user looked (opened the mail client, clicked a toast).
    pub fn mark_read(&mut self) {
        self.unread = 0;
    }

    pub fn apply(&mut self, event: &Event, now: DateTime<Local>) {
        match event {
            Event::Connectivity { account, state } => {
                let view = self.accounts.entry(account.clone()).or_default();
                view.state = Some(*state);
            }
            Event::NewMail { .. } => self.unread = self.unread.saturating_add(1),
            Event::MissedMail { count, .. } => self.unread = self.unread.saturating_add(*count),
            Event::KeepAlive {
                account,
                round_trip,
                ..
            } => {
                self.accounts
                    .entry(account.clone())
                    .or_default()
                    .last_keepalive = Some((now, *round_trip));
            }
            Event::Error {
                account, message, ..
            } => {
                self.accounts.entry(account.clone()).or_default().last_error =
                    Some(message.clone());
            }
            Event::Recovered { account } => {
                self.accounts.entry(account.clone()).or_default().last_error = None;
            }
            Event::Learned {
                account, interval, ..
            } => {
                self.accounts.entry(account.clone()).or_default().learned = Some(*interval);
            }
            Event::Relearning { account, .. } => {
                self.accounts.entry(account.clone()).or_default().learned = None;
            }
            Event::Connected { .. } => {}
        }
    }

    /// The worst state over all accounts (`None` without accounts).
    pub fn worst(&self) -> Option<Connectivity> {
        self.accounts
            .values()
            .map(|a| a.state.unwrap_or(Connectivity::Connecting))
            .min()
    }

    /// Error beats new mail beats keep-alive off beats connecting beats connected.
    pub fn icon(&self) -> IconState {
        if self.general_error.is_some()
            || self.accounts.is_empty()
            || self.worst() == Some(Connectivity::Error)
        {
            return IconState::Error;
        }
        if self.unread > 0 {
            return IconState::NewMail(self.unread);
        }
        if !self.keepalive {
            return IconState::KeepAliveOff;
        }
        match self.worst() {
            // Throttled: waiting for the server's permission to ask again, like connecting.
            Some(Connectivity::Connecting | Connectivity::Throttled) => IconState::Connecting,
            _ => IconState::Connected,
        }
    }

    pub fn tooltip(&self) -> String {
        let mut lines = Vec::new();
        if let Some(e) = &self.general_error {
            lines.push(e.clone());
        }
        if self.accounts.is_empty() {
            lines.push("No account yet: open Settings to add one.".into());
        }
        if self.unread > 0 {
            lines.push(format!(
                "{} new message{}",
                self.unread,
                if self.unread == 1 { "" } else { "s" }
            ));
        }
        if !self.keepalive {
            lines.push("Keep-alive is off.".into());
        }
        for (name, view) in &self.accounts {
            let state = match view.state {
                None | Some(Connectivity::Connecting) => "connecting",
                Some(Connectivity::Working) | Some(Connectivity::Idle) => "connected",
                Some(Connectivity::Error) => "no connection",
                Some(Connectivity::Throttled) => {
                    "throttled by the server (asks again when it allows)"
                }
            };
            let mut line = format!("{name}: {state}");
            if let Some((at, rtt)) = view.last_keepalive {
                line += &format!(
                    ", last keep-alive {} ({} ms)",
                    at.format("%H:%M:%S"),
                    rtt.as_millis()
                );
            }
            if let Some(interval) = view.learned {
                line += &format!(", keep-alive every {} s (learned)", interval.as_secs());
            }
            if let Some(err) = &view.last_error {
                line += &format!("\n  last error: {err}");
            }
            lines.push(line);
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::event::MailItem;

    fn state(account: &str, state: Connectivity) -> Event {
        Event::Connectivity {
            account: account.into(),
            state,
        }
    }

    #[test]
    fn the_icon_follows_the_worst_state_and_unread_mail() {
        let now = Local::now();
        let mut m = TrayModel::new(["work".to_string(), "home".to_string()], true);
        assert_eq!(m.icon(), IconState::Connecting);
        m.apply(&state("work", Connectivity::Idle), now);
        assert_eq!(m.icon(), IconState::Connecting, "home is still connecting");
        m.apply(&state("home", Connectivity::Idle), now);
        assert_eq!(m.icon(), IconState::Connected);
        m.apply(
            &Event::NewMail {
                account: "work".into(),
                folder: "INBOX".into(),
                uid_validity: 1,
                item: MailItem {
                    uid: 1,
                    from: "a".into(),
                    subject: "b".into(),
                    date: None,
                    seen: false,
                },
            },
            now,
        );
        assert_eq!(m.icon(), IconState::NewMail(1));
        m.apply(&state("home", Connectivity::Error), now);
        assert_eq!(m.icon(), IconState::Error, "errors beat new mail");
        m.apply(&state("home", Connectivity::Idle), now);
        m.mark_read();
        m.set_keepalive(false);
        assert_eq!(m.icon(), IconState::KeepAliveOff);
        assert!(m.tooltip().contains("Keep-alive is off."));
    }

    #[test]
    fn tooltip_says_state_last_keepalive_and_last_error_per_account() {
        let now = Local::now();
        let mut m = TrayModel::new(["work".to_string()], true);
        m.apply(&state("work", Connectivity::Idle), now);
        m.apply(
            &Event::KeepAlive {
                account: "work".into(),
                folder: "INBOX".into(),
                round_trip: Duration::from_millis(14),
            },
            now,
        );
        m.apply(
            &Event::Error {
                account: "work".into(),
                kind: ErrorKind::Timeout,
                message: "no answer within 20 s".into(),
            },
            now,
        );
        let t = m.tooltip();
        assert!(
            t.starts_with(&format!(
                "work: connected, last keep-alive {} (14 ms)",
                now.format("%H:%M:%S")
            )),
            "{t}"
        );
        assert!(t.contains("last error: no answer within 20 s"), "{t}");
        m.apply(
            &Event::Learned {
                account: "work".into(),
                network: "gw 10.0.0.1 dev eth0".into(),
                interval: Duration::from_secs(48),
                survived: Some(Duration::from_secs(60)),
                failed: Some(Duration::from_secs(66)),
                server_keepalive: false,
            },
            now,
        );
        assert!(
            m.tooltip()
                .contains("(14 ms), keep-alive every 48 s (learned)"),
            "{}",
            m.tooltip()
        );
        m.apply(
            &Event::Relearning {
                account: "work".into(),
                network: "gw 10.0.0.1 dev eth0".into(),
                interval: Duration::from_secs(30),
            },
            now,
        );
        assert!(!m.tooltip().contains("learned"));
        m.apply(
            &Event::Recovered {
                account: "work".into(),
            },
            now,
        );
        assert!(!m.tooltip().contains("last error"));
        assert_eq!(
            TrayModel::new(Vec::<String>::new(), true).icon(),
            IconState::Error
        );
    }
}
