//! What a FETCH answer means to a user: sender (RFC 2047 decoded), subject, date, `\Seen`.

use super::*;

pub(super) fn mail_item(fetch: &Fetch) -> Option<MailItem> {
    let uid = fetch.uid?;
    let envelope = fetch.envelope();
    let from = envelope
        .and_then(|e| e.from.as_ref())
        .and_then(|list| list.first())
        .map(format_address)
        .unwrap_or_default();
    let subject = envelope
        .and_then(|e| e.subject.as_deref())
        .map(decode_header)
        .unwrap_or_default();
    Some(MailItem {
        uid,
        from,
        subject,
        date: fetch.internal_date(),
        seen: fetch.flags().any(|f| f == Flag::Seen),
    })
}

pub(super) fn format_address(a: &async_imap::imap_proto::Address<'_>) -> String {
    let text = |b: &Option<std::borrow::Cow<'_, [u8]>>| {
        b.as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let address = match (text(&a.mailbox), text(&a.host)) {
        (Some(m), Some(h)) => format!("{m}@{h}"),
        (Some(m), None) => m,
        _ => String::new(),
    };
    match a.name.as_deref().map(decode_header) {
        Some(name) if !name.is_empty() && !address.is_empty() => format!("{name} <{address}>"),
        Some(name) if !name.is_empty() => name,
        _ => address,
    }
}

/// Decode RFC 2047 encoded words (`=?UTF-8?B?...?=`); raw bytes are taken as UTF-8, lossily.
pub fn decode_header(raw: &[u8]) -> String {
    rfc2047_decoder::decode(raw)
        .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
        .trim()
        .to_owned()
}
