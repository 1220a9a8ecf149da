//! The deltaLink of each folder, in memory and in `graph-delta.json` in the state dir, so that
//! a restart goes on from where the last delta round ended.
//!
//! Keyed by `user@host:port/folder-id`. A deltaLink is a URL on the configured server holding
//! Graph's opaque sync state; it grants nothing without the access token. Losing the file costs
//! one fresh round limited to the messages received since the last seen one (see `session`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

pub(super) struct DeltaStore {
    path: Option<PathBuf>,
    links: Mutex<Option<BTreeMap<String, String>>>,
}

impl DeltaStore {
    /// The file in the platform's state dir (read on first use).
    pub(super) fn platform() -> DeltaStore {
        DeltaStore {
            path: crate::fs::Dirs::platform().map(|d| d.state_dir.join("graph-delta.json")),
            links: Mutex::new(None),
        }
    }

    #[cfg(test)]
    pub(super) fn at(path: Option<PathBuf>) -> DeltaStore {
        DeltaStore {
            path,
            links: Mutex::new(None),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, String>) -> T) -> T {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let links = links.get_or_insert_with(|| {
            let Some(path) = &self.path else {
                return BTreeMap::new();
            };
            match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    tracing::warn!(path = %path.display(), "ignoring unreadable delta state: {e}");
                    BTreeMap::new()
                }),
                Err(_) => BTreeMap::new(),
            }
        });
        f(links)
    }

    pub(super) fn get(&self, key: &str) -> Option<String> {
        self.with(|l| l.get(key).cloned())
    }

    /// Remember (`Some`) or forget (`None`) a folder's deltaLink.
    pub(super) fn set(&self, key: &str, link: Option<&str>) {
        let path = self.path.clone();
        self.with(|l| {
            let changed = match link {
                Some(link) => l.insert(key.to_owned(), link.to_owned()).as_deref() != Some(link),
                None => l.remove(key).is_some(),
            };
            if changed && let Some(path) = path {
                let json = serde_json::to_vec_pretty(&*l).expect("links serialise");
                if let Err(e) = crate::fs::write_atomic(&path, &json) {
                    tracing::warn!(path = %path.display(), "cannot save delta state: {e}");
                }
            }
        })
    }
}
