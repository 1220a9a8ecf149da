use super::parse::decode_header;
use super::*;

#[test]
fn decodes_encoded_words() {
    assert_eq!(decode_header(b"=?UTF-8?B?R3LDvMOfZQ==?="), "Grüße");
    assert_eq!(decode_header(b"=?iso-8859-1?Q?caf=E9?= time"), "café time");
    assert_eq!(decode_header(b"plain"), "plain");
    assert_eq!(decode_header(b"=?bogus"), "=?bogus");
}

#[test]
fn the_plain_warning_is_once_per_account_and_server() {
    assert!(first_plain_warning("unit-a", "h:143"));
    assert!(!first_plain_warning("unit-a", "h:143"));
    assert!(first_plain_warning("unit-b", "h:143"));
    assert!(first_plain_warning("unit-a", "other:143"));
}

#[test]
fn line_breaks_and_nul_in_credentials_are_refused_before_connecting() {
    let ok = crate::secret::Secret::new("pässwörd \"q\" \\ {5}".into());
    assert!(check_credentials("user", &ok).is_ok());
    for bad in ["pw\r\nA1 DELETE INBOX", "pw\n", "pw\0x"] {
        let e = check_credentials("user", &crate::secret::Secret::new(bad.into())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Secret);
        assert!(!e.message.contains("DELETE"), "{}", e.message);
        assert!(e.message.contains("line break"), "{}", e.message);
    }
    let e = check_credentials("us\rer", &ok).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
}

#[test]
fn server_words_are_the_servers_text_not_debug_output() {
    assert_eq!(
        server_words("code: None, info: Some(\"Mailbox does not exist\")"),
        "Mailbox does not exist"
    );
    assert_eq!(
        server_words("code: Some(AuthenticationFailed), info: None"),
        "no reason given"
    );
    assert_eq!(server_words("  plain text "), "plain text");
    assert_eq!(
        server_words(
            "outcome: Outcome { code: None, information: Some(\"Mailbox doesn't exist: Work\") }"
        ),
        "Mailbox doesn't exist: Work"
    );
    assert_eq!(
        server_words("outcome: Outcome { code: None, information: None }"),
        "no reason given"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    /// Arbitrary and mutated server bytes through the bounded layer and async-imap's codec
    /// and parser, as the session reads them: no panic, an error or responses, and never more
    /// buffered than the bound (the scan counts what the codec may hold).
    #[test]
    fn the_response_path_survives_any_bytes(
        base in proptest::sample::select(vec![
            "* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n".to_string(),
            "* 3 FETCH (UID 9 FLAGS (\\Seen) INTERNALDATE \"01-Jan-2026 10:00:00 +0000\" ENVELOPE (\"date\" {5}\r\nhello NIL NIL NIL NIL NIL NIL NIL NIL))\r\n".to_string(),
            "A0001 BAD\r\n".to_string(),
            "+ idling\r\n* 4 EXISTS\r\n".to_string(),
            "* 1 FETCH (BODY[] {400000000}\r\n".to_string(),
        ]),
        mutations in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 0..8),
        tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
    ) {
        let mut bytes = base.into_bytes();
        for (at, b) in mutations {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = b;
            }
        }
        bytes.extend(tail);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (client, mut server) = tokio::io::duplex(4096);
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = server.write_all(&bytes).await;
            });
            let mut client = async_imap::Client::new(crate::protocol::net::Bounded::new(client));
            for _ in 0..64 {
                match tokio::time::timeout(Duration::from_secs(2), client.read_response()).await {
                    Ok(Ok(Some(r))) => { let _ = format!("{:?}", r.parsed()); }
                    _ => break,
                }
            }
            writer.abort();
        });
    }
}

fn dovecot_names() -> Vec<(String, Option<String>)> {
    [
        "INBOX",
        "INBOX.Work",
        "INBOX.Work.2026",
        "INBOX.Sent",
        "INBOX.Archive",
    ]
    .iter()
    .map(|n| (n.to_string(), Some(".".to_string())))
    .collect()
}

#[test]
fn folder_names_resolve_across_separators_and_inbox_case() {
    let names = dovecot_names();
    assert_eq!(
        resolve_folder("INBOX/Work", &names).as_deref(),
        Some("INBOX.Work")
    );
    assert_eq!(
        resolve_folder("inbox/Work/2026", &names).as_deref(),
        Some("INBOX.Work.2026")
    );
    assert_eq!(
        resolve_folder("INBOX.Sent", &names).as_deref(),
        Some("INBOX.Sent")
    );
    assert_eq!(resolve_folder("Work", &names), None);
    let slash: Vec<_> = [("Work/Projects", "/")]
        .iter()
        .map(|(n, d)| (n.to_string(), Some(d.to_string())))
        .collect();
    assert_eq!(
        resolve_folder("Work/Projects", &slash).as_deref(),
        Some("Work/Projects")
    );
}

#[test]
fn a_missing_folder_gets_a_suggestion_in_words() {
    let names = dovecot_names();
    let hint = folder_hint("Work", &names);
    assert!(hint.contains("did you mean \"INBOX.Work\"?"), "{hint}");
    assert!(hint.contains("\".\""), "{hint}");
    let hint = folder_hint("archive", &names);
    assert!(hint.contains("INBOX.Archive"), "{hint}");
    let hint = folder_hint("Nothing", &names);
    assert!(hint.contains("its folders include \"INBOX\""), "{hint}");
}
