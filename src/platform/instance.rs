//! Single instance: the first `mailpulse` listens; a second one connects, asks it to open
//! Settings, and exits.
//!
//! On Unix the first listens on a socket in the runtime directory (mode 0700 folder: only the
//! user can connect). Elsewhere (Windows) it listens on a loopback TCP port that it writes, with
//! a random token, into a file in the user's own state folder; a request must carry the token,
//! so another user of the machine cannot reach it. Both speak the same one-line protocol:
//! `settings[ TOKEN]` → `ok`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

// The loopback transport serves Windows; it is compiled and tested on every host.

/// What a second instance can ask of the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    OpenSettings,
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

/// The first instance's side of one connection: a request line equal to `expected` is passed
/// on and answered `ok`; anything else is dropped unanswered.
pub(super) fn answer(stream: impl Read + Write, expected: &str, on_request: &impl Fn(Request)) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_ok() && line.trim_end() == expected {
        on_request(Request::OpenSettings);
        let _ = reader.get_mut().write_all(b"ok\n");
    }
}

pub(super) fn listen_thread(serve: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("mailpulse-instance".into())
        .spawn(serve)
        .map(drop)
}

/// The loopback-TCP variant (Windows; compiled and tested everywhere).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod loopback {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

    /// `port_file` holds `PORT TOKEN` of the running instance.
    pub fn claim(
        port_file: &Path,
        on_request: impl Fn(Request) + Send + 'static,
    ) -> std::io::Result<Claim> {
        if let Some((port, token)) = std::fs::read_to_string(port_file)
            .ok()
            .and_then(|t| parse(&t))
        {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if let Ok(stream) = TcpStream::connect_timeout(&addr, ANSWER_WITHIN) {
                stream.set_read_timeout(Some(ANSWER_WITHIN))?;
                if ask(&stream, &format!("settings {token}\n")) {
                    return Ok(Claim::Forwarded);
                }
            }
        }
        // Nobody answered: no instance, or a stale file from a crashed one.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(dir) = port_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::fs::write_atomic(port_file, format!("{port} {token}\n").as_bytes())?;
        let expected = format!("settings {token}");
        listen_thread(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(ANSWER_WITHIN));
                answer(&stream, &expected, &on_request);
            }
        })?;
        Ok(Claim::First)
    }

    fn parse(text: &str) -> Option<(u16, String)> {
        let mut words = text.split_whitespace();
        let port = words.next()?.parse().ok()?;
        let token = words.next()?.to_owned();
        Some((port, token))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::sync::mpsc::channel;

        #[test]
        fn a_second_instance_asks_the_first_over_loopback() {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("state/instance.port");
            let (tx, rx) = channel();
            assert!(matches!(
                claim(&file, move |r| tx.send(r).unwrap()).unwrap(),
                Claim::First
            ));
            assert!(matches!(
                claim(&file, |_| panic!("not the first")).unwrap(),
                Claim::Forwarded
            ));
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(5)).unwrap(),
                Request::OpenSettings
            );
        }

        #[test]
        fn a_request_without_the_token_is_ignored() {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("instance.port");
            let (tx, rx) = channel();
            claim(&file, move |r| tx.send(r).unwrap()).unwrap();
            let (port, _) = parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
            stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
            assert!(!ask(&stream, "settings\n"));
            assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
        }

        #[test]
        fn a_stale_port_file_is_taken_over() {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("instance.port");
            // A port nobody listens on any more.
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            std::fs::write(&file, format!("{port} 00\n")).unwrap();
            assert!(matches!(claim(&file, |_| {}).unwrap(), Claim::First));
            assert_ne!(
                std::fs::read_to_string(&file).unwrap(),
                format!("{port} 00\n")
            );
        }
    }
}
