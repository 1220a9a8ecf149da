//! What the desktop shows as notifications ("toasts"), decided without any GUI: one toast per
//! new message, bursts coalesced, errors only after a grace period and once per episode, a
//! "connection restored" toast when an announced failure heals, and no toast twice for the same
//! message. The desktop adapter turns [`Action`]s into real notifications; this module is tested
//! on its own with explicit instants.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{Event, MailItem};

/// More than [`BURST_LIMIT`] messages within this window become one toast.
pub const BURST_WINDOW: Duration = Duration::from_secs(2);
pub const BURST_LIMIT: usize = 3;
/// How many subjects a coalesced toast lists.
pub const BURST_LISTED: usize = 5;
/// How many announced messages are remembered for dedupe.
const REMEMBERED: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToastKind {
    /// New mail (category `email.arrived`); clicking it opens the mail client.
    Mail,
    /// A connection problem (category `network.error`).
    Error,
    /// An announced problem healed (category `network.connected`).
    Restored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toast {
    pub kind: ToastKind,
    pub summary: String,
    pub body: String,
    /// The account the toast is about (for the click action), if one.
    pub account: Option<String>,
}

/// `text` as literal text inside the body markup of the Desktop Notifications spec (a subset of
/// XML that servers announcing `body-markup` — dunst, GNOME Shell, KDE Plasma — render): `&`, `<`,
/// `>` and both quotes become entities, so a subject such as `<a href=…>` or `<b>` shows as
/// typed instead of becoming a link or bold text. Only for servers that render markup: the others
/// show the body as it is, and the platforms' own toasts (Windows, macOS) take plain text.
#[cfg_attr(not(freedesktop), allow(dead_code))]
pub fn escape_body_markup(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// What the adapter must do. `slot` identifies a toast for later updates and closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Show { slot: u64, toast: Toast },
    Update { slot: u64, toast: Toast },
    Close { slot: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToastSettings {
    pub show_errors: bool,
    pub error_grace: Duration,
    /// Name the account in mail toasts (when there are several).
    pub name_accounts: bool,
}

impl Default for ToastSettings {
    fn default() -> Self {
        ToastSettings {
            show_errors: true,
            error_grace: Duration::from_secs(300),
            name_accounts: false,
        }
    }
}

#[derive(Debug)]
struct Burst {
    started: Instant,
    /// (from, subject) of every message in the burst.
    items: Vec<(String, String)>,
    /// Individual toasts shown in this burst (closed when it is coalesced).
    shown: Vec<u64>,
    coalesced: Option<(u64, Option<String>)>,
}

#[derive(Debug)]
struct Episode {
    since: Instant,
    message: String,
    shown: Option<u64>,
}

#[derive(Debug)]
pub struct ToastPolicy {
    settings: ToastSettings,
    announced: HashSet<(String, String, u32, u32)>,
    announced_order: VecDeque<(String, String, u32, u32)>,
    burst: Option<Burst>,
    episodes: HashMap<String, Episode>,
    next_slot: u64,
}

impl ToastPolicy {
    pub fn new(settings: ToastSettings) -> Self {
        ToastPolicy {
            settings,
            announced: HashSet::new(),
            announced_order: VecDeque::new(),
            burst: None,
            episodes: HashMap::new(),
            next_slot: 0,
        }
    }

    pub fn set_settings(&mut self, settings: ToastSettings) {
        if !settings.show_errors {
            self.episodes.retain(|_, e| e.shown.is_some());
        }
        self.settings = settings;
    }

    fn slot(&mut self) -> u64 {
        self.next_slot += 1;
        self.next_slot
    }

    /// React to an engine event.
    pub fn on_event(&mut self, event: &Event, now: Instant) -> Vec<Action> {
        match event {
            Event::NewMail {
                account,
                folder,
                uid_validity,
                item,
            } => {
                if !self.remember(account, folder, *uid_validity, item.uid) {
                    return Vec::new();
                }
                self.mail(account, item, now)
            }
            Event::MissedMail {
                account,
                folder,
                count,
                newest,
                offline,
            } => {
                let slot = self.slot();
                let _ = folder;
                let messages = if *count == 1 {
                    "1 new message".to_owned()
                } else {
                    format!("{count} new messages")
                };
                vec![Action::Show {
                    slot,
                    toast: Toast {
                        kind: ToastKind::Mail,
                        summary: if *offline {
                            format!("{messages} while mailpulse was off")
                        } else if *count == 1 {
                            // Beyond the messages just announced one by one.
                            "1 more new message".to_owned()
                        } else {
                            format!("{count} more new messages")
                        },
                        body: format!(
                            "Newest: {} — {}",
                            newest.from,
                            subject_or_none(&newest.subject)
                        ),
                        account: Some(account.clone()),
                    },
                }]
            }
            Event::Error {
                account, message, ..
            } => {
                if self.settings.show_errors {
                    let episode = self.episodes.entry(account.clone()).or_insert(Episode {
                        since: now,
                        message: message.clone(),
                        shown: None,
                    });
                    if episode.shown.is_none() {
                        episode.message = message.clone();
                    }
                }
                self.tick(now)
            }
            Event::Recovered { account } => match self.episodes.remove(account) {
                Some(Episode {
                    shown: Some(error_slot),
                    ..
                }) => {
                    let slot = self.slot();
                    vec![
                        Action::Close { slot: error_slot },
                        Action::Show {
                            slot,
                            toast: Toast {
                                kind: ToastKind::Restored,
                                summary: "Connection restored".into(),
                                body: format!(
                                    "{account} is connected again; new mail will be shown."
                                ),
                                account: Some(account.clone()),
                            },
                        },
                    ]
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Error toasts whose grace period has run out by `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let grace = self.settings.error_grace;
        let due: Vec<String> = self
            .episodes
            .iter()
            .filter(|(_, e)| e.shown.is_none() && now >= e.since + grace)
            .map(|(a, _)| a.clone())
            .collect();
        let mut actions = Vec::new();
        for account in due {
            let slot = self.slot();
            let episode = self.episodes.get_mut(&account).expect("listed above");
            episode.shown = Some(slot);
            actions.push(Action::Show {
                slot,
                toast: Toast {
                    kind: ToastKind::Error,
                    summary: format!("{account}: no connection"),
                    body: episode.message.clone(),
                    account: Some(account),
                },
            });
        }
        actions
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.episodes
            .values()
            .filter(|e| e.shown.is_none())
            .map(|e| e.since + self.settings.error_grace)
            .min()
    }

    fn remember(&mut self, account: &str, folder: &str, uid_validity: u32, uid: u32) -> bool {
        let key = (account.to_owned(), folder.to_owned(), uid_validity, uid);
        if !self.announced.insert(key.clone()) {
            return false;
        }
        self.announced_order.push_back(key);
        if self.announced_order.len() > REMEMBERED
            && let Some(old) = self.announced_order.pop_front()
        {
            self.announced.remove(&old);
        }
        true
    }

    fn mail(&mut self, account: &str, item: &MailItem, now: Instant) -> Vec<Action> {
        if self
            .burst
            .as_ref()
            .is_none_or(|b| now.duration_since(b.started) > BURST_WINDOW)
        {
            self.burst = Some(Burst {
                started: now,
                items: Vec::new(),
                shown: Vec::new(),
                coalesced: None,
            });
        }
        let name_accounts = self.settings.name_accounts;
        let slot = self.slot();
        let burst = self.burst.as_mut().expect("just set");
        burst.items.push((item.from.clone(), item.subject.clone()));
        if burst.items.len() <= BURST_LIMIT {
            burst.shown.push(slot);
            let subject = subject_or_none(&item.subject);
            return vec![Action::Show {
                slot,
                toast: Toast {
                    kind: ToastKind::Mail,
                    summary: if item.from.is_empty() {
                        "(unknown sender)".into()
                    } else {
                        item.from.clone()
                    },
                    body: if name_accounts {
                        format!("{subject}\n{account}")
                    } else {
                        subject
                    },
                    account: Some(account.to_owned()),
                },
            }];
        }
        // Coalesce: close the individual toasts of this burst, show (or update) one summary.
        let mut actions: Vec<Action> = burst
            .shown
            .drain(..)
            .map(|slot| Action::Close { slot })
            .collect();
        let toast_account = match &burst.coalesced {
            None => Some(account.to_owned()),
            Some((_, a)) if a.as_deref() == Some(account) => a.clone(),
            Some(_) => None,
        };
        let mut lines: Vec<String> = burst
            .items
            .iter()
            .take(BURST_LISTED)
            .map(|(from, subject)| format!("{} — {}", short_sender(from), subject_or_none(subject)))
            .collect();
        if burst.items.len() > BURST_LISTED {
            lines.push(format!("and {} more", burst.items.len() - BURST_LISTED));
        }
        let toast = Toast {
            kind: ToastKind::Mail,
            summary: format!("{} new messages", burst.items.len()),
            body: lines.join("\n"),
            account: toast_account.clone(),
        };
        match burst.coalesced {
            Some((slot, _)) => {
                burst.coalesced = Some((slot, toast_account));
                actions.push(Action::Update { slot, toast });
            }
            None => {
                burst.coalesced = Some((slot, toast_account));
                actions.push(Action::Show { slot, toast });
            }
        }
        actions
    }
}

fn subject_or_none(subject: &str) -> String {
    if subject.trim().is_empty() {
        "(no subject)".into()
    } else {
        subject.to_owned()
    }
}

/// "Bob Builder <bob@example.org>" → "Bob Builder".
fn short_sender(from: &str) -> &str {
    match from.find(" <") {
        Some(i) if i > 0 => from[..i].trim_matches('"'),
        _ => from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn settings() -> ToastSettings {
        ToastSettings {
            show_errors: true,
            error_grace: Duration::from_secs(300),
            name_accounts: false,
        }
    }

    fn mail(uid: u32, subject: &str) -> Event {
        Event::NewMail {
            account: "work".into(),
            folder: "INBOX".into(),
            uid_validity: 1,
            item: MailItem {
                uid,
                from: format!("Sender {uid} <s{uid}@example.org>"),
                subject: subject.into(),
                date: None,
                seen: false,
            },
        }
    }

    fn shows(actions: &[Action]) -> Vec<&Toast> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Show { toast, .. } => Some(toast),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn body_markup_is_escaped_to_literal_text() {
        assert_eq!(
            escape_body_markup(r#"<b>Win</b> & <a href="http://x.example/?a=1&b='2'">here</a>"#),
            "&lt;b&gt;Win&lt;/b&gt; &amp; &lt;a href=&quot;http://x.example/?a=1&amp;b=&apos;2&apos;&quot;&gt;here&lt;/a&gt;"
        );
        assert_eq!(
            escape_body_markup("lunch?\nwork — ünïcode"),
            "lunch?\nwork — ünïcode"
        );
        // Escaping is not undone by escaping again: an entity in a subject stays literal too.
        assert_eq!(escape_body_markup("&amp;"), "&amp;amp;");
    }

    #[test]
    fn one_toast_per_message_with_sender_and_subject_and_never_twice() {
        let mut p = ToastPolicy::new(settings());
        let t = Instant::now();
        let a = p.on_event(&mail(7, "lunch?"), t);
        assert_eq!(
            a,
            [Action::Show {
                slot: 1,
                toast: Toast {
                    kind: ToastKind::Mail,
                    summary: "Sender 7 <s7@example.org>".into(),
                    body: "lunch?".into(),
                    account: Some("work".into()),
                }
            }]
        );
        assert!(
            p.on_event(&mail(7, "lunch?"), t + Duration::from_secs(10))
                .is_empty()
        );
        // Same UID after a UIDVALIDITY change is a different message.
        let mut other = mail(7, "new folder");
        if let Event::NewMail { uid_validity, .. } = &mut other {
            *uid_validity = 2;
        }
        assert_eq!(
            shows(&p.on_event(&other, t + Duration::from_secs(20))).len(),
            1
        );
        // The same UID in another folder or another account is another message too; each
        // once.
        for (n, (account, folder)) in [("work", "Lists"), ("home", "INBOX")]
            .into_iter()
            .enumerate()
        {
            let mut elsewhere = mail(7, "elsewhere");
            if let Event::NewMail {
                account: a,
                folder: f,
                ..
            } = &mut elsewhere
            {
                *a = account.into();
                *f = folder.into();
            }
            let at = t + Duration::from_secs(30 + 10 * n as u64);
            assert_eq!(
                shows(&p.on_event(&elsewhere, at)).len(),
                1,
                "{account}/{folder}"
            );
            assert!(
                p.on_event(&elsewhere, at + Duration::from_secs(5))
                    .is_empty()
            );
        }
    }

    #[test]
    fn several_accounts_name_the_account() {
        let mut p = ToastPolicy::new(ToastSettings {
            name_accounts: true,
            ..settings()
        });
        let a = p.on_event(&mail(1, ""), Instant::now());
        assert_eq!(shows(&a)[0].body, "(no subject)\nwork");
    }

    /// A summary says whether the mail came while mailpulse was off or is the rest of a big
    /// catch-up whose first messages were just shown one by one.
    #[test]
    fn summaries_say_where_the_mail_comes_from() {
        let summary = |count: u32, offline: bool| {
            let Event::NewMail { item, .. } = mail(9, "last") else {
                unreachable!()
            };
            let event = Event::MissedMail {
                account: "work".into(),
                folder: "INBOX".into(),
                count,
                newest: item,
                offline,
            };
            let actions = ToastPolicy::new(settings()).on_event(&event, Instant::now());
            shows(&actions)[0].summary.clone()
        };
        assert_eq!(summary(1, true), "1 new message while mailpulse was off");
        assert_eq!(summary(12, true), "12 new messages while mailpulse was off");
        assert_eq!(summary(1, false), "1 more new message");
        assert_eq!(summary(99800, false), "99800 more new messages");
    }

    #[test]
    fn bursts_become_one_toast() {
        let mut p = ToastPolicy::new(settings());
        let t = Instant::now();
        let mut all = Vec::new();
        for uid in 1..=5 {
            all.extend(p.on_event(
                &mail(uid, &format!("s{uid}")),
                t + Duration::from_millis(100 * uid as u64),
            ));
        }
        // Three individual toasts, then closed and replaced by one summary, updated to five.
        assert_eq!(shows(&all).len(), 4);
        let closed: Vec<_> = all
            .iter()
            .filter(|a| matches!(a, Action::Close { .. }))
            .collect();
        assert_eq!(closed.len(), 3);
        let Some(Action::Update { slot, toast }) = all.last() else {
            panic!("{all:?}")
        };
        assert_eq!(*slot, 4);
        assert_eq!(toast.summary, "5 new messages");
        assert_eq!(
            toast.body,
            "Sender 1 — s1\nSender 2 — s2\nSender 3 — s3\nSender 4 — s4\nSender 5 — s5"
        );
        // After the window, single toasts again.
        let later = p.on_event(&mail(6, "quiet again"), t + Duration::from_secs(5));
        assert_eq!(shows(&later)[0].body, "quiet again");
    }

    #[test]
    fn errors_wait_for_the_grace_period_and_show_once_per_episode() {
        let mut p = ToastPolicy::new(settings());
        let t = Instant::now();
        let err = |m: &str| Event::Error {
            account: "work".into(),
            kind: ErrorKind::Timeout,
            message: m.into(),
        };
        assert!(p.on_event(&err("no answer"), t).is_empty());
        assert_eq!(p.next_deadline(), Some(t + Duration::from_secs(300)));
        assert!(p.tick(t + Duration::from_secs(299)).is_empty());
        assert!(
            p.on_event(&err("refused"), t + Duration::from_secs(200))
                .is_empty()
        );
        let shown = p.tick(t + Duration::from_secs(300));
        assert_eq!(shows(&shown)[0].summary, "work: no connection");
        assert_eq!(shows(&shown)[0].body, "refused", "the latest message");
        assert!(
            p.tick(t + Duration::from_secs(900)).is_empty(),
            "once per episode"
        );
        assert!(
            p.on_event(&err("still down"), t + Duration::from_secs(901))
                .is_empty()
        );
        let healed = p.on_event(
            &Event::Recovered {
                account: "work".into(),
            },
            t + Duration::from_secs(1000),
        );
        assert_eq!(healed[0], Action::Close { slot: 1 });
        assert_eq!(shows(&healed)[0].summary, "Connection restored");
    }

    #[test]
    fn short_failures_and_disabled_errors_stay_silent() {
        let mut p = ToastPolicy::new(settings());
        let t = Instant::now();
        let err = Event::Error {
            account: "work".into(),
            kind: ErrorKind::Disconnected,
            message: "reset".into(),
        };
        p.on_event(&err, t);
        assert!(
            p.on_event(
                &Event::Recovered {
                    account: "work".into()
                },
                t + Duration::from_secs(3)
            )
            .is_empty()
        );
        assert!(p.tick(t + Duration::from_secs(600)).is_empty());

        let mut p = ToastPolicy::new(ToastSettings {
            show_errors: false,
            ..settings()
        });
        p.on_event(&err, t);
        assert!(p.tick(t + Duration::from_secs(600)).is_empty());
        assert_eq!(p.next_deadline(), None);
    }
}
