//! The SOAP side of EWS: the requests mailpulse sends (as text, schema-valid against
//! Microsoft's published `messages.xsd`/`types.xsd`) and a small, bounded tree parser for the
//! answers. Names are compared by local name, so `m:Notification` and `t:Notification` (real
//! servers and the schema disagree on its namespace) are both accepted.

use std::time::Duration;

use quick_xml::events::Event as XmlEvent;

pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const NS_TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
pub const NS_MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// Streaming notifications need Exchange 2010 SP1 or later.
pub const SERVER_VERSION: &str = "Exchange2010_SP1";

/// Deeper nesting than this is not an EWS answer (and would make a recursive walk expensive).
const MAX_DEPTH: usize = 64;
/// More elements than this in one answer is not an answer we asked for.
const MAX_ELEMENTS: usize = 200_000;

/// One element: local name, attributes by local name, its text, its children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct El {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<El>,
}

impl El {
    pub fn child(&self, name: &str) -> Option<&El> {
        self.children.iter().find(|c| c.name == name)
    }
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The first element called `name` in this subtree (depth first, self included).
    pub fn find(&self, name: &str) -> Option<&El> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
    /// The text of the child called `name`, if any.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

fn local(name: &[u8]) -> String {
    let name = match name.iter().rposition(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(name).into_owned()
}

/// Parse a whole XML document into its root element. Errors (never panics) on anything that
/// is not one well-formed element tree within the limits.
pub fn parse(bytes: &[u8]) -> Result<El, String> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<El> = Vec::new();
    let mut root: Option<El> = None;
    let mut count = 0usize;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("not XML: {e}"))?;
        match ev {
            XmlEvent::Start(ref s) | XmlEvent::Empty(ref s) => {
                if root.is_some() {
                    return Err("text after the document element".into());
                }
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err("the answer is nested too deeply or too large".into());
                }
                let mut el = El {
                    name: local(s.name().as_ref()),
                    ..El::default()
                };
                for a in s.attributes() {
                    let a = a.map_err(|e| format!("bad attribute: {e}"))?;
                    let key = a.key.as_ref();
                    if key == b"xmlns" || key.starts_with(b"xmlns:") {
                        continue;
                    }
                    let value = a
                        .decode_and_unescape_value(reader.decoder())
                        .map_err(|e| format!("bad attribute value: {e}"))?;
                    el.attrs.push((local(key), value.into_owned()));
                }
                if matches!(ev, XmlEvent::Empty(_)) {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            XmlEvent::End(_) => {
                let el = stack.pop().ok_or("an end tag without a start tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            XmlEvent::Text(t) => {
                if let Some(el) = stack.last_mut() {
                    let text = t.unescape().map_err(|e| format!("bad text: {e}"))?;
                    el.text.push_str(&text);
                } else if !t.iter().all(u8::is_ascii_whitespace) {
                    return Err("text outside the document element".into());
                }
            }
            XmlEvent::CData(c) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            XmlEvent::Eof => break,
            XmlEvent::DocType(_) => return Err("a DOCTYPE is not allowed in SOAP".into()),
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "no document element".into())
}

/// Escape text for element content and attribute values.
pub fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A complete request envelope around `body` (the operation element).
pub fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <soap:Envelope xmlns:soap=\"{NS_SOAP}\" xmlns:t=\"{NS_TYPES}\" xmlns:m=\"{NS_MESSAGES}\">\
         <soap:Header><t:RequestServerVersion Version=\"{SERVER_VERSION}\"/></soap:Header>\
         <soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

fn folder_ref(folder: &str) -> String {
    format!("<t:DistinguishedFolderId Id=\"{}\"/>", esc(folder))
}

/// `GetFolder` with the counts: the cheapest probe, and the folder's id (its identity).
pub fn get_folder(folder: &str) -> String {
    envelope(&format!(
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>\
         <t:FieldURI FieldURI=\"folder:TotalCount\"/><t:FieldURI FieldURI=\"folder:UnreadCount\"/>\
         </t:AdditionalProperties></m:FolderShape><m:FolderIds>{}</m:FolderIds></m:GetFolder>",
        folder_ref(folder)
    ))
}

/// The last-item query: `FindItem` shallow, newest first by `DateTimeReceived`, `max` items
/// from `offset`, with only what a notification shows (never the body: nothing is marked read).
pub fn find_items(folder: &str, max: u32, offset: u32) -> String {
    envelope(&format!(
        "<m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>\
         <t:AdditionalProperties><t:FieldURI FieldURI=\"item:Subject\"/>\
         <t:FieldURI FieldURI=\"message:From\"/><t:FieldURI FieldURI=\"item:DateTimeReceived\"/>\
         <t:FieldURI FieldURI=\"message:IsRead\"/></t:AdditionalProperties></m:ItemShape>\
         <m:IndexedPageItemView MaxEntriesReturned=\"{max}\" Offset=\"{offset}\" BasePoint=\"Beginning\"/>\
         <m:SortOrder><t:FieldOrder Order=\"Descending\"><t:FieldURI FieldURI=\"item:DateTimeReceived\"/>\
         </t:FieldOrder></m:SortOrder><m:ParentFolderIds>{}</m:ParentFolderIds></m:FindItem>",
        folder_ref(folder)
    ))
}

/// A streaming subscription to new mail in `folder`.
pub fn subscribe_streaming(folder: &str) -> String {
    envelope(&format!(
        "<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds>{}</t:FolderIds>\
         <t:EventTypes><t:EventType>NewMailEvent</t:EventType><t:EventType>CreatedEvent</t:EventType>\
         </t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>",
        folder_ref(folder)
    ))
}

/// A pull subscription (servers that refuse streaming); `timeout_minutes` 1..=1440.
pub fn subscribe_pull(folder: &str, timeout_minutes: u32) -> String {
    envelope(&format!(
        "<m:Subscribe><m:PullSubscriptionRequest><t:FolderIds>{}</t:FolderIds>\
         <t:EventTypes><t:EventType>NewMailEvent</t:EventType><t:EventType>CreatedEvent</t:EventType>\
         </t:EventTypes><t:Timeout>{timeout_minutes}</t:Timeout></m:PullSubscriptionRequest></m:Subscribe>",
        folder_ref(folder)
    ))
}

/// `Unsubscribe`: ends a subscription (streaming or pull) so it does not count against the
/// mailbox's subscription limit until it expires on its own.
pub fn unsubscribe(subscription: &str) -> String {
    envelope(&format!(
        "<m:Unsubscribe><m:SubscriptionId>{}</m:SubscriptionId></m:Unsubscribe>",
        esc(subscription)
    ))
}

/// `GetEvents` on a pull subscription from `watermark`.
pub fn get_events(subscription: &str, watermark: &str) -> String {
    envelope(&format!(
        "<m:GetEvents><m:SubscriptionId>{}</m:SubscriptionId><m:Watermark>{}</m:Watermark></m:GetEvents>",
        esc(subscription),
        esc(watermark)
    ))
}

/// `GetStreamingEvents`: the server holds the answer open up to `minutes` (1..=30), sending
/// notifications and heartbeats as they come.
pub fn get_streaming_events(subscription: &str, minutes: u32) -> String {
    envelope(&format!(
        "<m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{}</t:SubscriptionId>\
         </m:SubscriptionIds><m:ConnectionTimeout>{}</m:ConnectionTimeout></m:GetStreamingEvents>",
        esc(subscription),
        minutes.clamp(1, 30)
    ))
}

/// `GetItem` of the items a notification named (sender and subject), by id.
pub fn get_items(ids: &[String]) -> String {
    let ids: String = ids
        .iter()
        .map(|id| format!("<t:ItemId Id=\"{}\"/>", esc(id)))
        .collect();
    envelope(&format!(
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>\
         <t:FieldURI FieldURI=\"item:Subject\"/><t:FieldURI FieldURI=\"message:From\"/>\
         <t:FieldURI FieldURI=\"item:DateTimeReceived\"/><t:FieldURI FieldURI=\"message:IsRead\"/>\
         </t:AdditionalProperties></m:ItemShape><m:ItemIds>{ids}</m:ItemIds></m:GetItem>"
    ))
}

/// An EWS error: a `ResponseCode` other than `NoError`, or a SOAP fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EwsError {
    pub code: String,
    pub text: String,
    /// `ErrorServerBusy`'s `BackOffMilliseconds` hint.
    pub back_off: Option<Duration>,
}

impl EwsError {
    /// The subscription is gone: subscribe again, then catch up with FindItem.
    pub fn is_subscription_lost(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ErrorSubscriptionNotFound"
                | "ErrorInvalidSubscription"
                | "ErrorReadEventsFailed"
                | "ErrorExpiredSubscription"
                | "ErrorInvalidWatermark"
                | "ErrorSubscriptionDelegateAccessNotSupported"
        )
    }
}

fn back_off(el: &El) -> Option<Duration> {
    // <MessageXml><t:Value Name="BackOffMilliseconds">5000</t:Value></MessageXml>
    let xml = el.find("MessageXml")?;
    xml.children
        .iter()
        .find(|v| v.attr("Name") == Some("BackOffMilliseconds"))
        .and_then(|v| v.text.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// The soap:Body's first element, or the error a SOAP fault reports.
pub fn body(root: &El) -> Result<&El, Result<EwsError, String>> {
    if root.name != "Envelope" {
        return Err(Err(format!(
            "the answer is <{}>, not a SOAP envelope",
            root.name
        )));
    }
    let body = root
        .child("Body")
        .ok_or_else(|| Err("the SOAP envelope has no Body".to_owned()))?;
    let first = body
        .children
        .first()
        .ok_or_else(|| Err("the SOAP Body is empty".to_owned()))?;
    if first.name == "Fault" {
        let text = first
            .child_text("faultstring")
            .unwrap_or("SOAP fault")
            .trim()
            .to_owned();
        let code = first
            .find("ResponseCode")
            .map(|c| c.text.trim().to_owned())
            .unwrap_or_else(|| {
                first
                    .child_text("faultcode")
                    .unwrap_or("Fault")
                    .trim()
                    .to_owned()
            });
        return Err(Ok(EwsError {
            back_off: back_off(first),
            code,
            text,
        }));
    }
    Ok(first)
}

/// The `*ResponseMessage` elements of an operation's answer.
pub fn messages(op: &El) -> Result<Vec<&El>, String> {
    let list = op
        .child("ResponseMessages")
        .ok_or_else(|| format!("<{}> has no ResponseMessages", op.name))?;
    Ok(list.children.iter().collect())
}

/// `Ok(message)` for `ResponseClass` Success/Warning, the error otherwise.
pub fn check(message: &El) -> Result<&El, EwsError> {
    let code = message
        .child_text("ResponseCode")
        .unwrap_or("")
        .trim()
        .to_owned();
    let class = message.attr("ResponseClass").unwrap_or("");
    if class == "Error" || (!code.is_empty() && code != "NoError" && class != "Warning") {
        return Err(EwsError {
            text: message
                .child_text("MessageText")
                .unwrap_or("")
                .trim()
                .to_owned(),
            back_off: back_off(message),
            code: if code.is_empty() {
                "Error".into()
            } else {
                code
            },
        });
    }
    Ok(message)
}

/// One item as FindItem/GetItem describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub subject: String,
    pub from: String,
    pub received: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub is_read: bool,
}

impl From<Item> for crate::protocol::uid_map::Found {
    fn from(i: Item) -> Self {
        crate::protocol::uid_map::Found {
            id: i.id,
            subject: i.subject,
            from: i.from,
            received: i.received,
            is_read: i.is_read,
        }
    }
}

/// The items (any item type: Message, MeetingRequest, ...) under `parent`.
pub fn items(parent: &El) -> Vec<Item> {
    parent
        .children
        .iter()
        .filter_map(|el| {
            let id = el.child("ItemId")?.attr("Id")?.to_owned();
            let from = el
                .child("From")
                .and_then(|f| f.child("Mailbox"))
                .map(|m| {
                    let name = m.child_text("Name").unwrap_or("").trim();
                    let address = m.child_text("EmailAddress").unwrap_or("").trim();
                    match (name.is_empty(), address.is_empty()) {
                        (false, false) if name != address => format!("{name} <{address}>"),
                        (false, _) => name.to_owned(),
                        _ => address.to_owned(),
                    }
                })
                .unwrap_or_default();
            Some(Item {
                id,
                subject: el.child_text("Subject").unwrap_or("").trim().to_owned(),
                from,
                received: el
                    .child_text("DateTimeReceived")
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok()),
                is_read: el.child_text("IsRead").map(str::trim) == Some("true"),
            })
        })
        .collect()
}

/// The end of one complete envelope in a stream of concatenated envelopes (`</x:Envelope>`),
/// as the index just past it.
pub fn envelope_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = find(&buf[from..], b"Envelope>") {
        let end = from + pos + b"Envelope>".len();
        // Walk back over an optional prefix to "</".
        let mut i = from + pos;
        while i > 0
            && (buf[i - 1].is_ascii_alphanumeric()
                || buf[i - 1] == b':'
                || buf[i - 1] == b'_'
                || buf[i - 1] == b'-')
        {
            i -= 1;
        }
        if i >= 2 && &buf[i - 2..i] == b"</" {
            return Some(end);
        }
        from = end;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_by_local_name_and_entities() {
        let root = parse(
            b"<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"x\"><s:Body><m:A b:c=\"1&amp;2\">x &lt; y</m:A></s:Body></s:Envelope>",
        )
        .unwrap();
        let a = body(&root).unwrap();
        assert_eq!(a.name, "A");
        assert_eq!(a.attr("c"), Some("1&2"));
        assert_eq!(a.text, "x < y");
    }

    #[test]
    fn refuses_broken_documents() {
        for bad in [
            &b""[..],
            b"<a>",
            b"<a></b>",
            b"<a/><b/>",
            b"<!DOCTYPE a><a/>",
            b"\xff\xfe",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn fault_with_server_busy_carries_the_hint() {
        let root = parse(
            br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>a:ErrorServerBusy</faultcode><faultstring>The server cannot service this request right now.</faultstring><detail><e:ResponseCode xmlns:e="x">ErrorServerBusy</e:ResponseCode><e:MessageXml xmlns:e="x"><t:Value xmlns:t="y" Name="BackOffMilliseconds">2500</t:Value></e:MessageXml></detail></s:Fault></s:Body></s:Envelope>"#,
        )
        .unwrap();
        let e = body(&root).unwrap_err().unwrap();
        assert_eq!(e.code, "ErrorServerBusy");
        assert_eq!(e.back_off, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn finds_envelope_ends_in_a_stream() {
        let s = b"<Envelope><a/></Envelope><soap:Envelope></soap:Envelope>";
        assert_eq!(envelope_end(s), Some(25));
        assert_eq!(envelope_end(&s[25..]), Some(s.len() - 25));
        assert_eq!(envelope_end(b"<soap:Envelope>"), None);
    }
}
