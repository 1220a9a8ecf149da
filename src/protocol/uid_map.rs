//! Item id → UID for the HTTP backends (EWS, Graph): their item ids are opaque strings, but the
//! engine dedupes by a number that grows with arrival.
//!
//! UID = (received − 2020-01-01 in seconds) × 4 + 1 + a slot (0..=3) for items of the same
//! second, handed out in order of first sighting by one map per account that lives as long as
//! the agent. So the UID is stable across reconnects (a catch-up announces each lost item once)
//! and a restart can only make a UID smaller (slots start afresh), never announce an old item.
//! Limits: a fifth item in the same second shares the fourth's UID, and UIDs run out in 2054.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};

use crate::event::MailItem;

/// 2020-01-01T00:00:00Z, the origin of the UID scheme.
pub(crate) const UID_EPOCH: i64 = 1_577_836_800;

/// The second (Unix time) a UID stands for.
pub(crate) fn uid_secs(uid: u32) -> i64 {
    (uid.saturating_sub(1) / 4) as i64 + UID_EPOCH
}

/// An item as a server lists it, before it has a UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub id: String,
    pub subject: String,
    pub from: String,
    pub received: Option<DateTime<FixedOffset>>,
    pub is_read: bool,
}

/// Item id → UID (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct UidMap {
    pub(crate) ids: HashMap<String, u32>,
    pub(crate) slots: HashMap<i64, u8>,
}

impl UidMap {
    pub(crate) fn uid(&mut self, id: &str, secs: i64) -> u32 {
        if let Some(uid) = self.ids.get(id) {
            return *uid;
        }
        let used = self.slots.entry(secs).or_insert(0);
        let slot = (*used).min(3) as u64;
        *used = used.saturating_add(1);
        let base = (secs - UID_EPOCH).max(0) as u64;
        let uid = (base * 4 + slot + 1).min(u32::MAX as u64) as u32;
        self.ids.insert(id.to_owned(), uid);
        if self.ids.len() > 20_000 {
            // Forget the oldest half: only recent items are ever compared again.
            let mut uids: Vec<u32> = self.ids.values().copied().collect();
            uids.sort_unstable();
            let cut = uids[uids.len() / 2];
            self.ids.retain(|_, u| *u >= cut);
            let cut_secs = uid_secs(cut);
            self.slots.retain(|s, _| *s >= cut_secs);
        }
        uid
    }

    /// UIDs for one answer's items, handed out oldest first (ties by id) so that the same
    /// answer always yields the same UIDs.
    pub(crate) fn assign<I: Into<Found>>(&mut self, items: Vec<I>) -> Vec<MailItem> {
        let mut items: Vec<(i64, Found)> = items
            .into_iter()
            .map(Into::into)
            .map(|i: Found| (i.received.map_or(0, |d| d.timestamp()), i))
            .collect();
        items.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        items
            .into_iter()
            .map(|(secs, i)| MailItem {
                uid: self.uid(&i.id, secs),
                from: i.from,
                subject: i.subject,
                date: i.received,
                seen: i.is_read,
            })
            .collect()
    }
}
