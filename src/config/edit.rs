//! Editing the file in place: comments and layout kept (toml_edit), the result validated before
//! it is written atomically.

use super::*;

impl Config {
    /// Change the file in place, keeping its comments and layout: parse it, apply `edit`,
    /// validate the result, then write it atomically. The file is unchanged on any error.
    pub fn edit_file(
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
        self.check(path)?;
        let fresh: toml_edit::DocumentMut = self.to_toml().parse().expect("our own TOML parses");
        Config::edit_file(path, |doc| {
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
