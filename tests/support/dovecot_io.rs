//! What the private Dovecot's tests read and write besides IMAP: its rawlogs (parsed into the
//! commands a client sent, secrets masked), the Maildir's uidlist lock, and LMTP delivery.

use super::*;

/// The `*.in` files (client to server) of a rawlog directory.
pub(super) fn rawlog_in_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "in"))
        .collect();
    files.sort();
    files
}

/// PID in a rawlog file name: `20261128-075931.<pid>.<n>.in`.
pub(super) fn rawlog_file_pid(path: &Path) -> Option<u32> {
    path.file_name()?.to_str()?.split('.').nth(1)?.parse().ok()
}

/// One rawlog `.in` file: (timestamp, line) per client line, secrets masked.
/// For pre-login files, reading stops where TLS starts (a TLS record starts
/// with byte 0x16: implicit TLS, or what follows STARTTLS).
pub(super) fn read_rawlog(path: &Path, prelogin: bool) -> Vec<((u64, u64), String)> {
    let bytes = fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut in_sasl = false;
    for raw in bytes.split(|b| *b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let (ts, text) = split_rawlog_timestamp(raw);
        if prelogin && text.first() == Some(&0x16) {
            break;
        }
        let text = String::from_utf8_lossy(text).into_owned();
        let verb = text.split(' ').nth(1).unwrap_or("").to_ascii_uppercase();
        let line = if in_sasl && !text.contains(' ') {
            "***".to_string() // SASL continuation (base64 or "*")
        } else {
            in_sasl = verb == "AUTHENTICATE";
            mask_secrets(&text)
        };
        out.push((ts, line));
        if prelogin && verb == "STARTTLS" {
            break;
        }
    }
    out
}

/// Merges sessions by timestamp (stable within a session).
pub(super) fn merge_sessions(sessions: Vec<Vec<((u64, u64), String)>>) -> Vec<String> {
    let mut all: Vec<((u64, u64), usize, usize, String)> = Vec::new();
    for (si, session) in sessions.into_iter().enumerate() {
        for (li, (ts, text)) in session.into_iter().enumerate() {
            all.push((ts, si, li, text));
        }
    }
    all.sort();
    all.into_iter().map(|(_, _, _, text)| text).collect()
}

/// Splits `1795851594.617225 b SELECT INBOX` into ((secs, usecs), text).
/// Lines without a timestamp sort first.
pub(super) fn split_rawlog_timestamp(line: &[u8]) -> ((u64, u64), &[u8]) {
    let parse = || {
        let space = line.iter().position(|b| *b == b' ')?;
        let ts = std::str::from_utf8(&line[..space]).ok()?;
        let (secs, usecs) = ts.split_once('.')?;
        Some((
            (secs.parse().ok()?, usecs.parse().ok()?),
            &line[space + 1..],
        ))
    };
    parse().unwrap_or(((0, 0), line))
}

/// `tag LOGIN user password` -> `tag LOGIN user ***`;
/// `tag AUTHENTICATE MECH initial-response` -> `tag AUTHENTICATE MECH ***`.
pub(super) fn mask_secrets(line: &str) -> String {
    let parts: Vec<&str> = line.splitn(4, ' ').collect();
    let verb = parts.get(1).map(|v| v.to_ascii_uppercase());
    match verb.as_deref() {
        Some("LOGIN" | "AUTHENTICATE") if parts.len() == 4 => {
            format!("{} {} {} ***", parts[0], parts[1], parts[2])
        }
        _ => line.to_string(),
    }
}

/// The dotlock Dovecot takes on a Maildir's `dovecot-uidlist`, held by the
/// harness (see [`Dovecot::deliver_many`]); released on drop.
pub(super) struct UidlistLock {
    path: PathBuf,
    file: fs::File,
    touched: Instant,
}

impl UidlistLock {
    /// Creates the lock file with O_EXCL (as Dovecot's dotlocks do), waiting
    /// at most 10 s for a Dovecot process that holds it.
    pub(super) fn acquire(maildir: &Path, id: &Identity) -> UidlistLock {
        let path = maildir.join("dovecot-uidlist.lock");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    // Empty content: Dovecot then judges staleness by mtime
                    // only (stale after 2 minutes), see keep_fresh.
                    chown_tree(&path, id.mail_uid, id.mail_gid);
                    return UidlistLock {
                        path,
                        file,
                        touched: Instant::now(),
                    };
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && Instant::now() < deadline =>
                {
                    sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }

    /// Updates the mtime now and then so that Dovecot never finds it stale.
    pub(super) fn keep_fresh(&mut self) {
        if self.touched.elapsed() > Duration::from_secs(10) {
            let _ = self.file.set_modified(std::time::SystemTime::now());
            self.touched = Instant::now();
        }
    }
}

impl Drop for UidlistLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A minimal LMTP client (RFC 2033) with bounded reads.
pub(super) struct Lmtp {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Lmtp {
    pub(super) fn connect(port: u16) -> Lmtp {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to LMTP port {port}: {e}"));
        stream
            .set_read_timeout(Some(LMTP_TIMEOUT))
            .expect("timeout");
        stream
            .set_write_timeout(Some(LMTP_TIMEOUT))
            .expect("timeout");
        let writer =
            BufWriter::with_capacity(64 * 1024, stream.try_clone().expect("clone LMTP stream"));
        Lmtp {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Reads one (possibly multi-line) reply; returns (code, lines).
    pub(super) fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("LMTP: connection closed; got {lines:?}"),
                Ok(_) => {}
                Err(e) => panic!("LMTP: read failed: {e}; got {lines:?}"),
            }
            let line = line.trim_end().to_string();
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line);
            if !more {
                break;
            }
        }
        let code = lines
            .last()
            .and_then(|l| l.get(..3)?.parse().ok())
            .unwrap_or(0);
        (code, lines)
    }

    pub(super) fn expect(&mut self, code: u16, what: &str) {
        let (got, lines) = self.reply();
        assert_eq!(got, code, "LMTP {what}: unexpected reply {lines:?}");
    }

    pub(super) fn send(&mut self, data: &str) {
        self.writer
            .write_all(data.as_bytes())
            .expect("LMTP: write failed");
    }

    pub(super) fn flush(&mut self) {
        self.writer.flush().expect("LMTP: flush failed");
    }

    pub(super) fn handshake(&mut self) {
        self.expect(220, "greeting");
        self.send("LHLO localhost\r\n");
        self.flush();
        self.expect(250, "LHLO");
    }

    /// One message to one recipient. MAIL, RCPT and DATA are pipelined
    /// (Dovecot advertises PIPELINING), so this costs two round trips.
    pub(super) fn transaction(&mut self, mail_from: &str, rcpt: &str, msg: &str) {
        self.send(&format!(
            "MAIL FROM:<{mail_from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
        ));
        self.flush();
        self.expect(250, "MAIL FROM");
        self.expect(250, &format!("RCPT TO:<{rcpt}>"));
        self.expect(354, "DATA");
        // Dot-stuffing; msg uses CRLF and ends with CRLF.
        for line in msg.split_inclusive("\r\n") {
            if line.starts_with('.') {
                self.send(".");
            }
            self.send(line);
        }
        if !msg.ends_with("\r\n") {
            self.send("\r\n");
        }
        self.send(".\r\n");
        self.flush();
        // LMTP: one reply per accepted recipient (we have one).
        self.expect(250, "end of DATA");
    }

    pub(super) fn quit(&mut self) {
        self.send("QUIT\r\n");
        self.flush();
        self.expect(221, "QUIT");
    }
}
