//! Editing the file in place: comments and layout kept (toml_edit), the result validated before
//! it is written atomically.

use serde_json::Value;

use super::*;

/// Lock `path` for a read-modify-write (see [`crate::fs::lock_for_edit`]).
fn lock(path: &Path) -> Result<std::fs::File, ConfigError> {
    crate::fs::lock_for_edit(path).map_err(|source| ConfigError::Write {
        path: path.to_owned(),
        source,
    })
}

/// A three-way merge of settings: what was loaded (`base`), what this writer made of it
/// (`ours`) and what the file holds now (`theirs`, another writer's change in between). A
/// setting only one side changed keeps that change; where both changed it, ours wins. Tables
/// merge key by key; anything else (the accounts list) is one value.
pub fn merge3(base: &Value, ours: &Value, theirs: &Value) -> Value {
    if ours == base {
        return theirs.clone();
    }
    if theirs == base || theirs == ours {
        return ours.clone();
    }
    match (base, ours, theirs) {
        (Value::Object(b), Value::Object(o), Value::Object(t)) => {
            let mut merged = serde_json::Map::new();
            for key in o.keys().chain(t.keys()) {
                if merged.contains_key(key) {
                    continue;
                }
                let pick =
                    |m: &serde_json::Map<String, Value>| m.get(key).cloned().unwrap_or(Value::Null);
                let value = merge3(&pick(b), &pick(o), &pick(t));
                if !value.is_null() {
                    merged.insert(key.clone(), value);
                }
            }
            Value::Object(merged)
        }
        _ => ours.clone(),
    }
}

impl Config {
    /// Change the file in place, keeping its comments and layout: parse it, apply `edit`,
    /// validate the result, then write it atomically. The file is unchanged on any error. The
    /// whole read-modify-write holds the file's edit lock, so two writers never lose each
    /// other's change.
    pub fn edit_file(
        path: &Path,
        edit: impl FnOnce(&mut toml_edit::DocumentMut),
    ) -> Result<Config, ConfigError> {
        let _lock = lock(path)?;
        Config::edit_locked(path, edit)
    }

    /// [`edit_file`](Self::edit_file) for a caller that holds the lock.
    fn edit_locked(
        path: &Path,
        edit: impl FnOnce(&mut toml_edit::DocumentMut),
    ) -> Result<Config, ConfigError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            let span = e.span().unwrap_or(0..0);
            invalid(
                path,
                &text,
                span,
                String::new(),
                e.message().trim().to_owned(),
            )
        })?;
        edit(&mut doc);
        let new_text = doc.to_string();
        let config = Config::parse(&new_text, path)?;
        write_atomic(path, new_text.as_bytes()).map_err(|source| ConfigError::Write {
            path: path.to_owned(),
            source,
        })?;
        Ok(config)
    }

    /// Save this config over `path`, keeping the comments of the settings that stay (the
    /// accounts are rewritten as a whole). Validated first; atomic; mode 0600.
    pub fn save_merged(&self, path: &Path) -> Result<(), ConfigError> {
        let _lock = lock(path)?;
        self.save_locked(path)
    }

    /// [`save_merged`](Self::save_merged) for settings edited from `base` (what the file held
    /// when the settings window loaded it): a change another writer made since (the tray's
    /// keep-alive switch, `mailpulse autostart`) is kept unless these settings changed the same
    /// key. Returns the config written.
    pub fn save_merged_since(&self, path: &Path, base: &Config) -> Result<Config, ConfigError> {
        let _lock = lock(path)?;
        let merged = match Config::load(path) {
            Ok(theirs) => {
                let json = |c: &Config| serde_json::to_value(c).expect("a config serializes");
                let value = merge3(&json(base), &json(self), &json(&theirs));
                serde_json::from_value(value).unwrap_or_else(|_| self.clone())
            }
            // Nothing (or nothing valid) to keep: these settings as they are.
            Err(_) => self.clone(),
        };
        merged.save_locked(path)?;
        Ok(merged)
    }

    fn save_locked(&self, path: &Path) -> Result<(), ConfigError> {
        self.check(path)?;
        let fresh: toml_edit::DocumentMut = self.to_toml().parse().expect("our own TOML parses");
        Config::edit_locked(path, |doc| {
            for (key, item) in fresh.iter() {
                match (item, doc.get_mut(key)) {
                    (toml_edit::Item::Table(new), Some(toml_edit::Item::Table(old))) => {
                        let stale: Vec<String> = old
                            .iter()
                            .map(|(k, _)| k.to_owned())
                            .filter(|k| !new.contains_key(k))
                            .collect();
                        for k in stale {
                            old.remove(&k);
                        }
                        for (k, v) in new.iter() {
                            match old.get_mut(k) {
                                Some(slot) if slot.is_value() && v.is_value() => {
                                    // Keep the comment after the value, if any.
                                    let suffix =
                                        slot.as_value().and_then(|x| x.decor().suffix().cloned());
                                    *slot = v.clone();
                                    if let (Some(suffix), Some(value)) =
                                        (suffix, slot.as_value_mut())
                                    {
                                        value.decor_mut().set_suffix(suffix);
                                    }
                                }
                                _ => {
                                    old.insert(k, v.clone());
                                }
                            }
                        }
                    }
                    _ => {
                        doc.insert(key, item.clone());
                    }
                }
            }
            let gone: Vec<String> = doc
                .iter()
                .map(|(k, _)| k.to_owned())
                .filter(|k| !fresh.contains_key(k))
                .collect();
            for k in gone {
                doc.remove(&k);
            }
        })
        .map(|_| ())
    }
}
