//! Where in the file an error is: byte offsets to line and column, and dotted keys
//! (`accounts[1].port`) to the span of their value, through toml_edit's spans.

use super::*;

pub(super) fn invalid(
    path: &Path,
    text: &str,
    span: Range<usize>,
    key: String,
    message: String,
) -> ConfigError {
    let (line, column) = line_col(text, span.start);
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        column,
        key,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted key path whose key or value contains `offset` (the deepest one).
pub(super) fn key_at(doc: &toml_edit::Document<&str>, offset: usize) -> Option<String> {
    fn walk(table: &toml_edit::Table, prefix: &str, offset: usize) -> Option<String> {
        for (k, item) in table.iter() {
            let (key, _) = table.get_key_value(k)?;
            let path = if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            };
            match item {
                toml_edit::Item::Table(t) => {
                    if let Some(p) = walk(t, &path, offset) {
                        return Some(p);
                    }
                    if key.span().is_some_and(|s| s.contains(&offset)) {
                        return Some(path);
                    }
                }
                toml_edit::Item::ArrayOfTables(arr) => {
                    for (i, t) in arr.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        if let Some(found) = walk(t, &p, offset) {
                            return Some(found);
                        }
                        if t.span().is_some_and(|s| s.contains(&offset)) {
                            return Some(p);
                        }
                    }
                }
                other => {
                    let in_key = key.span().is_some_and(|s| s.contains(&offset));
                    let in_value = other.span().is_some_and(|s| s.contains(&offset));
                    if in_key || in_value {
                        return Some(path);
                    }
                }
            }
        }
        None
    }
    walk(doc.as_table(), "", offset)
}

/// The span of the value at a dotted key path like `accounts[1].port` (or of the nearest
/// enclosing key or table that exists).
pub(super) fn span_of(doc: &toml_edit::Document<&str>, path: &str) -> Option<Range<usize>> {
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut best = None;
    let parts: Vec<&str> = path.split('.').collect();
    for (n, part) in parts.iter().enumerate() {
        let last = n + 1 == parts.len();
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let Some((key, item)) = table.get_key_value(name) else {
            return best;
        };
        best = key.span().or(best);
        if let Some(i) = index {
            let Some(t) = item.as_array_of_tables().and_then(|a| a.get(i)) else {
                return best;
            };
            best = t.span().or(best);
            table = t;
            continue;
        }
        if last {
            return item.span().or(best);
        }
        match item.as_table_like() {
            Some(t) => table = t,
            None => return best,
        }
    }
    best
}
