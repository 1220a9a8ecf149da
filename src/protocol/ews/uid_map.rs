//! Item id → UID: EWS ids are opaque, the engine dedupes by a number that grows with arrival
//! (see the module documentation of `ews`).

use super::*;

/// Item id → UID (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct UidMap {
    pub(super) ids: HashMap<String, u32>,
    pub(super) slots: HashMap<i64, u8>,
}

impl UidMap {
    pub(super) fn uid(&mut self, id: &str, secs: i64) -> u32 {
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
            let cut_secs = (cut as i64 - 1) / 4 + UID_EPOCH;
            self.slots.retain(|s, _| *s >= cut_secs);
        }
        uid
    }

    /// UIDs for one answer's items, handed out oldest first (ties by id) so that the same
    /// answer always yields the same UIDs.
    pub(super) fn assign(&mut self, items: Vec<xml::Item>) -> Vec<MailItem> {
        let mut items: Vec<(i64, xml::Item)> = items
            .into_iter()
            .map(|i| (i.received.map_or(0, |d| d.timestamp()), i))
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
