//! An open Graph folder: the keep-alive query (the newest message), and the catch-up as delta
//! rounds, one page per call so that each has its own response deadline.

use tokio_util::sync::CancellationToken;

use super::*;
use crate::event::MailItem;
use crate::protocol::uid_map::uid_secs;
use crate::protocol::{Batch, Wake};

/// A message of a Graph answer (`value[]` of a message list or a delta page); `None` for a
/// delta's `@removed` entry or anything without an id.
pub(super) fn found(v: &Value) -> Option<Found> {
    if v.get("@removed").is_some() {
        return None;
    }
    let id = v.get("id")?.as_str()?.to_owned();
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").trim().to_owned();
    let address = v.get("from").and_then(|f| f.get("emailAddress"));
    let name = text(address.and_then(|a| a.get("name")));
    let addr = text(address.and_then(|a| a.get("address")));
    let from = match (name.is_empty(), addr.is_empty()) {
        (false, false) if name != addr => format!("{name} <{addr}>"),
        (false, _) => name,
        _ => addr,
    };
    Some(Found {
        id,
        subject: text(v.get("subject")),
        from,
        received: v
            .get("receivedDateTime")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok()),
        is_read: v.get("isRead").and_then(Value::as_bool) == Some(true),
    })
}

/// The delta codes that mean "the sync state is gone, start afresh".
fn sync_state_lost(status: u16, code: &str) -> bool {
    status == 410
        || ["syncStateNotFound", "syncStateInvalid", "resyncRequired"]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(code))
}

/// A delta round in progress.
pub(super) struct Round {
    /// The next page to ask for.
    next: String,
    /// Whether this round started without a deltaLink (a lost token gets one fresh round).
    fresh: bool,
    /// The UID the round started above: only newer messages are kept.
    floor: u32,
    pages: u32,
    items: Vec<MailItem>,
    /// The message ids of the round so far (a message changed while the round was paged may
    /// be listed twice).
    ids: std::collections::HashSet<String>,
}

pub(super) struct GraphSession {
    pub(super) http: Http,
    pub(super) folder_id: String,
    /// This folder's key in the delta store.
    pub(super) key: String,
    pub(super) round: Option<Round>,
}

impl GraphSession {
    /// The newest `top` messages, newest first by `receivedDateTime`.
    async fn newest(&mut self, top: u32) -> Result<Vec<MailItem>, ProtoError> {
        let what = "querying the newest item";
        let path = format!(
            "/me/mailFolders/{}/messages?$top={top}&$select={SELECT}&$orderby={}",
            enc(&self.folder_id),
            enc("receivedDateTime desc")
        );
        let v = self
            .http
            .get(what, &path, false)
            .await
            .map_err(|e| self.http.shared.get_error(e, what))?;
        let found: Vec<Found> = v
            .get("value")
            .and_then(Value::as_array)
            .ok_or_else(|| self.http.shared.malformed(what, "no \"value\" list"))?
            .iter()
            .filter_map(found)
            .collect();
        let mut map = self
            .http
            .shared
            .uids
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok(map.assign(found))
    }

    /// A fresh delta round: the messages received since the second of `uid` (all of them for
    /// 0), so that it lists nothing older than what was seen.
    fn fresh_link(&self, uid: u32) -> String {
        let mut link = format!(
            "/me/mailFolders/{}/messages/delta?$select={SELECT}",
            enc(&self.folder_id)
        );
        if uid > 0 {
            let since = chrono::DateTime::from_timestamp(uid_secs(uid), 0)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%SZ");
            link.push_str(&format!(
                "&$filter={}",
                enc(&format!("receivedDateTime ge {since}"))
            ));
        }
        link
    }

    /// One delta page; the round's messages above its floor once it reached the deltaLink.
    async fn delta_page(&mut self, uid: u32) -> Result<Batch, ProtoError> {
        let what = "asking what changed (delta)";
        let shared = self.http.shared.clone();
        let mut round = match self.round.take() {
            Some(r) => r,
            None => {
                let stored = shared.deltas.get(&self.key);
                Round {
                    fresh: stored.is_none(),
                    next: stored.unwrap_or_else(|| self.fresh_link(uid)),
                    floor: uid,
                    pages: 0,
                    items: Vec::new(),
                    ids: Default::default(),
                }
            }
        };
        let v = match self.http.get(what, &round.next, true).await {
            Ok(v) => v,
            Err(GetError::Graph { status, code, .. })
                if sync_state_lost(status, &code) && !round.fresh =>
            {
                tracing::info!(
                    account = %shared.account.name,
                    "{}: the delta token is gone (HTTP {status} {code}); starting a fresh round from the last seen message",
                    shared.endpoint()
                );
                shared.deltas.set(&self.key, None);
                self.round = Some(Round {
                    next: self.fresh_link(round.floor),
                    fresh: true,
                    floor: round.floor,
                    pages: 0,
                    items: Vec::new(),
                    ids: Default::default(),
                });
                return Ok(Batch {
                    items: Vec::new(),
                    covered: Some(uid),
                });
            }
            Err(e) => return Err(shared.get_error(e, what)),
        };
        let Some(values) = v.get("value").and_then(Value::as_array) else {
            return Err(shared.malformed(what, "no \"value\" list"));
        };
        let found: Vec<Found> = values
            .iter()
            .filter_map(found)
            .filter(|f| round.ids.insert(f.id.clone()))
            .collect();
        let items = shared
            .uids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .assign(found);
        let floor = round.floor;
        round
            .items
            .extend(items.into_iter().filter(|i| i.uid > floor));
        round.pages += 1;
        if let Some(next) = v.get("@odata.nextLink").and_then(Value::as_str) {
            if round.pages >= MAX_DELTA_PAGES {
                return Err(ProtoError::new(
                    ErrorKind::Protocol,
                    format!(
                        "{}: the delta answer goes on for more than {MAX_DELTA_PAGES} pages",
                        shared.endpoint()
                    ),
                ));
            }
            round.next = next.to_owned();
            self.round = Some(round);
            return Ok(Batch {
                items: Vec::new(),
                covered: Some(uid),
            });
        }
        let Some(link) = v.get("@odata.deltaLink").and_then(Value::as_str) else {
            return Err(shared.malformed(what, "a delta page with neither nextLink nor deltaLink"));
        };
        // Check it now: a link to elsewhere is refused when it is saved, not next round.
        shared.target(link)?;
        shared.deltas.set(&self.key, Some(link));
        // Deduplicated by id above, not by UID here: a fifth message of one second shares the
        // fourth's UID (see `uid_map`), and within one round both are announced (the engine
        // compares each batch with the last seen UID once). Stable: ties stay in arrival order.
        let mut items = round.items;
        items.sort_by_key(|i| i.uid);
        Ok(Batch {
            items,
            covered: None,
        })
    }
}

#[async_trait]
impl Session for GraphSession {
    async fn last_item(&mut self) -> Result<Option<MailItem>, ProtoError> {
        // Four, so that all messages received in the newest second get their UIDs together.
        Ok(self.newest(4).await?.into_iter().max_by_key(|i| i.uid))
    }

    async fn newest_uid(&mut self) -> Result<Option<u32>, ProtoError> {
        // Four here too, not one: receivedDateTime has whole seconds, and the order of
        // messages received in the same second is the server's choice, so with `$top=1` a
        // message arriving in the second of the last seen one could stay hidden behind it
        // until the next arrival. With four, it gets the next slot and a higher UID.
        Ok(self.newest(4).await?.iter().map(|i| i.uid).max())
    }

    async fn items_batch(&mut self, uid: u32) -> Result<Batch, ProtoError> {
        self.delta_page(uid).await
    }

    async fn items_after(&mut self, uid: u32) -> Result<Vec<MailItem>, ProtoError> {
        // Bounded: every call asks for one page, and a round has at most MAX_DELTA_PAGES.
        loop {
            let batch = self.delta_page(uid).await?;
            if batch.covered.is_none() {
                return Ok(batch.items);
            }
        }
    }

    async fn count_after(&mut self, uid: u32) -> Result<u32, ProtoError> {
        Ok(self.items_after(uid).await?.len() as u32)
    }

    async fn wait(&mut self, max: Duration, stop: &CancellationToken) -> Result<Wake, ProtoError> {
        // No push: the engine polls on Timeout (it does not call this with can_push = false).
        tokio::select! {
            _ = crate::platform::sleep(max) => Ok(Wake::Timeout),
            _ = stop.cancelled() => Ok(Wake::Interrupted),
        }
    }

    async fn close(self: Box<Self>) {
        // Nothing to end on the server: dropping the connection closes it.
    }
}
