//! Validation of SOAP traffic against Microsoft's published EWS schema with `xmllint --schema`.
//!
//! The schema describes the operation element inside `soap:Body`, not the envelope, so each
//! envelope's Body child is cut out into a standalone document: the namespace declarations it
//! relies on (made on the Envelope or the Body) are copied onto it. All documents of a test are
//! validated in one xmllint run (the schema is large; parsing it once keeps this fast).
//!
//! The one known mismatch: real servers (and every client) put the `Notification`s of a
//! GetStreamingEvents answer in the messages namespace, the schema in the types namespace
//! (GetEvents' single `Notification` is in the messages namespace in both). The helper rewrites
//! that one element of streaming answers before validating, and the test
//! `schema_rejects_the_real_notification_namespace_and_accepts_our_requests` shows that the
//! schema rejects the real form.
//!
//! SOAP faults (`ErrorServerBusy` comes as one) are SOAP, not EWS schema: they are checked to be
//! well-formed envelopes but not validated.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `tests/ews-schema` in the repository (see its README), or `MAILPULSE_EWS_SCHEMA`.
pub fn schema_dir() -> PathBuf {
    if let Ok(p) = std::env::var("MAILPULSE_EWS_SCHEMA") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ews-schema")
}

fn xmlns_decls(start_tag: &str) -> Vec<(String, String)> {
    // Attributes `xmlns[:p]="v"` of one start tag.
    let mut out = Vec::new();
    let mut rest = start_tag;
    while let Some(i) = rest.find("xmlns") {
        let after = &rest[i..];
        let Some(eq) = after.find('=') else { break };
        let name = after[..eq].trim().to_owned();
        let quoted = after[eq + 1..].trim_start();
        let q = quoted.chars().next().unwrap_or('"');
        let value_start = &quoted[1..];
        let Some(end) = value_start.find(q) else {
            break;
        };
        let preceded_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        if preceded_ok && (name == "xmlns" || name.starts_with("xmlns:")) {
            out.push((name, value_start[..end].to_owned()));
        }
        rest = &value_start[end + 1..];
    }
    out
}

/// The element inside `soap:Body` of `envelope` as a standalone document.
pub fn body_child(envelope: &str) -> Result<String, String> {
    let find_tag = |from: usize, local: &str| -> Option<(usize, usize)> {
        // A start tag `<local` or `<p:local` followed by space, `/` or `>`.
        let mut at = from;
        while let Some(i) = envelope[at..].find('<') {
            let start = at + i;
            let name_end = envelope[start + 1..]
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .map(|n| start + 1 + n)?;
            let name = &envelope[start + 1..name_end];
            let lname = name.rsplit(':').next().unwrap_or(name);
            if lname == local && !name.starts_with('/') {
                let end = envelope[start..].find('>').map(|n| start + n + 1)?;
                return Some((start, end));
            }
            at = start + 1;
        }
        None
    };
    let (env_start, env_end) = find_tag(0, "Envelope").ok_or("no Envelope")?;
    let (body_start, body_end) = find_tag(env_end, "Body").ok_or("no Body")?;
    let mut decls = xmlns_decls(&envelope[env_start..env_end]);
    decls.extend(xmlns_decls(&envelope[body_start..body_end]));
    let body_name = {
        let tag = &envelope[body_start + 1..body_end];
        tag.split(|c: char| c.is_whitespace() || c == '>')
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let close = format!("</{body_name}>");
    let close_at = envelope.rfind(&close).ok_or("no Body end tag")?;
    let inner = envelope[body_end..close_at].trim();
    if !inner.starts_with('<') {
        return Err("the Body holds no element".into());
    }
    let name_end = inner[1..]
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .map(|n| n + 1)
        .ok_or("broken start tag")?;
    let tag_end = inner.find('>').ok_or("broken start tag")?;
    let own = xmlns_decls(&inner[..tag_end]);
    let mut extra = String::new();
    for (name, value) in decls {
        if !own.iter().any(|(n, _)| *n == name) && !extra.contains(&format!(" {name}=")) {
            extra += &format!(" {name}=\"{value}\"");
        }
    }
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n{}{extra}{}",
        &inner[..name_end],
        &inner[name_end..]
    ))
}

/// The schema's form of a streaming `Notification` (types namespace) in place of the real one.
pub fn schema_form(doc: &str) -> String {
    if !doc.contains("GetStreamingEventsResponse") {
        return doc.to_owned();
    }
    doc.replace(
        "<m:Notification>",
        "<t:Notification xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\">",
    )
    .replace("</m:Notification>", "</t:Notification>")
}

/// Run xmllint over documents; `Err` with its report when any is invalid.
pub fn xmllint(docs: &[(String, String)]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (n, (label, doc)) in docs.iter().enumerate() {
        let path = dir.path().join(format!("{n:04}-{label}.xml"));
        std::fs::write(&path, doc).unwrap();
        files.push(path);
    }
    if files.is_empty() {
        return Ok(());
    }
    let schema = schema_dir().join("messages.xsd");
    assert!(
        schema.is_file(),
        "the EWS schema is missing at {} (set MAILPULSE_EWS_SCHEMA)",
        schema.display()
    );
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .args(&files)
        .output()
        .expect("xmllint (Debian libxml2-utils) must be installed: scripts/install-deps.sh test");
    if out.status.success() {
        // Not a rubber stamp: xmllint said so of every file.
        let report = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            report.matches(" validates").count(),
            files.len(),
            "xmllint did not validate every document:\n{report}"
        );
        return Ok(());
    }
    let mut report = String::from_utf8_lossy(&out.stderr).into_owned();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        if report.contains(&*name) && !report.contains(&format!("{name} validates")) {
            report += &format!("\n--- {name}:\n{}", std::fs::read_to_string(f).unwrap());
        }
    }
    Err(report)
}

/// Validate the Body child of every envelope (label, text) against the schema; panics with
/// xmllint's report (and the failing documents) otherwise.
pub fn validate_envelopes(envelopes: &[(String, String)]) {
    let docs: Vec<(String, String)> = envelopes
        .iter()
        .filter_map(|(label, env)| {
            let doc = body_child(env)
                .unwrap_or_else(|e| panic!("{label} is not a SOAP envelope ({e}):\n{env}"));
            let fault = doc.contains(":Fault ") || doc.contains(":Fault>");
            (!fault).then(|| (label.clone(), schema_form(&doc)))
        })
        .collect();
    if let Err(report) = xmllint(&docs) {
        panic!("EWS traffic does not validate against the schema:\n{report}");
    }
}
