//! Account passwords in the operating system's keyring.
//!
//! | platform | store | crate |
//! | --- | --- | --- |
//! | Linux and other freedesktop Unixes | Secret Service over the D-Bus session bus (gnome-keyring, KeePassXC, KWallet, …) | `zbus-secret-service-keyring-store` |
//! | macOS | the login Keychain | `apple-native-keyring-store` (`keychain` feature) |
//! | Windows | Credential Manager (generic credentials) | `windows-native-keyring-store` |
//!
//! # Why `keyring-core` and the store crates rather than the `keyring` crate
//!
//! Since v4 the `keyring` crate is a thin "v1 compatibility" wrapper over `keyring-core` plus
//! one store crate per platform, and its README asks applications to depend on `keyring-core`
//! and the stores they want directly. We do, for two reasons:
//!
//! * `keyring` 4 opens the platform store once per process (a `LazyLock`) and keeps it, so a
//!   failure on first use (the agent started at login before the keyring daemon was on the
//!   bus) or a keyring daemon restart would leave a long-running tray agent without its
//!   keyring until it is restarted. Here every call opens the store afresh: the operations are
//!   rare (start-up, reconnect, `mailpulse password set`) and opening costs a few
//!   milliseconds.
//! * On Linux the zbus store talks D-Bus in pure Rust, and with `crypto-rust` it also
//!   encrypts the secret in transit (Secret Service DH session) in pure Rust: no libdbus,
//!   no OpenSSL, nothing to build or install beyond the session's keyring daemon. (The older
//!   `keyring` 3 `sync-secret-service` route needs libdbus-1-dev at build time.)
//!
//! # Entries
//!
//! Every entry has service [`SERVICE`] and user `"{username}@{host}"`, the IMAP login and the
//! server host, so that renaming an account in the config keeps its password; two accounts
//! with the same login on the same server share it, which is what the user wants. In the
//! Secret Service the item's attributes are `service=mailpulse` and `username=user@host`
//! (label `keyring:user@host@mailpulse`), so `secret-tool lookup service mailpulse username
//! user@host` finds it.
//!
//! # Blocking
//!
//! All functions block (D-Bus round trips, and on Linux possibly an unlock prompt shown by the
//! keyring daemon that waits for the user). From async code call them through
//! `tokio::task::spawn_blocking`.
//!
//! # Secrecy
//!
//! A password never appears in a [`CredentialError`] (its `Display` nor its `Debug`), nor in a
//! log line of this module: errors from the keyring library are reduced to their descriptions
//! here, and the variant of that library which would carry the secret's bytes
//! (`BadEncoding`) is mapped without them.

use std::io::{self, BufRead, IsTerminal};
use std::sync::Arc;

use keyring_core::{CredentialStore, Entry, Error as KeyringError};

/// The keyring service name under which every mailpulse password is stored.
pub const SERVICE: &str = "mailpulse";

/// What the user is told to do when there is no usable keyring.
const UNAVAILABLE_HINT: &str = crate::platform::KEYRING_UNAVAILABLE_HINT;

/// What the user is told to do when the keyring refused access.
const LOCKED_HINT: &str = "unlock your keyring (log in to the desktop session, or unlock it in \
     Passwords and Keys / Seahorse, KeePassXC or Keychain Access) and allow mailpulse to use it, \
     then retry; or use password_command";

/// Why a keyring operation failed. The messages say what the user can do about it.
///
/// No variant ever holds a password.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No keyring could be reached (Linux: no Secret Service on the session bus, or no session
    /// bus at all).
    #[error("{hint} ({detail})", hint = UNAVAILABLE_HINT)]
    Unavailable {
        /// The platform's own description of the failure.
        detail: String,
    },
    /// The keyring is locked and was not unlocked, or access was denied.
    #[error("cannot access the keyring entry for {account}: {hint} ({detail})", hint = LOCKED_HINT)]
    Locked {
        /// `user@host`.
        account: String,
        /// The platform's own description of the failure.
        detail: String,
    },
    /// More than one keyring item matches the account (made by another tool, or by hand).
    #[error(
        "the keyring holds {count} entries for {account} (service {SERVICE}): delete them (e.g. \
         `mailpulse password delete`, or `secret-tool clear service {SERVICE} username \
         {account}` on Linux) and set the password again"
    )]
    Ambiguous {
        /// `user@host`.
        account: String,
        /// How many items matched.
        count: usize,
    },
    /// The stored secret is not UTF-8 text (written by another tool).
    #[error(
        "the keyring entry for {account} is not valid UTF-8 text: set the password again with \
         `mailpulse password set`"
    )]
    BadEncoding {
        /// `user@host`.
        account: String,
    },
    /// The username or host cannot name a keyring entry.
    #[error("cannot store a password for {account:?}: {reason}")]
    InvalidAccount {
        /// `user@host` as given.
        account: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other failure reported by the keyring.
    #[error(
        "the keyring failed on the entry for {account}: {detail}; retry, check the keyring \
         daemon's log, or use password_command"
    )]
    Platform {
        /// `user@host`.
        account: String,
        /// The platform's own description of the failure.
        detail: String,
    },
}

/// The keyring user name of an account: `"{username}@{host}"`.
pub fn account_key(username: &str, host: &str) -> String {
    format!("{username}@{host}")
}

/// The stored password of `username` at `host`, or `Ok(None)` when there is none.
pub fn get_password(username: &str, host: &str) -> Result<Option<String>, CredentialError> {
    let (account, entry) = entry(username, host)?;
    match entry.get_password() {
        Ok(password) => Ok(Some(password)),
        Err(KeyringError::NoEntry) => Ok(None),
        Err(e) => Err(map_error(&account, e)),
    }
}

/// Store (or replace) the password of `username` at `host`.
pub fn set_password(username: &str, host: &str, password: &str) -> Result<(), CredentialError> {
    let (account, entry) = entry(username, host)?;
    entry
        .set_password(password)
        .map_err(|e| map_error(&account, e))?;
    tracing::debug!(account = %account, "password stored in the keyring");
    Ok(())
}

/// Delete the password of `username` at `host`; `Ok(())` when there was none.
pub fn delete_password(username: &str, host: &str) -> Result<(), CredentialError> {
    let (account, entry) = entry(username, host)?;
    match entry.delete_credential() {
        Ok(()) => {
            tracing::debug!(account = %account, "password deleted from the keyring");
            Ok(())
        }
        Err(KeyringError::NoEntry) => Ok(()),
        Err(e) => Err(map_error(&account, e)),
    }
}

/// Read a password for `mailpulse password set`.
///
/// When standard input is a terminal, `prompt` is shown and the password is read from the
/// terminal without echo (`rpassword`). Otherwise (a pipe or file, for scripts) one line is
/// read from standard input without any prompt. The line terminator (`\n` or `\r\n`) is
/// removed; nothing else is trimmed, so a password may begin or end with spaces.
///
/// Fails with [`io::ErrorKind::UnexpectedEof`] when standard input is at its end before any
/// byte, and with [`io::ErrorKind::InvalidData`] when the line is not UTF-8.
pub fn read_password(prompt: &str) -> io::Result<String> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        rpassword::prompt_password(prompt)
    } else {
        read_line(&mut stdin.lock())
    }
}

/// One line from `reader`, without its line terminator.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "no password on standard input (expected one line)",
        ));
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// The keyring user name of an account's OAuth2 refresh token: `"oauth2:{username}@{host}"`,
/// beside (never instead of) its password entry.
pub fn refresh_token_key(username: &str, host: &str) -> String {
    format!("oauth2:{username}@{host}")
}

/// The stored OAuth2 refresh token of `username` at `host`, or `Ok(None)` (not signed in).
pub fn get_refresh_token(username: &str, host: &str) -> Result<Option<String>, CredentialError> {
    let (account, entry) = entry_named(username, host, refresh_token_key(username, host))?;
    match entry.get_password() {
        Ok(token) => Ok(Some(token)),
        Err(KeyringError::NoEntry) => Ok(None),
        Err(e) => Err(map_error(&account, e)),
    }
}

/// Store (or replace) the OAuth2 refresh token of `username` at `host`.
pub fn set_refresh_token(username: &str, host: &str, token: &str) -> Result<(), CredentialError> {
    let (account, entry) = entry_named(username, host, refresh_token_key(username, host))?;
    entry
        .set_password(token)
        .map_err(|e| map_error(&account, e))?;
    tracing::debug!(account = %account, "refresh token stored in the keyring");
    Ok(())
}

/// Forget the OAuth2 refresh token of `username` at `host`; `Ok(())` when there was none.
pub fn delete_refresh_token(username: &str, host: &str) -> Result<(), CredentialError> {
    let (account, entry) = entry_named(username, host, refresh_token_key(username, host))?;
    match entry.delete_credential() {
        Ok(()) | Err(KeyringError::NoEntry) => Ok(()),
        Err(e) => Err(map_error(&account, e)),
    }
}

/// The keyring entry of an account, in a freshly opened platform store.
fn entry(username: &str, host: &str) -> Result<(String, Entry), CredentialError> {
    entry_named(username, host, account_key(username, host))
}

/// The keyring entry `account` (a key made from `username` and `host`).
fn entry_named(
    username: &str,
    host: &str,
    account: String,
) -> Result<(String, Entry), CredentialError> {
    let invalid = |reason: &str| CredentialError::InvalidAccount {
        account: account.clone(),
        reason: reason.to_owned(),
    };
    if username.is_empty() {
        return Err(invalid("the username is empty"));
    }
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    if account.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    let store = open_store()?;
    let entry =
        Entry::new_in_store(&store, SERVICE, &account).map_err(|e| map_error(&account, e))?;
    Ok((account, entry))
}

/// Open this platform's credential store.
fn open_store() -> Result<Arc<CredentialStore>, CredentialError> {
    crate::platform::credential_store().map_err(|e| CredentialError::Unavailable {
        detail: describe(&e),
    })
}

/// A keyring error as a [`CredentialError`] about `account`.
fn map_error(account: &str, e: KeyringError) -> CredentialError {
    let account = account.to_owned();
    match e {
        KeyringError::NoStorageAccess(_) => CredentialError::Locked {
            detail: describe(&e),
            account,
        },
        KeyringError::Ambiguous(entries) => CredentialError::Ambiguous {
            account,
            count: entries.len(),
        },
        // The bytes it carries are the secret: drop them.
        KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(..) => {
            CredentialError::BadEncoding { account }
        }
        KeyringError::Invalid(..) | KeyringError::TooLong(..) => CredentialError::InvalidAccount {
            reason: describe(&e),
            account,
        },
        KeyringError::NoDefaultStore => CredentialError::Unavailable {
            detail: describe(&e),
        },
        other => CredentialError::Platform {
            detail: describe(&other),
            account,
        },
    }
}

/// The description of a keyring error, with its platform cause. Never called on the variants
/// that carry secret bytes.
fn describe(e: &KeyringError) -> String {
    match e {
        KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(..) => {
            "the stored secret is malformed".to_owned()
        }
        // `Display` of these shows the platform error, which describes the D-Bus / OS call.
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_key_is_user_at_host() {
        assert_eq!(
            account_key("me@example.org", "imap.example.org"),
            "me@example.org@imap.example.org"
        );
    }

    #[test]
    fn empty_or_control_characters_are_rejected_before_touching_the_keyring() {
        for (user, host) in [("", "h"), ("u", ""), ("u\n", "h"), ("u", "h\0")] {
            match entry(user, host) {
                Err(CredentialError::InvalidAccount { .. }) => {}
                other => panic!("{user:?}@{host:?}: {:?}", other.map(|(a, _)| a)),
            }
        }
    }

    #[test]
    fn read_line_strips_only_the_line_terminator() {
        let read = |input: &str| read_line(&mut io::Cursor::new(input.as_bytes().to_vec()));
        assert_eq!(read("secret\n").unwrap(), "secret");
        assert_eq!(read("secret\r\n").unwrap(), "secret");
        assert_eq!(read("secret").unwrap(), "secret");
        assert_eq!(read(" sp ace \t\n").unwrap(), " sp ace \t");
        assert_eq!(read("pässwörd ✓\nsecond line\n").unwrap(), "pässwörd ✓");
        assert_eq!(read("\n").unwrap(), "");
        assert_eq!(read("").unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let bad = read_line(&mut io::Cursor::new(vec![0xff, b'\n'])).unwrap_err();
        assert_eq!(bad.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn bad_encoding_drops_the_secret_bytes() {
        let secret = b"hunter2-\xff".to_vec();
        let e = map_error("u@h", KeyringError::BadEncoding(secret));
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("104, 117"), "{shown}"); // "hu" as a byte list
        assert!(matches!(e, CredentialError::BadEncoding { .. }));
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = CredentialError::Unavailable { detail: "x".into() };
        assert!(e.to_string().contains("password_command"), "{e}");
        assert!(
            e.to_string()
                .starts_with(crate::platform::KEYRING_UNAVAILABLE_HINT),
            "{e}"
        );
        let e = CredentialError::Locked {
            account: "u@h".into(),
            detail: "x".into(),
        };
        assert!(e.to_string().contains("unlock"), "{e}");
    }
}
