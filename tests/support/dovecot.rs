//! A private Dovecot 2.3 instance for integration tests.
//!
//! Everything lives in one temporary directory:
//!
//! ```text
//! <tmp>/dovecot.conf      our own config (no !include of /etc/dovecot)
//! <tmp>/users             passwd-file, {PLAIN} passwords
//! <tmp>/tls/              ca.pem, server.pem, server.key (rcgen)
//! <tmp>/run/              base_dir (unix sockets, master.pid)
//! <tmp>/run/login/rawlogs pre-login rawlogs (`imap-login -R`), per connection
//! <tmp>/state/            state_dir
//! <tmp>/home/<user>/      userdb home
//! <tmp>/mail/<user>/      Maildir (INBOX): new/ cur/ tmp/
//! <tmp>/rawlog/<user>/    rawlog_dir: <date>-<time>.<pid>.<n>.in / .out per session
//! <tmp>/dovecot.log       log_path = info_log_path = debug_log_path
//! <tmp>/dovecot.stderr    stdout/stderr of the master (early startup errors)
//! ```
//!
//! The master runs in the foreground (`dovecot -F -c <tmp>/dovecot.conf`) as
//! a child process, so its PID is known and it is stopped by PID.
//!
//! Users and privileges: Dovecot refuses to access mail as uid 0 ("userdb
//! returned 0 as uid", "Mail access not allowed for root"), whatever
//! `first_valid_uid` says. So when the tests run as root, mail is owned by
//! the unprivileged uid/gid 65534 (`nobody`/`nogroup` on Debian) and the
//! mail, home and rawlog directories are chowned to it; Dovecot's own
//! services keep the package users `dovecot`/`dovenull`. When the tests run
//! as an ordinary user, mail uid/gid are that user's, every Dovecot service
//! runs as that user and the login chroots are disabled.
//!
//! Logs: `auth_verbose = yes`, so a failed password is logged by the auth
//! process; a successful login is logged by imap-login (see
//! [`Dovecot::login_attempts`]). `auth_failure_delay` is left at its default
//! of 2 s: a failed LOGIN/AUTHENTICATE is answered after about 2 s.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

#[path = "dovecot_io.rs"]
mod dovecot_io;
use dovecot_io::*;

use super::message;
use super::tls::{self, TlsFiles};

/// How long [`Dovecot::start`]/[`Dovecot::restart`] wait for the ports.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Dovecot::stop`] waits after SIGTERM before SIGKILL. Dovecot's
/// master needs 1–3 s to shut down cleanly (it waits for its log process).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read timeout for LMTP replies.
const LMTP_TIMEOUT: Duration = Duration::from_secs(60);
/// uid/gid owning the mail when the tests run as root (`nobody`/`nogroup`).
const ROOT_MAIL_ID: u32 = 65534;

/// The capability list Dovecot 2.3.19 advertises after login by default
/// (CAPABILITY_STRING plus the LITERAL+ and NOTIFY it appends by itself).
/// Setting `imap_capability` explicitly replaces the whole list (also the
/// pre-login one), so `idle: false` sets this list without IDLE. Test
/// `idle_false_hides_idle` checks it against a default instance.
const DEFAULT_CAPABILITY: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT \
    SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL \
    CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC \
    ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY \
    PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY";

/// What the private server offers.
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    /// (user, password) pairs; passwords are stored as `{PLAIN}`.
    pub users: Vec<(String, String)>,
    /// Advertise IDLE in the capability list. When false, `imap_capability`
    /// is set to Dovecot's normal list minus IDLE (the command itself still
    /// works: Dovecot cannot switch it off).
    pub idle: bool,
    /// `imap_idle_notify_interval` in seconds. 0 (accepted by Dovecot 2.3)
    /// means Dovecot never sends its `* OK Still here` keepalives in IDLE.
    pub idle_notify_interval_secs: u32,
    /// `Some(url)`: also accept OAuth2 bearer tokens (SASL XOAUTH2 and OAUTHBEARER) through an
    /// `oauth2` passdb that validates each token by POSTing it to this RFC 7662 introspection
    /// URL (`{"active": true, "username": ...}`). Passwords keep working beside it.
    pub oauth2_introspection_url: Option<String>,
    /// Courier-style folders: separator "." and every folder under the namespace prefix
    /// "INBOX." (`INBOX.Work`), as on servers migrated from Courier (or Cyrus's default).
    pub inbox_prefix_namespace: bool,
}

impl Default for DovecotOptions {
    fn default() -> Self {
        DovecotOptions {
            users: vec![("alice".to_string(), "secret-pw".to_string())],
            idle: true,
            idle_notify_interval_secs: 0,
            oauth2_introspection_url: None,
            inbox_prefix_namespace: false,
        }
    }
}

/// A running (or stopped) private Dovecot. Dropping it stops the server and
/// removes its directory (set `MAILPULSE_KEEP_DOVECOT=1` to keep it).
pub struct Dovecot {
    opts: DovecotOptions,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    tls: TlsFiles,
    id: Identity,
    imap_port: u16,
    imaps_port: u16,
    lmtp_port: u16,
    child: Option<Child>,
}

/// Whose files the mail is, and which users Dovecot's services run as.
struct Identity {
    mail_uid: u32,
    mail_gid: u32,
    /// `Some((user, group))` when not root: every service runs as that user.
    unprivileged: Option<(String, String)>,
}

impl Dovecot {
    /// Writes the config, starts the master and waits (at most 10 s) until
    /// the IMAP, IMAPS and LMTP ports accept TCP connections. Panics with
    /// Dovecot's log on failure.
    pub fn start(opts: DovecotOptions) -> Dovecot {
        assert!(!opts.users.is_empty(), "DovecotOptions.users is empty");
        for (user, password) in &opts.users {
            let bad = |s: &str| s.is_empty() || s.contains([':', '\n', '\r', '/', ' ', '%']);
            assert!(!bad(user), "unsupported user name {user:?}");
            assert!(
                !password.contains([':', '\n', '\r']),
                "unsupported password for {user:?}"
            );
        }

        let dir = tempfile::Builder::new()
            .prefix("mailpulse-dovecot-")
            .tempdir()
            .expect("create Dovecot temp dir");
        let root = dir.path().to_path_buf();
        // Dovecot's unprivileged processes (auth as `dovecot`, mail as the
        // mail uid) must be able to traverse the directory.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        let id = Identity::detect(&root);

        let mut passwd = String::new();
        for (user, password) in &opts.users {
            passwd.push_str(&format!("{user}:{{PLAIN}}{password}::::::\n"));
            for sub in ["home", "rawlog"] {
                fs::create_dir_all(root.join(sub).join(user)).expect("create user dir");
            }
        }
        fs::create_dir_all(root.join("mail")).expect("create mail dir");
        fs::write(root.join("users"), passwd).expect("write passwd-file");
        for sub in ["home", "mail", "rawlog"] {
            chown_tree(&root.join(sub), id.mail_uid, id.mail_gid);
        }
        let tls = tls::write_test_pki(&root.join("tls"));

        let mut dovecot = Dovecot {
            opts,
            dir: Some(dir),
            root,
            tls,
            id,
            imap_port: 0,
            imaps_port: 0,
            lmtp_port: 0,
            child: None,
        };
        // The ports are picked by binding port 0 and released again, so
        // another process may grab one before Dovecot binds it: retry with
        // new ports when Dovecot says "Address already in use".
        for attempt in 1..=3 {
            let ports = distinct_free_ports();
            (dovecot.imap_port, dovecot.imaps_port, dovecot.lmtp_port) = ports;
            fs::write(dovecot.config_path(), dovecot.render_config()).expect("write config");
            match dovecot.spawn_and_wait() {
                Ok(()) => return dovecot,
                Err(e) if attempt < 3 && dovecot.startup_output().contains("in use") => {
                    eprintln!("dovecot: port clash ({e}), retrying with new ports");
                }
                Err(e) => panic!("{}", dovecot.failure_report(&e)),
            }
        }
        unreachable!()
    }

    /// Plaintext IMAP on 127.0.0.1 (offers STARTTLS).
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// Implicit-TLS IMAP on 127.0.0.1.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// LMTP on 127.0.0.1.
    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    /// PEM file of the test CA that signed the server certificate
    /// (SAN: DNS `localhost`, IP 127.0.0.1).
    pub fn ca_pem(&self) -> PathBuf {
        self.tls.ca_pem.clone()
    }

    /// PEM file of the server certificate (leaf).
    pub fn server_cert_pem(&self) -> PathBuf {
        self.tls.cert_pem.clone()
    }

    /// The instance's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// PID of the Dovecot master, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the master by PID: SIGTERM, wait up to 10 s, then SIGKILL.
    /// Dovecot's master kills its own children (imap, lmtp, auth, ...) on
    /// SIGTERM, so open client connections are closed. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // std only offers SIGKILL; send SIGTERM via the shell's builtin.
            let _ = Command::new("sh")
                .args(["-c", "kill -TERM \"$1\"", "sh", &child.id().to_string()])
                .stdin(Stdio::null())
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                    _ => {
                        eprintln!("dovecot: master {} ignored SIGTERM, killing", child.id());
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        // Reap it if it had already exited.
        let _ = child.wait();
    }

    /// Stops and starts the server again with the same config, ports,
    /// Maildirs and certificate, as a server restart looks to clients.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts a server that was [stopped](Self::stop) again with the same config, ports,
    /// Maildirs and certificate (a no-op while it runs).
    /// The old server's processes may hold the listening sockets for a few seconds after
    /// the master exited (they finish their clients' shutdown), so "Address already in use"
    /// is retried for up to 30 s.
    pub fn start_again(&mut self) {
        if self.child.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e)
                    if Instant::now() < deadline
                        && self.log().contains("Address already in use") =>
                {
                    eprintln!("dovecot: restart: ports still held ({e}); retrying");
                    self.stop();
                    sleep(Duration::from_secs(1));
                }
                Err(e) => panic!("{}", self.failure_report(&format!("restart: {e}"))),
            }
        }
    }

    /// Delivers one message over LMTP (LHLO, MAIL FROM, RCPT TO, DATA,
    /// QUIT), asserting each reply. `from` is a full header value like
    /// `Bob <bob@example.org>`; a non-ASCII subject is RFC 2047 encoded.
    /// When this returns, the message is in `maildir(user)/new`.
    pub fn deliver(&self, user: &str, from: &str, subject: &str, body: &str) {
        let msg = message::build(from, &self.address(user), subject, body);
        let mut lmtp = Lmtp::connect(self.lmtp_port);
        lmtp.handshake();
        lmtp.transaction(&message::addr_spec(from), user, &msg);
        lmtp.quit();
    }

    /// Puts a message into `user`'s Maildir directly, the way an MTA with its own Maildir
    /// delivery (or anything else that bypasses Dovecot) does: written into `tmp/` and renamed
    /// into `new/` under a unique Maildir name (`<secs>.M<usecs>P<pid>Q<n>.<host>`), owned by
    /// the mail user. Works while the server is stopped; Dovecot gives the message its UID
    /// when it next syncs the folder. Returns the file's path in `new/`.
    pub fn drop_into_maildir(&self, user: &str, from: &str, subject: &str, body: &str) -> PathBuf {
        static DELIVERIES: AtomicU32 = AtomicU32::new(0);
        let maildir = self.maildir(user);
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(maildir.join(sub)).expect("create Maildir");
        }
        chown_tree(&maildir, self.id.mail_uid, self.id.mail_gid);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970");
        // The host part must not contain '/' or ':' (Maildir's escapes for them).
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
            .replace('/', "\\057")
            .replace(':', "\\072");
        let name = format!(
            "{}.M{}P{}Q{}.{host}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            DELIVERIES.fetch_add(1, Ordering::Relaxed) + 1
        );
        let msg = message::build(from, &self.address(user), subject, body);
        let tmp = maildir.join("tmp").join(&name);
        let new = maildir.join("new").join(&name);
        fs::write(&tmp, msg).expect("write the message into tmp/");
        chown_tree(&tmp, self.id.mail_uid, self.id.mail_gid);
        // Never replace another message: the name is unique, and link fails if it is not.
        fs::hard_link(&tmp, &new).expect("link the message into new/");
        fs::remove_file(&tmp).expect("remove the message from tmp/");
        new
    }

    /// Delivers `n` messages (subjects `bulk 1` .. `bulk n`, in that order)
    /// in one LMTP session, with pipelined MAIL/RCPT/DATA.
    ///
    /// Speed: a normal LMTP delivery into Maildir re-reads the whole
    /// `dovecot-uidlist` and syncs the index, so its cost grows with the
    /// mailbox (20 000 messages took ~115 s). But Dovecot's Maildir save
    /// only *tries* to lock the uidlist; when it cannot, it just moves the
    /// file into `new/` and leaves UID assignment to the next sync, as for
    /// mail an MTA drops into a Maildir. So the harness holds
    /// `dovecot-uidlist.lock` during the session (from the moment the
    /// uidlist exists: Dovecot creates it only with the lock free, so into a
    /// brand-new mailbox the first message is delivered the normal way), and
    /// afterwards runs `doveadm force-resync` on the INBOX, which assigns
    /// the UIDs in delivery order (Dovecot sorts new files by the time in
    /// their names) and updates the index. When this returns, the mailbox
    /// looks as if every message had been delivered normally (\Recent
    /// included); no IMAP login or rawlog entry is caused. A client with the
    /// mailbox open during the call gets its IDLE push only at the end.
    pub fn deliver_many(&self, user: &str, n: usize) {
        let from = "Bulk Sender <bulk@example.org>";
        let to = self.address(user);
        let maildir = self.maildir(user);
        let mut lock: Option<UidlistLock> = None;
        let mut lmtp = Lmtp::connect(self.lmtp_port);
        lmtp.handshake();
        for i in 1..=n {
            match lock.as_mut() {
                Some(lock) => lock.keep_fresh(),
                None if maildir.join("dovecot-uidlist").exists() => {
                    lock = Some(UidlistLock::acquire(&maildir, &self.id));
                }
                None => {}
            }
            let msg = message::build(
                from,
                &to,
                &format!("bulk {i}"),
                &format!("bulk message {i}\n"),
            );
            lmtp.transaction(&message::addr_spec(from), user, &msg);
        }
        lmtp.quit();
        drop(lock);
        self.doveadm(&["force-resync", "-u", user, "INBOX"]);
    }

    /// Runs `doveadm -c <our config> ARGS` (directly on the storage, as the
    /// mail user; no IMAP session) and panics unless it succeeds.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let bin = std::env::var("DOVEADM_BIN").unwrap_or_else(|_| "/usr/bin/doveadm".into());
        let out = Command::new(&bin)
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "doveadm {args:?} failed: {text}");
        text
    }

    /// Content of Dovecot's log file (errors, info and debug all go there).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// Every IMAP command line the server received from `user`'s clients,
    /// in the order received (all sessions merged by rawlog timestamp).
    ///
    /// Lines are as sent, tag kept (e.g. `t3 SELECT INBOX`, `DONE`), without
    /// the rawlog timestamp. Two rawlogs are combined:
    ///
    /// * pre-login (`imap-login -R`, one file per connection): CAPABILITY,
    ///   ID, STARTTLS, LOGIN, AUTHENTICATE, ... A connection is attributed to
    ///   `user` through the `lpid=` (login process PID) in its imap-login log
    ///   line (`Login: user=<alice>, ...` or `Disconnected: ... user=<alice>`),
    ///   so a connection shows up once it has logged in or disconnected;
    ///   connections that never named a user are only in
    ///   [`all_imap_commands`](Self::all_imap_commands). TLS is not
    ///   decrypted there: after `STARTTLS` (and for implicit TLS on the
    ///   imaps port) the pre-login part of a connection is missing.
    /// * post-login (`rawlog_dir`, [`rawlog_dir`](Self::rawlog_dir)): every
    ///   command after authentication, decrypted.
    ///
    /// Secrets are masked: `t1 LOGIN alice ***`, `t1 AUTHENTICATE PLAIN ***`
    /// and `***` for SASL continuation lines. Literal data appear as lines.
    pub fn imap_commands(&self, user: &str) -> Vec<String> {
        let pids = self.login_pids(user);
        let mut sessions = Vec::new();
        for file in rawlog_in_files(&self.prelogin_rawlog_dir()) {
            if rawlog_file_pid(&file).is_some_and(|pid| pids.contains(&pid)) {
                sessions.push(read_rawlog(&file, true));
            }
        }
        for file in rawlog_in_files(&self.rawlog_dir(user)) {
            sessions.push(read_rawlog(&file, false));
        }
        merge_sessions(sessions)
    }

    /// Like [`imap_commands`](Self::imap_commands), for all clients: every
    /// pre-login connection (also those that never authenticated) and every
    /// user's post-login sessions.
    pub fn all_imap_commands(&self) -> Vec<String> {
        let mut sessions = Vec::new();
        for file in rawlog_in_files(&self.prelogin_rawlog_dir()) {
            sessions.push(read_rawlog(&file, true));
        }
        for (user, _) in &self.opts.users {
            for file in rawlog_in_files(&self.rawlog_dir(user)) {
                sessions.push(read_rawlog(&file, false));
            }
        }
        merge_sessions(sessions)
    }

    /// PIDs of the imap-login processes whose log lines name `user`.
    fn login_pids(&self, user: &str) -> BTreeSet<u32> {
        let name = format!("user=<{user}>,");
        self.log()
            .lines()
            .filter(|l| l.contains("imap-login: ") && l.contains(&name))
            .filter_map(|l| {
                let rest = &l[l.rfind(", lpid=")? + 7..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }

    /// Where imap-login writes pre-login rawlogs (`imap-login -R`).
    fn prelogin_rawlog_dir(&self) -> PathBuf {
        self.base_dir().join("login").join("rawlogs")
    }

    /// Where rawlog files of `user`'s IMAP sessions go.
    /// How many "last inbox item" queries (keep-alives) `user`'s clients sent: `UID FETCH *`
    /// in either form (the keep-alive asks only for the UID), or NOOP on an empty folder.
    pub fn keepalive_queries(&self, user: &str) -> usize {
        self.imap_commands(user)
            .iter()
            .filter(|c| {
                let c = c.to_uppercase();
                c.contains("UID FETCH * (UID") || c.ends_with(" NOOP")
            })
            .count()
    }

    pub fn rawlog_dir(&self, user: &str) -> PathBuf {
        self.root.join("rawlog").join(user)
    }

    /// Number of IMAP LOGIN/AUTHENTICATE attempts for `user`, successful or
    /// not, counted in the log from these lines:
    ///
    /// * success (imap-login):
    ///   `imap-login: Info: Login: user=<alice>, method=PLAIN, rip=127.0.0.1,
    ///   lip=127.0.0.1, mpid=1234, secured, session=<...>, lpid=1230`
    /// * wrong password (auth, from `auth_verbose`):
    ///   `auth: Info: passwd-file(alice,127.0.0.1,<SESSION>): Password mismatch`
    /// * unknown user: `auth: Info: passwd-file(bob,127.0.0.1,<SESSION>): unknown user`
    ///
    /// Only auth lines with a `<session>` id count: LMTP's RCPT lookups log
    /// `passwd-file(user,127.0.0.1): ...` without one. The log is written
    /// asynchronously, so poll when asserting right after a login.
    pub fn login_attempts(&self, user: &str) -> usize {
        let success = format!(": Login: user=<{user}>,");
        let auth = format!("auth: Info: passwd-file({user},");
        self.log()
            .lines()
            .filter(|line| {
                if line.contains("imap-login: Info") && line.contains(&success) {
                    return true;
                }
                match line.find(&auth) {
                    Some(i) => {
                        let rest = &line[i + auth.len()..];
                        let args = rest.split("):").next().unwrap_or("");
                        args.contains(",<")
                    }
                    None => false,
                }
            })
            .count()
    }

    /// For each message in the INBOX Maildir (`new/` and `cur/`): (base file
    /// name before `:`, flags after `:2,` or ""), sorted by name. Moving a
    /// message from new/ to cur/ without flag changes keeps the snapshot.
    pub fn flags_snapshot(&self, user: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = fs::read_dir(self.maildir(user).join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let (base, info) = match name.split_once(':') {
                    Some((base, info)) => (base.to_string(), info),
                    None => (name.clone(), ""),
                };
                let flags = info.strip_prefix("2,").unwrap_or("").to_string();
                out.push((base, flags));
            }
        }
        out.sort();
        out
    }

    /// The user's Maildir (INBOX).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.root.join("mail").join(user)
    }

    // ----- internals -----

    fn config_path(&self) -> PathBuf {
        self.root.join("dovecot.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("dovecot.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.root.join("dovecot.stderr")
    }

    fn base_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The address used in the To header.
    fn address(&self, user: &str) -> String {
        if user.contains('@') {
            user.to_string()
        } else {
            format!("{user}@localhost")
        }
    }

    fn render_config(&self) -> String {
        let id = &self.id;
        let r = self.root.display();
        let mut c = String::new();
        let mut line = |s: &str| {
            c.push_str(s);
            c.push('\n');
        };
        // Unique per instance: tests run in parallel.
        static INSTANCE: AtomicU32 = AtomicU32::new(0);
        let instance = format!(
            "mailpulse-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        );
        line("# Private Dovecot for mailpulse integration tests (generated).");
        line(&format!("instance_name = {instance}"));
        line(&format!("base_dir = {r}/run"));
        line(&format!("state_dir = {r}/state"));
        line("protocols = imap lmtp");
        line("listen = 127.0.0.1");
        line("hostname = localhost");
        line(&format!("log_path = {r}/dovecot.log"));
        line(&format!("info_log_path = {r}/dovecot.log"));
        line(&format!("debug_log_path = {r}/dovecot.log"));
        line("log_timestamp = \"%Y-%m-%d %H:%M:%S \"");
        line("auth_verbose = yes");
        // The default elements plus the login process PID, which names the
        // pre-login rawlog file of the connection (see imap_commands).
        line(
            "login_log_format_elements = user=<%u> method=%m rip=%r lip=%l mpid=%e %c \
             session=<%{session}> lpid=%{pid}",
        );
        if self.opts.oauth2_introspection_url.is_some() {
            line("auth_mechanisms = plain login xoauth2 oauthbearer");
        } else {
            line("auth_mechanisms = plain login");
        }
        line("disable_plaintext_auth = no");
        line("auth_failure_delay = 2 secs");
        line("ssl = yes");
        line(&format!("ssl_cert = <{}", self.tls.cert_pem.display()));
        line(&format!("ssl_key = <{}", self.tls.key_pem.display()));
        line("ssl_min_protocol = TLSv1.2");
        line(&format!("mail_location = maildir:{r}/mail/%u"));
        if self.opts.inbox_prefix_namespace {
            line("namespace inbox {");
            line("  inbox = yes");
            line("  prefix = INBOX.");
            line("  separator = .");
            line("}");
        }
        // Tests need no durability: skip the fsync per delivered message.
        line("mail_fsync = never");
        line(&format!("first_valid_uid = {}", id.mail_uid));
        line(&format!("last_valid_uid = {}", id.mail_uid));
        line(&format!("first_valid_gid = {}", id.mail_gid));
        line(&format!("last_valid_gid = {}", id.mail_gid));
        if let Some((user, group)) = &id.unprivileged {
            line(&format!("default_internal_user = {user}"));
            line(&format!("default_internal_group = {group}"));
            line(&format!("default_login_user = {user}"));
        }
        if let Some(url) = &self.opts.oauth2_introspection_url {
            // Dovecot 2.3: the oauth2 passdb answers the token mechanisms only; every token is
            // introspected (no tokeninfo_url, no auth cache), so a revoked or expired token is
            // refused at once.
            let ext = self.root.join("dovecot-oauth2.conf.ext");
            fs::write(
                &ext,
                format!(
                    "introspection_mode = post\nintrospection_url = {url}\n\
                     username_attribute = username\nactive_attribute = active\n\
                     active_value = true\n"
                ),
            )
            .expect("write oauth2 passdb config");
            line("passdb {");
            line("  driver = oauth2");
            line("  mechanisms = xoauth2 oauthbearer");
            line(&format!("  args = {}", ext.display()));
            line("}");
        }
        line("passdb {");
        line("  driver = passwd-file");
        line(&format!(
            "  args = scheme=PLAIN username_format=%u {r}/users"
        ));
        line("}");
        line("userdb {");
        line("  driver = static");
        line(&format!(
            "  args = uid={} gid={} home={r}/home/%u",
            id.mail_uid, id.mail_gid
        ));
        line("}");
        line("protocol imap {");
        line(&format!("  rawlog_dir = {r}/rawlog/%u"));
        line(&format!(
            "  imap_idle_notify_interval = {} secs",
            self.opts.idle_notify_interval_secs
        ));
        if !self.opts.idle {
            let caps: Vec<&str> = DEFAULT_CAPABILITY
                .split_whitespace()
                .filter(|c| *c != "IDLE")
                .collect();
            line(&format!("  imap_capability = {}", caps.join(" ")));
        }
        line("}");
        line("service imap-login {");
        // Pre-login rawlog. The path is inside the login chroot
        // (base_dir/login) when running as root.
        let prelogin_dir = match id.unprivileged {
            None => "rawlogs".to_string(),
            Some(_) => self.prelogin_rawlog_dir().display().to_string(),
        };
        line(&format!("  executable = imap-login -R {prelogin_dir}"));
        line("  inet_listener imap {");
        line("    address = 127.0.0.1");
        line(&format!("    port = {}", self.imap_port));
        line("  }");
        line("  inet_listener imaps {");
        line("    address = 127.0.0.1");
        line(&format!("    port = {}", self.imaps_port));
        line("    ssl = yes");
        line("  }");
        if id.unprivileged.is_some() {
            line("  chroot =");
        }
        line("}");
        line("service lmtp {");
        line("  inet_listener lmtp {");
        line("    address = 127.0.0.1");
        line(&format!("    port = {}", self.lmtp_port));
        line("  }");
        line("}");
        if id.unprivileged.is_some() {
            // chroot needs root.
            for service in ["anvil", "ipc", "old-stats", "imap-urlauth-login"] {
                line(&format!("service {service} {{\n  chroot =\n}}"));
            }
        }
        c
    }

    /// Spawns `dovecot -F -c <conf>` and waits until all ports accept TCP.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "Dovecot already running");
        // A master killed by SIGKILL leaves master.pid behind; Dovecot
        // refuses to start if that PID happens to be alive.
        let _ = fs::remove_file(self.base_dir().join("master.pid"));
        // The pre-login rawlog dir must exist and be writable by the login
        // user (dovenull as root); base_dir/login itself is 0750.
        let prelogin = self.prelogin_rawlog_dir();
        fs::create_dir_all(&prelogin).expect("create pre-login rawlog dir");
        fs::set_permissions(&prelogin, fs::Permissions::from_mode(0o733)).expect("chmod");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("open dovecot.stderr");
        let err = out.try_clone().expect("clone dovecot.stderr");
        let binary = std::env::var("DOVECOT_BIN").unwrap_or_else(|_| "/usr/sbin/dovecot".into());
        let child = Command::new(&binary)
            .arg("-F")
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {binary}: {e}"))?;
        self.child = Some(child);

        let ports = [self.imap_port, self.imaps_port, self.lmtp_port];
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("dovecot exited during startup: {status}"));
            }
            let pid_file = self.base_dir().join("master.pid").exists();
            if pid_file && ports_listening(&ports) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "ports {ports:?} not ready within {START_TIMEOUT:?}"
                ));
            }
            sleep(Duration::from_millis(25));
        }
    }

    /// Log file plus captured stdout/stderr of the master.
    fn startup_output(&self) -> String {
        format!(
            "{}\n{}",
            read_lossy(&self.log_path()),
            read_lossy(&self.stderr_path())
        )
    }

    fn failure_report(&self, what: &str) -> String {
        format!(
            "private Dovecot failed: {what}\n--- {} ---\n{}\n--- stdout/stderr ---\n{}\n--- config ---\n{}",
            self.log_path().display(),
            read_lossy(&self.log_path()),
            read_lossy(&self.stderr_path()),
            read_lossy(&self.config_path()),
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            if std::env::var_os("MAILPULSE_KEEP_DOVECOT").is_some() {
                eprintln!("dovecot: keeping {}", dir.keep().display());
            } else if dir.close().is_err() {
                // A child process may still have been writing; try once more.
                sleep(Duration::from_millis(200));
                let _ = fs::remove_dir_all(&self.root);
            }
        }
    }
}

/// Binds 127.0.0.1:0, reads the port the kernel chose and releases it.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn distinct_free_ports() -> (u16, u16, u16) {
    loop {
        let ports: BTreeSet<u16> = (0..3).map(|_| free_port()).collect();
        if let [a, b, c] = ports.iter().copied().collect::<Vec<_>>()[..] {
            return (a, b, c);
        }
    }
}

/// True when every port has a listening socket, i.e. accepts TCP.
///
/// On Linux this reads /proc/net/tcp instead of connecting, because a probe
/// connection would leave "Disconnected: Connection closed (...)" lines in
/// Dovecot's log (and an LMTP session) that tests might trip over.
fn ports_listening(ports: &[u16]) -> bool {
    match fs::read_to_string("/proc/net/tcp") {
        Ok(table) => {
            // "  sl  local_address rem_address   st ..."; st 0A = LISTEN;
            // local_address is hex "0100007F:1F90" (127.0.0.1:8080).
            let listening: BTreeSet<u16> = table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let (addr, port) = fields.get(1)?.split_once(':')?;
                    let listen = fields.get(3) == Some(&"0A");
                    let local = addr == "0100007F" || addr == "00000000";
                    (listen && local).then(|| u16::from_str_radix(port, 16).ok())?
                })
                .collect();
            ports.iter().all(|p| listening.contains(p))
        }
        Err(_) => ports.iter().all(|p| {
            let addr = SocketAddr::from(([127, 0, 0, 1], *p));
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        }),
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// chown -R without following symlinks (std only).
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let meta = fs::symlink_metadata(path).expect("stat");
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).expect("read_dir").flatten() {
            chown_tree(&entry.path(), uid, gid);
        }
    }
}

impl Identity {
    /// Who we are, read from the owner of the directory we just created.
    fn detect(dir: &Path) -> Identity {
        let meta = fs::metadata(dir).expect("stat temp dir");
        if meta.uid() == 0 {
            Identity {
                mail_uid: ROOT_MAIL_ID,
                mail_gid: ROOT_MAIL_ID,
                unprivileged: None,
            }
        } else {
            let name = |flag: &str| {
                Command::new("id")
                    .arg(flag)
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                    .unwrap_or_else(|| panic!("`id {flag}` failed"))
            };
            Identity {
                mail_uid: meta.uid(),
                mail_gid: meta.gid(),
                unprivileged: Some((name("-un"), name("-gn"))),
            }
        }
    }
}
