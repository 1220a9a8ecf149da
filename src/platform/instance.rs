//! Single instance: the first `mailpulse` listens; a second one connects, asks it to open
//! Settings, and exits.
//!
//! On Unix the first listens on a socket in the runtime directory (mode 0700 folder: only the
//! user can connect). On Windows a named mutex tells that one runs, and it listens on a named
//! pipe whose access list names only this user. Both speak the same one-line protocol:
//! `settings` → `ok` (a second start), `credentials` → `ok` (`mailpulse password set`); the
//! transports are in the OS rooms.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

/// What a second instance can ask of the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    OpenSettings,
    /// A password was stored or removed (`mailpulse password`): an account whose logins are
    /// blocked after a rejection looks at its keyring entry again.
    CheckCredentials,
}

impl Request {
    /// The request's line on the wire (without the line break).
    pub fn line(self) -> &'static str {
        match self {
            Request::OpenSettings => "settings",
            Request::CheckCredentials => "credentials",
        }
    }

    fn from_line(line: &str) -> Option<Request> {
        [Request::OpenSettings, Request::CheckCredentials]
            .into_iter()
            .find(|r| r.line() == line)
    }
}

pub enum Claim {
    /// We are the only instance; requests from later ones arrive through `on_request`.
    First,
    /// Another instance is running and was asked to open Settings.
    Forwarded,
}

/// How long either side waits for the other's line.
pub(super) const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The second instance's side: send the request line, `true` when the first answered `ok`.
pub(super) fn ask(mut stream: impl Read + Write, line: &str) -> bool {
    if stream.write_all(line.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = BufReader::new(stream).read_line(&mut reply);
    reply.trim() == "ok"
}

/// The first instance's side of one connection: a known request line is passed on and
/// answered `ok`; anything else is dropped unanswered.
pub(super) fn answer(stream: impl Read + Write, on_request: &impl Fn(Request)) {
    let mut reader = BufReader::new(stream.take(64));
    let mut line = String::new();
    if reader.read_line(&mut line).is_ok()
        && let Some(request) = Request::from_line(line.trim_end())
    {
        on_request(request);
        let _ = reader.into_inner().into_inner().write_all(b"ok\n");
    }
}

pub(super) fn listen_thread(serve: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("mailpulse-instance".into())
        .spawn(serve)
        .map(drop)
}
