//! Building small RFC 5322 messages for delivery (no external crates):
//! RFC 2047 encoded words, RFC 5322 dates, unique Message-IDs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Builds a complete message (CRLF line endings, not dot-stuffed).
///
/// `from` is a full header value such as `Bob <bob@example.org>`; `to` is an
/// address. Non-ASCII in the subject (or in the display name of `from`) is
/// encoded as RFC 2047 `=?UTF-8?B?...?=` words; the body is sent as 8bit UTF-8.
pub fn build(from: &str, to: &str, subject: &str, body: &str) -> String {
    let mut msg = String::with_capacity(body.len() + 512);
    msg.push_str(&format!("From: {}\r\n", encode_address_header(from)));
    msg.push_str(&format!("To: {to}\r\n"));
    msg.push_str(&format!("Subject: {}\r\n", encode_unstructured(subject)));
    msg.push_str(&format!("Date: {}\r\n", rfc5322_date(SystemTime::now())));
    msg.push_str(&format!("Message-ID: {}\r\n", new_message_id()));
    msg.push_str("MIME-Version: 1.0\r\n");
    msg.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    msg.push_str("Content-Transfer-Encoding: 8bit\r\n");
    msg.push_str("\r\n");
    // Normalise the body to CRLF line endings and end it with CRLF.
    for line in body.lines() {
        msg.push_str(line);
        msg.push_str("\r\n");
    }
    msg
}

/// The addr-spec of a header value: what is inside `<...>`, or the whole
/// trimmed value when there are no angle brackets.
pub fn addr_spec(header_value: &str) -> String {
    match (header_value.rfind('<'), header_value.rfind('>')) {
        (Some(l), Some(r)) if l < r => header_value[l + 1..r].trim().to_string(),
        _ => header_value.trim().to_string(),
    }
}

/// A new, globally unique Message-ID (with angle brackets).
pub fn new_message_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("<{nanos}.{}.{n}@mailpulse.test>", std::process::id())
}

/// Encodes an unstructured header value (like Subject): returned unchanged if
/// it is printable ASCII, else as RFC 2047 B-encoded UTF-8 words, each at
/// most 75 characters, folded with CRLF SP.
pub fn encode_unstructured(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b)) && !value.contains("=?");
    if plain {
        return value.to_string();
    }
    // 45 bytes of UTF-8 -> 60 base64 chars + 12 of "=?UTF-8?B?" "?=" = 72 <= 75.
    // Words must not split a multi-byte character.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for ch in value.chars() {
        if chunk.len() + ch.len_utf8() > 45 {
            words.push(encoded_word(&chunk));
            chunk.clear();
        }
        chunk.push(ch);
    }
    if !chunk.is_empty() {
        words.push(encoded_word(&chunk));
    }
    words.join("\r\n ")
}

/// Encodes the display name of `Name <addr>` if it is not ASCII.
fn encode_address_header(value: &str) -> String {
    if value.is_ascii() {
        return value.to_string();
    }
    match value.rfind('<') {
        Some(l) => {
            let name = value[..l].trim().trim_matches('"');
            format!("{} {}", encode_unstructured(name), &value[l..])
        }
        None => value.to_string(),
    }
}

fn encoded_word(s: &str) -> String {
    format!("=?UTF-8?B?{}?=", base64(s.as_bytes()))
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 5322 date in UTC, e.g. `Mon, 01 Jan 2024 00:00:00 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize], // 1970-01-01 was a Thursday
        d,
        MONTHS[(m - 1) as usize],
        y,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31), proleptic
/// Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
