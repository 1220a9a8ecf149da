//! The two streams that connect the engine to everything else: [`Event`]s flow out of the engine
//! (to the headless printer, the tray, the toasts), [`Command`]s flow into it.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::config::Config;
use crate::error::ErrorKind;

/// How well an account (or one of its folders) is connected.
///
/// The variants are ordered so that the *worst* state is the smallest: an account's state is the
/// minimum over its folders, the agent's state the minimum over its accounts ("the worst wins").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connectivity {
    /// The last attempt failed; the engine is waiting to retry.
    Error,
    /// The server asked to wait (HTTP 429/503 with `Retry-After`); the engine asks again when
    /// that time has passed. Not an error: nothing is wrong with the connection or the account.
    Throttled,
    /// Connecting, logging in or opening the folder.
    Connecting,
    /// Connected and busy: catching up or running a keep-alive query.
    Working,
    /// Connected and waiting for the server to push (IDLE) or for the next poll.
    Idle,
}

impl fmt::Display for Connectivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connectivity::Error => "error",
            Connectivity::Throttled => "throttled",
            Connectivity::Connecting => "connecting",
            Connectivity::Working => "working",
            Connectivity::Idle => "idle",
        })
    }
}

/// One message as the "last inbox item" query or a catch-up fetch sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailItem {
    pub uid: u32,
    /// `Name <address>` (or just the address) of the first From, decoded from RFC 2047.
    pub from: String,
    /// Decoded subject, empty when the message has none.
    pub subject: String,
    /// The server's INTERNALDATE (when the message arrived).
    pub date: Option<DateTime<FixedOffset>>,
    /// True when the message already carries `\Seen`.
    pub seen: bool,
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An account's aggregated state changed (worst folder wins).
    Connectivity {
        account: String,
        state: Connectivity,
    },
    /// A folder session is open and its baseline is known.
    Connected {
        account: String,
        folder: String,
        /// Messages in the folder when it was opened.
        exists: u32,
        uid_validity: u32,
    },
    /// A message arrived. Emitted exactly once per (account, folder, UIDVALIDITY, UID).
    NewMail {
        account: String,
        folder: String,
        uid_validity: u32,
        item: MailItem,
    },
    /// Mail that arrived while mailpulse was not running: one summary instead of a flood.
    MissedMail {
        account: String,
        folder: String,
        count: u32,
        newest: MailItem,
        /// Mail that arrived while mailpulse was not running (`true`), or the part of a
        /// catch-up beyond the messages announced one by one (`false`).
        offline: bool,
    },
    /// A keep-alive query went out and its answer came back.
    KeepAlive {
        account: String,
        folder: String,
        round_trip: Duration,
    },
    /// Something failed. Reported once per episode, not on every retry.
    Error {
        account: String,
        kind: ErrorKind,
        message: String,
    },
    /// A failure episode ended: the account is connected again.
    Recovered { account: String },
    /// Adaptive keep-alive: the account now runs at `interval` on `network`, measured just now
    /// or remembered from before. `survived`/`failed` bracket the network's idle timeout
    /// (`failed` is `None` when the longest test survived).
    Learned {
        account: String,
        network: String,
        interval: Duration,
        survived: Option<Duration>,
        failed: Option<Duration>,
        /// The interval relies on the server's own keep-alives during IDLE (measured).
        server_keepalive: bool,
    },
    /// Adaptive keep-alive: the session died idle at the learned interval; back to the floor
    /// (`interval`) at once while the network is measured again.
    Relearning {
        account: String,
        network: String,
        interval: Duration,
    },
}

/// What the engine can be told, at any moment (also in the middle of an IDLE).
#[derive(Debug, Clone)]
pub enum Command {
    /// The patent's "Enable Firewall Keep-Alive" switch.
    #[cfg_attr(not(feature = "desktop"), allow(dead_code))] // used by the desktop shell
    SetKeepAlive(bool),
    /// Initiate now: run the last-item query on every session, reconnect at once where one is dead.
    /// The user's own request ("Check now", SIGUSR1): an account whose password was rejected
    /// may try once more, at most once a minute.
    CheckNow,
    /// The same initiation, sent by the wake sources (a network change, a resume): never a
    /// login to an account whose password was rejected (a laptop on flaky Wi-Fi would retry it
    /// on every change and get the account locked).
    Wake,
    /// The stored credentials may have changed (the settings window closed): an account whose
    /// logins are blocked after a rejected password looks at its keyring entry again and logs
    /// in at once when it holds another password. Nothing else happens.
    #[cfg_attr(not(feature = "desktop"), allow(dead_code))] // sent by the desktop shell
    CheckCredentials,
    /// Apply a new, already validated configuration without restarting.
    Reload(Box<Config>),
    /// Log out everywhere and stop.
    Quit,
}
