//! Microsoft Graph (Microsoft 365) behind the same [`Connector`]/[`Session`] pair as IMAP and
//! EWS, so the engine (keep-alive timer, dead-connection detection, backoff, catch-up, dedupe)
//! is unchanged. Read-only: every request is a `GET`.
//!
//! - one TLS connection per folder, kept open (HTTP/1.1 keep-alive) by [`http::Conn`];
//! - the last-item query / keep-alive is `GET /me/mailFolders/{id}/messages?$top=4&$select=…
//!   &$orderby=receivedDateTime desc` every interval (four: see `session::newest_uid`): Graph has no push a desktop can receive
//!   (change notifications need a public HTTPS endpoint), so `can_push` is false and the engine
//!   polls; latency is bounded by the interval;
//! - when the newest item changed, the folder's delta query (`…/messages/delta`, `@odata.nextLink`
//!   pages up to an `@odata.deltaLink`) lists what changed since the last round, exactly once; the
//!   deltaLink is kept per folder in memory and in `graph-delta.json` in the state dir;
//! - a lost delta token (410 Gone, `syncStateNotFound`) or none at all starts a fresh delta
//!   round limited to messages received since the last seen UID's second
//!   (`$filter=receivedDateTime ge …`), so it announces nothing old and misses nothing new;
//! - 401: the token is renewed once ([`crate::oauth::TokenSource`]), then it is an `Auth` error;
//! - 429/503: nothing is sent before `Retry-After` has passed (all folders of the account);
//! - UIDs: [`super::uid_map`], as for EWS (received second × 4 + slot).

mod client;
mod delta;
mod session;
#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use super::http::{Conn, Head, HttpError};
use super::uid_map::{Found, UidMap};
use super::{Connector, FolderInfo, Session};
use crate::config::{Account, KeepAlive};
use crate::error::{ErrorKind, ProtoError};
use crate::net::clip;
use crate::net::tls::Tls;
use crate::secret::Secret;

use client::{GetError, Http};
use delta::DeltaStore;
use session::GraphSession;

/// The largest answer we read (a page of 50 messages' ids, subjects and senders is ~30 kB).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Messages per delta page we ask for (`Prefer: odata.maxpagesize`).
const DELTA_PAGE: u32 = 50;
/// At most this many pages in one delta round (50 000 messages at our page size).
const MAX_DELTA_PAGES: u32 = 1000;
/// At most this many pages of folders when looking a folder up by name.
const MAX_FOLDER_PAGES: u32 = 20;
/// A `Retry-After` longer than this is honoured as this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Without a `Retry-After`, a throttled account waits this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);
/// What every message query selects (Mail.ReadBasic allows all of these; never a body).
const SELECT: &str = "id,subject,from,receivedDateTime,isRead";

/// Graph's well-known folder names (`/me/mailFolders/{name}`).
const WELL_KNOWN: &[&str] = &[
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    "localfailures",
    "msgfolderroot",
    "outbox",
    "recoverableitemsdeletions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
];

/// The well-known name a configured folder (or path segment) stands for (`INBOX` → `inbox`).
fn well_known(name: &str) -> Option<&'static str> {
    WELL_KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name.trim()))
        .copied()
}

/// Percent-encoding for a path segment or a query value: everything but RFC 3986's unreserved
/// characters.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub struct GraphConnector {
    shared: Arc<Shared>,
}

struct Shared {
    account: Account,
    keepalive: KeepAlive,
    /// The service root (`https://graph.microsoft.com/v1.0`).
    root: Result<url::Url, String>,
    /// A token typed into Settings but not stored yet ("Test connection").
    password: Option<Secret>,
    tokens: crate::oauth::TokenSource,
    tls: Tls,
    uids: Mutex<UidMap>,
    /// 429/503 asked not to send anything before then (how long it asked for, the status).
    throttled_until: Mutex<Option<(Instant, Duration, u16)>>,
    deltas: DeltaStore,
    warned_plain: AtomicBool,
}

impl GraphConnector {
    pub fn new(account: Account, keepalive: KeepAlive) -> Self {
        let root =
            url::Url::parse(account.graph_url().trim_end_matches('/')).map_err(|e| e.to_string());
        GraphConnector {
            shared: Arc::new(Shared {
                tls: Tls::new(account.ca_file.clone()),
                tokens: crate::oauth::TokenSource::new(account.clone()),
                deltas: DeltaStore::platform(),
                root,
                account,
                keepalive,
                password: None,
                uids: Mutex::new(UidMap::default()),
                throttled_until: Mutex::new(None),
                warned_plain: AtomicBool::new(false),
            }),
        }
    }

    /// Use this access token instead of the account's token source.
    pub fn with_password(mut self, password: Secret) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.password = Some(password);
        }
        self
    }
}

/// A folder as Graph lists it.
#[derive(Debug, Clone)]
struct Folder {
    id: String,
    name: String,
    total: u32,
}

fn folder_of(v: &Value) -> Option<Folder> {
    Some(Folder {
        id: v.get("id")?.as_str()?.to_owned(),
        name: v
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        total: v
            .get("totalItemCount")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(u32::MAX as u64) as u32,
    })
}

const FOLDER_SELECT: &str = "$select=id,displayName,totalItemCount";

impl Http {
    /// The folder a configured name stands for: a well-known name, or a path of display names
    /// (`Inbox/Work`: the first segment may be well-known or a top-level folder, each further
    /// one a child folder).
    async fn resolve(&mut self, name: &str) -> Result<Folder, ProtoError> {
        let segments: Vec<&str> = name.split('/').map(str::trim).collect();
        let mut current: Option<Folder> = None;
        for (i, segment) in segments.iter().enumerate() {
            if i == 0
                && let Some(wk) = well_known(segment)
            {
                let path = format!("/me/mailFolders/{wk}?{FOLDER_SELECT}");
                let v = match self.get("opening the folder", &path, false).await {
                    Ok(v) => v,
                    Err(GetError::Graph { status, code, .. })
                        if status == 404 || code.eq_ignore_ascii_case("ErrorFolderNotFound") =>
                    {
                        return Err(ProtoError::new(
                            ErrorKind::Folder,
                            format!(
                                "{}: the mailbox has no {wk:?} folder ({code})",
                                self.shared.endpoint()
                            ),
                        ));
                    }
                    Err(e) => return Err(self.shared.get_error(e, "opening the folder")),
                };
                current = Some(folder_of(&v).ok_or_else(|| {
                    self.shared
                        .malformed("opening the folder", "a folder without an id")
                })?);
                continue;
            }
            let list = match &current {
                None => format!("/me/mailFolders?{FOLDER_SELECT}&$top=100"),
                Some(f) => format!(
                    "/me/mailFolders/{}/childFolders?{FOLDER_SELECT}&$top=100",
                    enc(&f.id)
                ),
            };
            let children = self.list_folders(&list).await?;
            let found = children
                .iter()
                .find(|f| f.name == *segment)
                .or_else(|| {
                    children
                        .iter()
                        .find(|f| f.name.to_lowercase() == segment.to_lowercase())
                })
                .cloned();
            match found {
                Some(f) => current = Some(f),
                None => {
                    let under = match &current {
                        None => "at the top of the mailbox".to_owned(),
                        Some(f) => format!("in {:?}", f.name),
                    };
                    let names: Vec<String> = children
                        .iter()
                        .take(20)
                        .map(|f| format!("{:?}", f.name))
                        .collect();
                    return Err(ProtoError::new(
                        ErrorKind::Folder,
                        format!(
                            "{}: there is no folder {segment:?} {under} (folders there: {}); use a well-known name such as \"inbox\" or a path such as \"Inbox/Work\"",
                            self.shared.endpoint(),
                            if names.is_empty() {
                                "none".to_owned()
                            } else {
                                clip(&names.join(", "))
                            }
                        ),
                    ));
                }
            }
        }
        current
            .ok_or_else(|| ProtoError::new(ErrorKind::Config, format!("{name:?} names no folder")))
    }

    /// Every folder of a folder list, following `@odata.nextLink`.
    async fn list_folders(&mut self, first: &str) -> Result<Vec<Folder>, ProtoError> {
        let what = "looking up the folder";
        let mut next = first.to_owned();
        let mut all = Vec::new();
        for _ in 0..MAX_FOLDER_PAGES {
            let v = self
                .get(what, &next, false)
                .await
                .map_err(|e| self.shared.get_error(e, what))?;
            all.extend(
                v.get("value")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(folder_of),
            );
            match v.get("@odata.nextLink").and_then(Value::as_str) {
                Some(link) => next = link.to_owned(),
                None => break,
            }
        }
        Ok(all)
    }
}

#[async_trait]
impl Connector for GraphConnector {
    async fn open(&self, folder: &str) -> Result<(Box<dyn Session>, FolderInfo), ProtoError> {
        let shared = self.shared.clone();
        shared.root()?;
        let mut http = Http::new(shared.clone());
        let resolved = http.resolve(folder).await?;
        // FNV-1a of the folder's id: a folder recreated under the same name is a new folder.
        let uid_validity = resolved.id.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        }) | 1;
        let info = FolderInfo {
            uid_validity,
            exists: resolved.total,
            // No push a desktop can receive: the engine polls every interval.
            can_push: false,
        };
        let key = format!(
            "{}@{}/{}",
            shared.account.username,
            shared.endpoint(),
            resolved.id
        );
        Ok((
            Box::new(GraphSession {
                http,
                folder_id: resolved.id,
                key,
                round: None,
            }),
            info,
        ))
    }
}
