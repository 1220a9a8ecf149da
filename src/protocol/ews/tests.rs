//! Unit tests of the EWS backend (UIDs, folder names) and fuzzing of everything a server sends.

mod unit {
    use super::super::*;

    fn item(id: &str, t: &str) -> xml::Item {
        xml::Item {
            id: id.into(),
            subject: id.into(),
            from: String::new(),
            received: Some(chrono::DateTime::parse_from_rfc3339(t).unwrap()),
            is_read: false,
        }
    }

    #[test]
    fn uids_grow_with_arrival_and_are_stable() {
        let mut m = UidMap::default();
        let a = m.assign(vec![item("a", "2026-11-28T10:00:00Z")]);
        let b = m.assign(vec![
            item("b", "2026-11-28T10:00:00Z"),
            item("a", "2026-11-28T10:00:00Z"),
            item("c", "2026-11-28T10:00:05Z"),
        ]);
        let uid = |v: &[MailItem], s: &str| v.iter().find(|i| i.subject == s).unwrap().uid;
        assert_eq!(uid(&a, "a"), uid(&b, "a"), "stable");
        assert!(
            uid(&b, "b") > uid(&b, "a"),
            "same second, seen later: higher slot"
        );
        assert!(uid(&b, "c") > uid(&b, "b"));
        assert_eq!(uid(&b, "c") - uid(&a, "a"), 5 * 4);
    }

    #[test]
    fn well_known_folders() {
        assert_eq!(distinguished_folder("INBOX"), Some("inbox"));
        assert_eq!(distinguished_folder("JunkEmail"), Some("junkemail"));
        assert_eq!(distinguished_folder("Projects"), None);
    }
}

/// Fuzzing the parsers of everything a server sends: errors, never panics.
mod fuzz {
    use super::super::stream::stream_envelope;
    use super::super::*;
    use proptest::prelude::*;

    const FIND: &str = r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:FindItemResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:RootFolder IndexedPagingOffset="1" TotalItemsInView="1" IncludesLastItemInRange="true"><t:Items><t:Message><t:ItemId Id="A&amp;1" ChangeKey="C"/><t:Subject>Hi &lt;there&gt;</t:Subject><t:DateTimeReceived>2026-11-28T10:00:00Z</t:DateTimeReceived><t:From><t:Mailbox><t:Name>Bob</t:Name><t:EmailAddress>bob@example.com</t:EmailAddress></t:Mailbox></t:From><t:IsRead>false</t:IsRead></t:Message></t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse></s:Body></s:Envelope>"#;
    const STREAM: &str = r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><m:GetStreamingEventsResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:GetStreamingEventsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notifications><m:Notification><t:SubscriptionId>S</t:SubscriptionId><t:NewMailEvent><t:TimeStamp>2026-11-28T10:00:00Z</t:TimeStamp><t:ItemId Id="I" ChangeKey="C"/><t:ParentFolderId Id="P" ChangeKey="C"/></t:NewMailEvent></m:Notification></m:Notifications></m:GetStreamingEventsResponseMessage></m:ResponseMessages></m:GetStreamingEventsResponse></Body></Envelope>"#;

    /// Everything the client does with an answer's bytes.
    fn digest(bytes: &[u8]) {
        if let Ok(root) = xml::parse(bytes)
            && let Ok(op) = xml::body(&root)
            && let Ok(messages) = xml::messages(op)
        {
            for m in messages {
                if let Ok(m) = xml::check(m)
                    && let Some(items) = m.child("RootFolder").and_then(|r| r.child("Items"))
                {
                    UidMap::default().assign(xml::items(items));
                }
            }
        }
        let mut changed = false;
        let _ = stream_envelope(bytes, "h:1", &mut changed);
        let _ = xml::envelope_end(bytes);
    }

    /// A chunked body fed to the HTTP reader.
    fn read_http(bytes: Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, mut server) = tokio::io::duplex(1 << 20);
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = server.write_all(&bytes).await;
            });
            let mut conn = Conn::new(Box::new(client));
            if let Ok(Ok(head)) = timeout(Duration::from_secs(1), conn.read_head()).await {
                if head.chunked() {
                    for _ in 0..64 {
                        match timeout(Duration::from_secs(1), conn.read_chunk(1 << 16)).await {
                            Ok(Ok(Some(c))) => digest(&c),
                            _ => break,
                        }
                    }
                } else {
                    let _ = timeout(Duration::from_secs(1), conn.read_body(&head, 1 << 16)).await;
                }
            }
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            digest(&bytes);
        }

        #[test]
        fn mangled_answers_are_errors_not_panics(
            which in 0..2usize,
            cut in 0..1200usize,
            flips in proptest::collection::vec((0..1200usize, any::<u8>()), 0..8),
        ) {
            let mut bytes = [FIND, STREAM][which].as_bytes().to_vec();
            for (at, b) in flips {
                let n = bytes.len();
                bytes[at % n] = b;
            }
            bytes.truncate(cut.max(1).min(bytes.len()));
            digest(&bytes);
        }

        #[test]
        fn arbitrary_http_is_errors_not_panics(
            head in "HTTP/1\\.1 [0-9]{3} [A-Za-z ]{0,10}\r\n(Transfer-Encoding: chunked\r\n|Content-Length: [0-9]{1,4}\r\n)?\r\n",
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut bytes = head.into_bytes();
            bytes.extend(body);
            read_http(bytes);
        }

        #[test]
        fn arbitrary_ntlm_challenges_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            use base64::Engine as _;
            let mut msg = b"NTLMSSP\0\x02\0\0\0".to_vec();
            msg.extend(bytes);
            let token = base64::engine::general_purpose::STANDARD.encode(msg);
            let _ = ntlm::authenticate(&token, "u", &Secret::new("p".into()));
        }
    }

    #[test]
    fn the_seeds_parse() {
        let root = xml::parse(FIND.as_bytes()).unwrap();
        let m = xml::check(xml::messages(xml::body(&root).unwrap()).unwrap()[0]).unwrap();
        let items = xml::items(m.child("RootFolder").unwrap().child("Items").unwrap());
        assert_eq!(items[0].id, "A&1");
        assert_eq!(items[0].subject, "Hi <there>");
        assert_eq!(items[0].from, "Bob <bob@example.com>");
        let mut changed = false;
        assert!(
            stream_envelope(STREAM.as_bytes(), "h:1", &mut changed)
                .unwrap()
                .is_none()
        );
        assert!(changed);
    }
}
