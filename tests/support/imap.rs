//! A minimal raw IMAP client over plain TCP for tests: send lines, read
//! lines with deadlines. It does not parse literals or responses; every read
//! is bounded in time so a silent server fails the test instead of hanging.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long [`ImapClient::command`] waits for the tagged completion.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ImapClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Bytes of a line not yet terminated by LF (kept across read timeouts).
    partial: Vec<u8>,
    next_tag: u32,
}

impl ImapClient {
    /// Connects to 127.0.0.1:`port`; does not read the greeting.
    pub fn connect(port: u16) -> ImapClient {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to IMAP port {port}: {e}"));
        // Short socket timeout: the deadlines are enforced in read_line.
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("set_write_timeout");
        let writer = stream.try_clone().expect("clone stream");
        ImapClient {
            reader: BufReader::new(stream),
            writer,
            partial: Vec::new(),
            next_tag: 1,
        }
    }

    /// Connects and returns the client with the greeting line (`* OK ...`).
    pub fn connect_greeted(port: u16) -> (ImapClient, String) {
        let mut client = ImapClient::connect(port);
        let greeting = client
            .read_line(Duration::from_secs(10))
            .expect("no IMAP greeting within 10 s");
        (client, greeting)
    }

    /// Reads one line (without CRLF); `None` on timeout or EOF.
    pub fn read_line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.reader.read_until(b'\n', &mut self.partial) {
                Ok(0) => return None, // EOF
                Ok(_) if self.partial.ends_with(b"\n") => {
                    let line = String::from_utf8_lossy(&self.partial)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    self.partial.clear();
                    return Some(line);
                }
                Ok(_) => {} // partial line, keep reading
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Sends one raw line (CRLF appended).
    pub fn send_line(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("send {line:?}: {e}"));
    }

    /// Sends `<tag> <cmd>` with a fresh tag and returns every line up to and
    /// including the tagged completion. Panics if it does not arrive within
    /// [`COMMAND_TIMEOUT`].
    pub fn command(&mut self, cmd: &str) -> Vec<String> {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        self.send_line(&format!("{tag} {cmd}"));
        let prefix = format!("{tag} ");
        let mut lines = Vec::new();
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_line(left) {
                Some(line) => {
                    let done = line.starts_with(&prefix);
                    lines.push(line);
                    if done {
                        return lines;
                    }
                }
                None => panic!("no tagged reply to {cmd:?}; got so far: {lines:#?}"),
            }
        }
    }

    /// Like [`command`](Self::command) but asserts a tagged `OK`.
    pub fn command_ok(&mut self, cmd: &str) -> Vec<String> {
        let lines = self.command(cmd);
        let last = lines.last().expect("tagged line");
        let status = last.split(' ').nth(1).unwrap_or("");
        assert_eq!(status, "OK", "{cmd:?} failed: {lines:#?}");
        lines
    }

    /// LOGIN with a quoted user and password; asserts OK.
    pub fn login(&mut self, user: &str, password: &str) -> Vec<String> {
        self.command_ok(&format!("LOGIN {} {}", quote(user), quote(password)))
    }

    /// Reads lines until one satisfies `pred` (returned) or `timeout` passes
    /// (`None`). Lines read before are collected into `seen`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        seen: &mut Vec<String>,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let line = self.read_line(left)?;
            if pred(&line) {
                return Some(line);
            }
            seen.push(line);
        }
    }
}

/// An IMAP quoted string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
