//! Exchange Web Services: SOAP over HTTPS behind the same [`Connector`]/[`Session`] pair as
//! IMAP, so the engine (keep-alive timer, dead-connection detection, backoff, catch-up, dedupe)
//! is unchanged.
//!
//! - the last-item query / keep-alive is `FindItem` (shallow, newest first by
//!   `DateTimeReceived`, one entry) on the request connection;
//! - push is a streaming subscription: `Subscribe` then `GetStreamingEvents`, whose chunked answer
//!   (notifications, heartbeats, a final `Closed`) is read by a task on a second connection;
//!   a missing heartbeat for twice its period (at most the keep-alive interval) plus the response
//!   timeout is a dead connection; a lost subscription is renewed, then `FindItem` catches up;
//! - a server that refuses streaming is polled with the same `FindItem` every interval;
//! - nothing is ever changed: no `UpdateItem`, no `MarkAsRead`, no body fetched.
//!
//! UIDs: EWS item ids are opaque strings, but the engine dedupes by a number that grows with
//! arrival. The UID is the item's `DateTimeReceived` in seconds since 2020-01-01 times four,
//! plus one plus a slot (0..=3) for items received in the same second, handed out in order of first
//! sighting by one map per account that lives as long as the agent. So the UID is stable across
//! reconnects (catch-up announces each lost item once, nothing twice) and across restarts up to
//! the slot (a restart starts the slots afresh, which can only make a UID smaller, never announce
//! an old item). Limits: a fifth message in the same second shares the fourth's UID, and the
//! scheme runs out in 2054 — long after Microsoft switches EWS off.

pub mod autodiscover;
mod calls;
mod client;
use crate::net::ntlm;
mod session;
mod stream;
#[cfg(test)]
mod tests;
pub mod xml;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use self::xml::{El, EwsError};
use super::http::{Conn, Head, HttpError};
use super::{Connector, FolderInfo, Session, Wake};
use crate::config::{Account, AuthMethod, KeepAlive, distinguished_folder};
use crate::error::{ErrorKind, ProtoError};
use crate::event::MailItem;
use crate::net::clip;
use crate::net::tls::Tls;
use crate::secret::{self, Secret};

use super::uid_map::{UID_EPOCH, UidMap};
use calls::CallError;
use client::Http;
use session::{EwsSession, Msg};
use stream::stream_task;

/// The largest ordinary answer we read (FindItem pages are a few kB).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Items per FindItem page while catching up.
const PAGE: u32 = 25;
/// At most this many pages (1000 items) in one catch-up.
const MAX_PAGES: u32 = 40;
/// `ConnectionTimeout` of GetStreamingEvents, in minutes (the maximum the protocol allows).
const STREAM_MINUTES: u32 = 30;
/// How often a pull subscription is asked for events.
const PULL_EVERY: Duration = Duration::from_secs(10);
/// A pull subscription expires when not asked for this long.
const PULL_TIMEOUT_MINUTES: u32 = 30;
/// The longest `ErrorServerBusy` back-off hint honoured as given.
const MAX_BACK_OFF: Duration = Duration::from_secs(300);

/// How a password account authenticates, once the server said what it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer,
    /// NTLM, in an `NTLM` or a `Negotiate` header.
    Ntlm(&'static str),
}

pub struct EwsConnector {
    shared: Arc<Shared>,
}

struct Shared {
    account: Account,
    keepalive: KeepAlive,
    url: Result<url::Url, String>,
    /// A password typed into Settings but not stored yet ("Test connection").
    password: Option<Secret>,
    tokens: crate::oauth::TokenSource,
    tls: Tls,
    /// Exchange Online's `X-BackEndOverrideCookie`, sent back to reach the same back end.
    cookie: Mutex<Option<String>>,
    uids: Mutex<UidMap>,
    warned_plain: AtomicBool,
    /// What the server offered, learnt once for `auth = "password"`.
    scheme: Mutex<Option<Scheme>>,
    /// Whether `auth = "password"` may fall back to Basic when the server offers neither NTLM
    /// nor Negotiate (EWS at the configured url: yes; Autodiscover, which asks servers the user
    /// did not name: no).
    basic_fallback: bool,
    /// `ErrorServerBusy` asked not to send anything before then (and how long it asked for).
    busy_until: Mutex<Option<(Instant, Duration)>>,
    /// The subscription each folder holds (or held: a session that ended with its connection
    /// could not end it), ended before the folder subscribes again. Exchange limits the
    /// subscriptions per mailbox (20 on Exchange Online); every reconnect leaving one behind
    /// would break the user's other EWS clients (Outlook for Mac, phones) within an hour.
    subscriptions: Mutex<HashMap<&'static str, String>>,
}

impl EwsConnector {
    pub fn new(account: Account, keepalive: KeepAlive) -> Self {
        EwsConnector {
            shared: Arc::new(Shared::new(account, keepalive, None)),
        }
    }

    /// Use this password instead of the account's password source.
    pub fn with_password(mut self, password: Secret) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.password = Some(password);
        }
        self
    }
}

#[async_trait]
impl Connector for EwsConnector {
    async fn open(&self, folder: &str) -> Result<(Box<dyn Session>, FolderInfo), ProtoError> {
        let shared = self.shared.clone();
        let Some(id) = distinguished_folder(folder) else {
            return Err(ProtoError::new(
                ErrorKind::Folder,
                format!("{folder:?} is not an Exchange well-known folder (e.g. \"INBOX\")"),
            ));
        };
        let mut http = Http::new(shared.clone());
        let m = http
            .call_p("opening the folder", &xml::get_folder(id))
            .await?;
        let folder_el = m.child("Folders").and_then(|f| f.children.first());
        let folder_id = folder_el
            .and_then(|f| f.child("FolderId"))
            .and_then(|f| f.attr("Id"))
            .unwrap_or(id)
            .to_owned();
        let exists = folder_el
            .and_then(|f| f.child_text("TotalCount"))
            .and_then(|t| t.trim().parse::<u32>().ok())
            .unwrap_or(0);
        // FNV-1a of the folder's id: a mailbox recreated under the same name is a new folder.
        let uid_validity = folder_id.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        }) | 1;
        // A subscription an earlier session of this folder left (its connection died) is ended
        // first, so that reconnects do not pile them up against the mailbox's limit.
        http.unsubscribe_held(id).await;
        let (rx, task) = match http.subscribe(id).await {
            Ok(sub) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let stream = Http::new(shared.clone());
                (
                    Some(rx),
                    Some(tokio::spawn(stream_task(stream, id, sub, tx))),
                )
            }
            Err(CallError::Ews(e)) => {
                tracing::info!(
                    account = %shared.account.name,
                    "{} refuses streaming notifications ({}): trying a pull subscription",
                    shared.endpoint(), e.code
                );
                (None, None)
            }
            Err(CallError::Proto(e)) => return Err(e),
        };
        let pull = if rx.is_none() {
            match http.subscribe_pull(id).await {
                Ok(p) => Some(p),
                Err(CallError::Ews(e)) => {
                    tracing::info!(
                        account = %shared.account.name,
                        "{} refuses pull subscriptions too ({}): polling with FindItem every interval",
                        shared.endpoint(), e.code
                    );
                    None
                }
                Err(CallError::Proto(e)) => return Err(e),
            }
        } else {
            None
        };
        let info = FolderInfo {
            uid_validity,
            exists,
            can_push: rx.is_some() || pull.is_some(),
        };
        Ok((
            Box::new(EwsSession {
                http,
                folder: id,
                rx,
                task,
                pull,
                last_alive: Instant::now(),
                last_beat: None,
                period: None,
            }),
            info,
        ))
    }
}
