//! A scripted, misbehaving IMAP server on loopback (plain TCP): it speaks just enough IMAP to
//! get the agent logged in and its folder open, then misbehaves in one chosen way. It counts
//! connections, logins and the largest `UID FETCH` it was asked for. Every loop is bounded in
//! count and time; dropping the server stops its threads.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// The answer to the last-item query announces a literal of 400 000 000 bytes.
    HugeLiteral,
    /// The answer to the last-item query is a line that never ends (up to 64 MiB are sent).
    EndlessLine,
    /// The answer to the last-item query is binary garbage.
    Garbage,
    /// `IDLE` is answered with a bare tagged `BAD`, no continuation, no text.
    IdleBad,
    /// `IDLE` gets its continuation, then a second later a bare tagged `BAD`.
    IdleBadLater,
    /// During the first IDLE the folder grows from 1 to this many messages at once.
    Flood(u32),
    /// Every login is refused with `NO [AUTHENTICATIONFAILED]`.
    AuthFailed,
    /// The answer to the last-item query is a `BYE`, then the connection closes.
    ByeMidCommand,
    /// A command that arrives together with the `DONE` ending IDLE (pipelined) is refused with
    /// `BAD`, as a server that does not read ahead might; one sent on its own is answered.
    NoPipelining,
}

/// Each connection ends after this long at the latest.
const CONNECTION_LIMIT: Duration = Duration::from_secs(180);
/// Commands read per connection at most.
const MAX_COMMANDS: usize = 20_000;

pub struct Hostile {
    port: u16,
    stop: Arc<AtomicBool>,
    pub connections: Arc<AtomicUsize>,
    pub logins: Arc<AtomicUsize>,
    /// The most UIDs one `UID FETCH` asked for (that the folder had).
    pub largest_fetch: Arc<AtomicU32>,
    /// Commands refused because they came pipelined after `DONE` (`NoPipelining`).
    pub refused_pipelined: Arc<AtomicUsize>,
    /// `UID FETCH` commands answered normally.
    pub fetches: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    how: Misbehaviour,
    stop: Arc<AtomicBool>,
    logins: Arc<AtomicUsize>,
    largest_fetch: Arc<AtomicU32>,
    refused_pipelined: Arc<AtomicUsize>,
    fetches: Arc<AtomicUsize>,
    /// Messages in the folder; UID = sequence number.
    exists: AtomicU32,
    flooded: AtomicBool,
}

impl Hostile {
    pub fn start(how: Misbehaviour) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            how,
            stop: stop.clone(),
            logins: Arc::new(AtomicUsize::new(0)),
            largest_fetch: Arc::new(AtomicU32::new(0)),
            refused_pipelined: Arc::new(AtomicUsize::new(0)),
            fetches: Arc::new(AtomicUsize::new(0)),
            exists: AtomicU32::new(1),
            flooded: AtomicBool::new(false),
        });
        let (logins, largest_fetch) = (shared.logins.clone(), shared.largest_fetch.clone());
        let (refused_pipelined, fetches) =
            (shared.refused_pipelined.clone(), shared.fetches.clone());
        let count = connections.clone();
        let accept = thread::spawn(move || {
            let mut workers: Vec<JoinHandle<()>> = Vec::new();
            let started = Instant::now();
            // Bounded: the test's lifetime (stop) or 10 minutes, 1000 connections.
            while !shared.stop.load(Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(600)
                && workers.len() < 1000
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let shared = shared.clone();
                        workers.push(thread::spawn(move || {
                            let _ = serve(stream, &shared);
                        }));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => break,
                }
            }
            shared.stop.store(true, Ordering::SeqCst);
            for w in workers {
                let _ = w.join();
            }
        });
        Hostile {
            port,
            stop,
            connections,
            logins,
            largest_fetch,
            refused_pipelined,
            fetches,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One command line: tag, command (upper-cased), the rest.
fn split(line: &str) -> (String, String, String) {
    let mut parts = line.trim_end().splitn(3, ' ');
    let tag = parts.next().unwrap_or("").to_owned();
    let cmd = parts.next().unwrap_or("").to_ascii_uppercase();
    let rest = parts.next().unwrap_or("").to_owned();
    (tag, cmd, rest)
}

fn envelope(uid: u32) -> String {
    format!(
        "* {uid} FETCH (UID {uid} FLAGS () INTERNALDATE \"05-Dec-2026 03:00:00 +0000\" ENVELOPE \
         (\"Sat, 05 Dec 2026 03:00:00 +0000\" \"message {uid}\" ((\"Ann\" NIL \"ann\" \
         \"example.org\")) NIL NIL NIL NIL NIL NIL \"<{uid}@example.org>\"))\r\n"
    )
}

/// The UIDs of `set` (`a`, `*`, `a:b`, `a:*`) that the folder has, as IMAP defines them (`*` is
/// the newest; `a:*` with `a` above it is the newest).
fn uids(set: &str, exists: u32) -> std::ops::RangeInclusive<u32> {
    let n = |s: &str| {
        if s == "*" {
            exists
        } else {
            s.parse().unwrap_or(0)
        }
    };
    let (a, b) = match set.split_once(':') {
        Some((a, b)) => (n(a), n(b)),
        None => (n(set), n(set)),
    };
    let (lo, hi) = (a.min(b), a.max(b));
    lo.max(1)..=hi.min(exists)
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let alive = || !shared.stop.load(Ordering::SeqCst) && started.elapsed() < CONNECTION_LIMIT;
    // A line from the client, waiting while it is silent (bounded by `alive`).
    let read_line = |reader: &mut BufReader<TcpStream>| -> Option<String> {
        let mut line = String::new();
        while alive() {
            match reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with('\n') => return Some(line),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
        None
    };
    out.write_all(b"* OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN] hostile server ready\r\n")?;
    // With `NoPipelining`: the commands that arrived together with a DONE, still to refuse.
    let mut refuse_next = 0;
    for _ in 0..MAX_COMMANDS {
        let Some(line) = read_line(&mut reader) else {
            return Ok(());
        };
        let (tag, cmd, rest) = split(&line);
        if refuse_next > 0 {
            refuse_next -= 1;
            shared.refused_pipelined.fetch_add(1, Ordering::SeqCst);
            write!(
                out,
                "{tag} BAD command received before the previous one ended\r\n"
            )?;
            out.flush()?;
            continue;
        }
        match cmd.as_str() {
            "CAPABILITY" => write!(
                out,
                "* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN\r\n{tag} OK done\r\n"
            )?,
            "AUTHENTICATE" | "LOGIN" => {
                if cmd == "AUTHENTICATE" {
                    out.write_all(b"+ \r\n")?;
                    if read_line(&mut reader).is_none() {
                        return Ok(());
                    }
                }
                shared.logins.fetch_add(1, Ordering::SeqCst);
                if shared.how == Misbehaviour::AuthFailed {
                    write!(
                        out,
                        "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                    )?;
                } else {
                    write!(out, "{tag} OK logged in\r\n")?;
                }
            }
            "EXAMINE" | "SELECT" => {
                let n = shared.exists.load(Ordering::SeqCst);
                write!(
                    out,
                    "* {n} EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT {}] ok\r\n\
                     {tag} OK [READ-ONLY] done\r\n",
                    n + 1
                )?;
            }
            "NOOP" => write!(out, "{tag} OK done\r\n")?,
            "LOGOUT" => {
                write!(out, "* BYE bye\r\n{tag} OK done\r\n")?;
                return Ok(());
            }
            "UID" if rest.to_ascii_uppercase().starts_with("FETCH ") => {
                let mut words = rest.splitn(3, ' ');
                let _ = words.next();
                let set = words.next().unwrap_or("*").to_owned();
                let items = words.next().unwrap_or("").to_ascii_uppercase();
                match shared.how {
                    Misbehaviour::HugeLiteral => {
                        out.write_all(b"* 1 FETCH (UID 1 ENVELOPE ({400000000}\r\n")?;
                        let chunk = vec![b'x'; 64 * 1024];
                        // A little of it, then silence: the agent must not wait for the rest.
                        for _ in 0..16 {
                            out.write_all(&chunk)?;
                        }
                        while alive() {
                            thread::sleep(Duration::from_millis(50));
                        }
                        return Ok(());
                    }
                    Misbehaviour::EndlessLine => {
                        out.write_all(b"* 1 FETCH (UID 1 FLAGS () ENVELOPE (\"")?;
                        let chunk = vec![b'a'; 64 * 1024];
                        for _ in 0..1024 {
                            if !alive() {
                                break;
                            }
                            out.write_all(&chunk)?;
                        }
                        return Ok(());
                    }
                    Misbehaviour::Garbage => {
                        let garbage: Vec<u8> = (0..4096u32)
                            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                            .collect();
                        out.write_all(&garbage)?;
                        out.write_all(b"\r\n")?;
                        continue;
                    }
                    Misbehaviour::ByeMidCommand => {
                        out.write_all(b"* BYE the server is going away\r\n")?;
                        return Ok(());
                    }
                    _ => {}
                }
                shared.fetches.fetch_add(1, Ordering::SeqCst);
                let exists = shared.exists.load(Ordering::SeqCst);
                let range = uids(&set, exists);
                let count = range.clone().count() as u32;
                shared.largest_fetch.fetch_max(count, Ordering::SeqCst);
                let mut answer = String::new();
                for uid in range {
                    if items.contains("ENVELOPE") {
                        answer += &envelope(uid);
                    } else {
                        answer += &format!("* {uid} FETCH (UID {uid})\r\n");
                    }
                    if answer.len() > 1 << 16 {
                        out.write_all(answer.as_bytes())?;
                        answer.clear();
                    }
                }
                answer += &format!("{tag} OK done\r\n");
                out.write_all(answer.as_bytes())?;
            }
            "UID" => write!(out, "* SEARCH\r\n{tag} OK done\r\n")?,
            "IDLE" => match shared.how {
                Misbehaviour::IdleBad => write!(out, "{tag} BAD\r\n")?,
                Misbehaviour::IdleBadLater => {
                    out.write_all(b"+ idling\r\n")?;
                    thread::sleep(Duration::from_secs(1));
                    write!(out, "{tag} BAD\r\n")?;
                }
                how => {
                    out.write_all(b"+ idling\r\n")?;
                    if let Misbehaviour::Flood(n) = how
                        && !shared.flooded.swap(true, Ordering::SeqCst)
                    {
                        thread::sleep(Duration::from_millis(300));
                        shared.exists.store(n, Ordering::SeqCst);
                        write!(out, "* {n} EXISTS\r\n")?;
                    }
                    match read_line(&mut reader) {
                        Some(done) if done.trim().eq_ignore_ascii_case("DONE") => {
                            // What the client sent together with DONE is already read.
                            if how == Misbehaviour::NoPipelining {
                                refuse_next = reader.buffer().split(|b| *b == b'\n').count() - 1;
                            }
                            write!(out, "{tag} OK idle done\r\n")?
                        }
                        _ => return Ok(()),
                    }
                }
            },
            _ => write!(out, "{tag} BAD unknown command\r\n")?,
        }
        out.flush()?;
    }
    Ok(())
}

/// The peak resident memory (VmHWM) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
