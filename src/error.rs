//! The failure types every layer shares: what kind of failure (the engine acts on it, a UI says
//! what to do about it) and a message in words a user can act on. This module imports nothing of
//! the crate, so that config, secrets, OAuth, protocols and the engine can all use it without
//! depending on each other.

use std::fmt;

use serde::Serialize;

/// What kind of failure an [`Event::Error`] reports, so a UI can say what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The configuration is invalid (names file, line and key).
    Config,
    /// The password (or its `password_command`) could not be obtained.
    Secret,
    /// The host name does not resolve.
    Resolve,
    /// TCP connection refused, unreachable or timed out.
    Connect,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// The server rejected the credentials.
    Auth,
    /// The folder does not exist or cannot be opened.
    Folder,
    /// The server answered something that is not valid IMAP, or refused a command.
    Protocol,
    /// No answer within `response_timeout_secs`: the connection is considered dead.
    Timeout,
    /// The connection was closed or reset (by the server, a NAT gateway or a firewall).
    Disconnected,
    /// A bug in mailpulse: a folder's task ended on a panic (it is restarted).
    Internal,
    /// The server asked to wait (Graph's 429/503 with `Retry-After`): not a failure of the
    /// connection, shown as the state "throttled", never as an error; nothing is sent before
    /// [`ProtoError::retry_after`] has passed.
    Throttled,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// A failure with the kind the engine acts on (back off longer for `Auth`, ...) and a message in
/// words a user can act on. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtoError {
    pub kind: ErrorKind,
    pub message: String,
    /// How long the server asked to wait before the next request ([`ErrorKind::Throttled`]).
    pub retry_after: Option<std::time::Duration>,
}

impl ProtoError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProtoError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The server asked to wait `wait` before anything more is sent.
    pub fn throttled(message: impl Into<String>, wait: std::time::Duration) -> Self {
        ProtoError {
            kind: ErrorKind::Throttled,
            message: message.into(),
            retry_after: Some(wait),
        }
    }
}

/// A panic's message (its payload is a `&str` or a `String` unless someone panicked with
/// something else), clipped: it goes into an event the tray shows.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    let mut clipped: String = text.chars().take(300).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}
