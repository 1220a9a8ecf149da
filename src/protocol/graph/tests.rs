//! Unit tests of the Graph backend: parsing what the server sends, links, hints, the delta file.

use super::client::{error_of, retry_after};
use super::session::found;
use super::*;
use crate::protocol::http::Head;

fn shared(url: &str) -> Shared {
    let mut account = Account::new("m365", "", "alice@contoso.com");
    account.protocol = crate::config::Protocol::Graph;
    account.url = Some(url.to_owned());
    Shared {
        tls: Tls::new(None),
        tokens: crate::oauth::TokenSource::new(account.clone()),
        deltas: DeltaStore::at(None),
        root: url::Url::parse(url).map_err(|e| e.to_string()),
        account,
        keepalive: KeepAlive::default(),
        password: None,
        uids: Mutex::new(UidMap::default()),
        throttled_until: Mutex::new(None),
        warned_plain: AtomicBool::new(false),
    }
}

#[test]
fn messages_and_removed_entries() {
    let v: Value = serde_json::from_str(
        r#"{"value":[
            {"@odata.etag":"W/\"x\"","id":"AAMk1","subject":" Hi ","receivedDateTime":"2026-11-28T10:00:00Z",
             "isRead":false,"from":{"emailAddress":{"name":"Bob","address":"bob@example.com"}}},
            {"id":"AAMk2","@removed":{"reason":"deleted"}},
            {"id":"AAMk3","subject":null,"from":null,"receivedDateTime":"2026-11-28T10:00:01Z","isRead":true}
        ]}"#,
    )
    .unwrap();
    let items: Vec<Found> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(found)
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].from, "Bob <bob@example.com>");
    assert_eq!(items[0].subject, "Hi");
    assert!(!items[0].is_read);
    assert_eq!(items[1].from, "");
    assert!(items[1].is_read);
    let mut map = UidMap::default();
    let mail = map.assign(items);
    assert!(mail[1].uid > mail[0].uid);
}

#[test]
fn graph_error_json() {
    let body = br#"{"error":{"code":"syncStateNotFound","message":"The sync state is gone.","innerError":{"date":"2026-12-05T07:00:00"}}}"#;
    assert_eq!(
        error_of(body),
        Some(("syncStateNotFound".into(), "The sync state is gone.".into()))
    );
    assert_eq!(error_of(b"<html>"), None);
}

#[test]
fn retry_after_seconds_date_and_bounds() {
    let head = |v: &str| Head {
        status: 429,
        reason: "Too Many Requests".into(),
        headers: vec![("Retry-After".into(), v.into())],
    };
    assert_eq!(retry_after(&head("7")), Duration::from_secs(7));
    assert_eq!(retry_after(&head("999999")), MAX_RETRY_AFTER);
    assert_eq!(retry_after(&head("soon")), DEFAULT_RETRY_AFTER);
    let at = (chrono::Utc::now() + chrono::Duration::seconds(100)).to_rfc2822();
    let d = retry_after(&head(&at));
    assert!(
        d > Duration::from_secs(90) && d <= Duration::from_secs(100),
        "{d:?}"
    );
}

#[test]
fn links_are_followed_only_on_the_same_server() {
    let s = shared("https://graph.example.com/v1.0");
    assert_eq!(
        s.target("/me/mailFolders/inbox").unwrap(),
        "/v1.0/me/mailFolders/inbox"
    );
    assert_eq!(
        s.target(
            "https://graph.example.com/v1.0/me/mailFolders('x')/messages/delta?$deltatoken=abc"
        )
        .unwrap(),
        "/v1.0/me/mailFolders('x')/messages/delta?$deltatoken=abc"
    );
    for other in [
        "https://evil.example.com/v1.0/me/messages/delta?$deltatoken=abc",
        "http://graph.example.com/v1.0/me",
        "https://graph.example.com:8443/v1.0/me",
    ] {
        let e = s.target(other).unwrap_err();
        assert!(e.message.contains("another server"), "{e}");
    }
}

#[test]
fn encoding_and_well_known_names() {
    assert_eq!(enc("AAMk=/x y"), "AAMk%3D%2Fx%20y");
    assert_eq!(well_known("INBOX"), Some("inbox"));
    assert_eq!(well_known("Archive"), Some("archive"));
    assert_eq!(well_known("Work"), None);
}

#[test]
fn delta_links_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph-delta.json");
    let store = DeltaStore::at(Some(path.clone()));
    assert_eq!(store.get("a"), None);
    store.set("a", Some("https://h/v1.0/delta?$deltatoken=1"));
    let again = DeltaStore::at(Some(path.clone()));
    assert_eq!(
        again.get("a").as_deref(),
        Some("https://h/v1.0/delta?$deltatoken=1")
    );
    again.set("a", None);
    assert_eq!(DeltaStore::at(Some(path)).get("a"), None);
}
