//! The last seen UID per account and folder, kept on disk so that a restart neither repeats old
//! mail nor hides mail that arrived while mailpulse was not running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::fs::write_atomic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub uid_validity: u32,
    /// The highest UID already announced (or taken as the baseline).
    pub uid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// `user@host:port`: a renamed account pointing elsewhere must not inherit the old baseline.
    server: String,
    #[serde(flatten)]
    seen: Seen,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    /// Keyed by `account/folder`.
    folders: BTreeMap<String, Entry>,
}

/// Shared, cheap to clone; saves atomically after every change (changes are rare: new mail).
#[derive(Debug, Clone)]
pub struct Store {
    path: Option<PathBuf>,
    data: Arc<Mutex<Data>>,
}

impl Store {
    /// A store that is not persisted (tests, `mailpulse check`).
    pub fn in_memory() -> Store {
        Store {
            path: None,
            data: Arc::default(),
        }
    }

    /// Load `dir/seen.json`; a missing or unreadable file starts empty (with a warning for the
    /// latter: the worst outcome is one summary too few, never lost mail).
    pub fn open(dir: &Path) -> Store {
        let path = dir.join("seen.json");
        let data = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), "ignoring unreadable state file: {e}");
                Data::default()
            }),
            Err(_) => Data::default(),
        };
        Store {
            path: Some(path),
            data: Arc::new(Mutex::new(data)),
        }
    }

    /// The state directory this store is saved in (`None` when in memory).
    pub fn dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }

    fn key(account: &str, folder: &str) -> String {
        format!("{account}/{folder}")
    }

    pub fn get(&self, account: &str, folder: &str, server: &str) -> Option<Seen> {
        let data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        data.folders
            .get(&Store::key(account, folder))
            .filter(|e| e.server == server)
            .map(|e| e.seen)
    }

    pub fn set(&self, account: &str, folder: &str, server: &str, seen: Seen) {
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        let entry = Entry {
            server: server.to_owned(),
            seen,
        };
        if data.folders.get(&Store::key(account, folder)) == Some(&entry) {
            return;
        }
        data.folders.insert(Store::key(account, folder), entry);
        if let Some(path) = &self.path {
            let json = serde_json::to_vec_pretty(&*data).expect("state serialises");
            if let Err(e) = write_atomic(path, &json) {
                tracing::warn!(path = %path.display(), "cannot save state: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_across_instances_and_checks_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path());
        assert_eq!(s.get("work", "INBOX", "a@h:993"), None);
        let seen = Seen {
            uid_validity: 7,
            uid: 42,
        };
        s.set("work", "INBOX", "a@h:993", seen);
        let again = Store::open(dir.path());
        assert_eq!(again.get("work", "INBOX", "a@h:993"), Some(seen));
        assert_eq!(again.get("work", "INBOX", "a@other:993"), None);
        assert_eq!(again.get("work", "Archive", "a@h:993"), None);
    }

    #[test]
    fn corrupt_file_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seen.json"), b"{not json").unwrap();
        let s = Store::open(dir.path());
        assert_eq!(s.get("a", "INBOX", "x"), None);
    }
}
