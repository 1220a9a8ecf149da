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
