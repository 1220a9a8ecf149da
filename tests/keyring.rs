//! `mailpulse::credentials` against a real Secret Service: a private D-Bus session bus and a
//! `gnome-keyring-daemon` on it, with a fresh "login" keyring unlocked by a known password.
//! Nothing is mocked.
//!
//! Needs the Debian packages `dbus-daemon`, `dbus-bin` (dbus-send) and `gnome-keyring`; when
//! they are missing, or a daemon does not come up, the test fails and says why. The daemons
//! are started like this (all paths in a temporary directory `$T`):
//!
//! ```sh
//! dbus-daemon --config-file=$T/bus.conf --nofork --print-address=1
//!     # bus.conf: <listen>unix:path=$T/bus</listen>, an empty <servicedir>, allow-all policy
//! printf %s "$KEYRING_PASSWORD" |
//!   env DBUS_SESSION_BUS_ADDRESS=unix:path=$T/bus HOME=$T/home XDG_DATA_HOME=$T/data \
//!       XDG_CONFIG_HOME=$T/config XDG_CACHE_HOME=$T/cache XDG_RUNTIME_DIR=$T/run \
//!   gnome-keyring-daemon --foreground --unlock --components=secrets
//! ```
//!
//! `--unlock` with a password on stdin creates the "login" collection (alias "default") with
//! that password, unlocked, without any prompt. The bus has no service directory, so nothing
//! from the host is D-Bus-activated on it. Both processes are this test's children and are
//! killed by PID and reaped when it ends, passes or panics.
//!
//! Environment variables are process-global, so the whole scenario is one `#[test]`.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mailpulse::credentials::{self, CredentialError};

mod support;

/// How long one keyring call may take before the test gives up on it (a call could wait for
/// an unlock prompt that nobody answers).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The password of the test's "login" keyring (not an account password).
const KEYRING_PASSWORD: &str = "mailpulse-test-keyring";

#[test]
fn passwords_round_trip_through_gnome_keyring() {
    let daemons = Daemons::start();
    // SAFETY: this is the only test of this binary, and none of its other threads reads the
    // environment.
    unsafe {
        std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &daemons.bus_address);
    }

    // A bus without a Secret Service: a clear error, not a hang nor a panic.
    match bounded("get without keyring", || {
        credentials::get_password("u", "h")
    }) {
        Err(e @ CredentialError::Unavailable { .. }) => {
            let message = e.to_string();
            assert!(
                message.starts_with("no Secret Service on the session bus")
                    && message.contains("gnome-keyring")
                    && message.contains("password_command"),
                "{message}"
            );
        }
        other => panic!("expected Unavailable without a keyring daemon, got {other:?}"),
    }

    let mut daemons = daemons;
    daemons.start_keyring();
    let threads_before = thread_count();

    let (alice, host) = ("alice@example.org", "imap.example.org");
    let (bob, other_host) = ("bob", "mail.example.net");

    // Nothing stored yet.
    assert_eq!(get(alice, host), None);

    // set → get
    set(alice, host, "first password");
    assert_eq!(get(alice, host).as_deref(), Some("first password"));

    // set again overwrites (a second item would make get fail as ambiguous)
    set(alice, host, "second password");
    assert_eq!(get(alice, host).as_deref(), Some("second password"));
    assert_eq!(
        daemons.search_items(&[
            ("service", "mailpulse"),
            ("username", "alice@example.org@imap.example.org")
        ]),
        1,
        "one Secret Service item, findable by secret-tool's attributes"
    );

    // separate accounts: another user, and the same user on another host
    set(bob, other_host, "bob's");
    set(alice, other_host, "alice elsewhere");
    assert_eq!(get(alice, host).as_deref(), Some("second password"));
    assert_eq!(get(bob, other_host).as_deref(), Some("bob's"));
    assert_eq!(get(alice, other_host).as_deref(), Some("alice elsewhere"));
    assert_eq!(get(bob, host), None);

    // unicode, spaces and shell/escape characters round-trip byte for byte
    let tricky = "  pässwörd mit Leerzeichen ✓ 🔑 \"q\" 'a' \\n $HOME `x` %s\ttab ";
    set(bob, other_host, tricky);
    assert_eq!(get(bob, other_host).as_deref(), Some(tricky));

    // delete → None; the other accounts stay; deleting again is fine
    delete(alice, host);
    assert_eq!(get(alice, host), None);
    assert_eq!(get(alice, other_host).as_deref(), Some("alice elsewhere"));
    assert_eq!(get(bob, other_host).as_deref(), Some(tricky));
    delete(alice, host);

    // The keyring is on disk, and encrypted there.
    let keyring_file = daemons.dir.path().join("data/keyrings/login.keyring");
    let stored =
        std::fs::read(&keyring_file).unwrap_or_else(|e| panic!("{}: {e}", keyring_file.display()));
    let needle = "alice elsewhere".as_bytes();
    assert!(
        !stored.windows(needle.len()).any(|w| w == needle),
        "a password is in clear in {}",
        keyring_file.display()
    );

    // Every call opens its own connection: they must not pile up threads.
    for _ in 0..20 {
        assert_eq!(get(bob, other_host).as_deref(), Some(tricky));
    }
    let settled = Instant::now() + Duration::from_secs(5);
    while thread_count() > threads_before + 2 && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(50));
    }
    let threads_after = thread_count();
    assert!(
        threads_after <= threads_before + 2,
        "threads grew from {threads_before} to {threads_after} over 20 calls"
    );

    delete(alice, other_host);
    delete(bob, other_host);
    assert_eq!(get(bob, other_host), None);
    assert_eq!(daemons.search_items(&[("service", "mailpulse")]), 0);

    // Invalid accounts are refused before reaching the keyring.
    assert!(matches!(
        bounded("empty user", || credentials::set_password("", "h", "p")),
        Err(CredentialError::InvalidAccount { .. })
    ));

    // End to end: `mailpulse password set` stores what it reads, and the agent logs in with it.
    let dovecot = support::dovecot::Dovecot::start(support::dovecot::DovecotOptions::default());
    let home = support::agent::Home::new();
    home.write_config(&format!(
        "[[accounts]]\nname = \"work\"\nhost = \"localhost\"\nport = {}\nsecurity = \"tls\"\n\
         username = \"alice\"\nca_file = \"{}\"\n",
        dovecot.imaps_port(),
        dovecot.ca_pem().display()
    ));
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mailpulse password set --account work"),
        "{err}"
    );
    let mut set = home
        .command(&["password", "set", "--account", "work"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    set.stdin.take().unwrap().write_all(b"secret-pw\n").unwrap();
    let out = set.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get("alice", "localhost").as_deref(), Some("secret-pw"));
    let out = home.run(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "work: empty\n");
    assert!(
        home.run(&["password", "delete", "--account", "work"])
            .status
            .success()
    );
    assert_eq!(get("alice", "localhost"), None);
    // `daemons` is dropped here: both processes are killed and reaped.
}

fn get(user: &'static str, host: &'static str) -> Option<String> {
    bounded("get_password", move || {
        credentials::get_password(user, host)
    })
    .unwrap_or_else(|e| panic!("get_password({user}, {host}): {e}"))
}

fn set(user: &'static str, host: &'static str, password: &'static str) {
    bounded("set_password", move || {
        credentials::set_password(user, host, password)
    })
    .unwrap_or_else(|e| panic!("set_password({user}, {host}): {e}"))
}

fn delete(user: &'static str, host: &'static str) {
    bounded("delete_password", move || {
        credentials::delete_password(user, host)
    })
    .unwrap_or_else(|e| panic!("delete_password({user}, {host}): {e}"))
}

/// Run `f` on a thread and wait at most [`CALL_TIMEOUT`] for it.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(CALL_TIMEOUT) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {CALL_TIMEOUT:?} (waiting for a prompt?)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// The number of threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// The private bus and keyring daemon; killed (by PID) and reaped on drop, also on panic.
struct Daemons {
    dir: tempfile::TempDir,
    bus_address: String,
    bus: Option<Child>,
    keyring: Option<Child>,
}

impl Daemons {
    /// Start a private session bus.
    fn start() -> Daemons {
        let dir = tempfile::Builder::new()
            .prefix("mailpulse-kr-")
            .tempdir()
            .expect("temporary directory");
        let t = dir.path();
        for sub in ["home", "data", "config", "cache", "run", "services"] {
            std::fs::create_dir_all(t.join(sub)).unwrap();
        }
        set_mode(&t.join("run"), 0o700);
        let socket = t.join("bus");
        assert!(
            socket.as_os_str().len() < 100,
            "socket path too long for AF_UNIX: {}",
            socket.display()
        );
        let config = t.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display(),
                t.join("services").display()
            ),
        )
        .unwrap();

        let bus_log = t.join("dbus-daemon.log");
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&bus_log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dbus-daemon ({e}): install the Debian package dbus-daemon")
            });
        let stdout = bus.stdout.take().unwrap();
        let mut daemons = Daemons {
            dir,
            bus_address: String::new(),
            bus: Some(bus),
            keyring: None,
        };

        // The address is printed once the bus listens.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let address = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) if !line.trim().is_empty() => line.trim().to_owned(),
            _ => panic!(
                "dbus-daemon did not start within {START_TIMEOUT:?}; its log:\n{}",
                read_log(&bus_log)
            ),
        };
        assert!(
            address.starts_with("unix:path="),
            "unexpected bus address {address}"
        );
        daemons.bus_address = address;
        daemons
    }

    /// Start gnome-keyring-daemon on the bus and wait until the default collection is there.
    fn start_keyring(&mut self) {
        let t = self.dir.path().to_path_buf();
        let log = t.join("gnome-keyring.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .env("HOME", t.join("home"))
            .env("XDG_DATA_HOME", t.join("data"))
            .env("XDG_CONFIG_HOME", t.join("config"))
            .env("XDG_CACHE_HOME", t.join("cache"))
            .env("XDG_RUNTIME_DIR", t.join("run"))
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("GNOME_KEYRING_CONTROL")
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run gnome-keyring-daemon ({e}): install the Debian package gnome-keyring")
            });
        // The login keyring's password, then end of input.
        let mut stdin = keyring.stdin.take().unwrap();
        let written = stdin.write_all(KEYRING_PASSWORD.as_bytes());
        drop(stdin);
        self.keyring = Some(keyring);
        written.expect("writing the keyring password to gnome-keyring-daemon");

        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        for _ in 0..400 {
            if let Some(status) = self.keyring.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "gnome-keyring-daemon exited ({status}); its log:\n{}",
                    read_log(&log)
                );
            }
            match self.dbus_send(&[
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.ReadAlias",
                "string:default",
            ]) {
                Ok(reply) if reply.contains("/org/freedesktop/secrets/collection/") => return,
                Ok(reply) => last = reply,
                Err(e) => last = e,
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "gnome-keyring-daemon has no unlocked default collection after {START_TIMEOUT:?} \
             (last answer: {last}); its log:\n{}",
            read_log(&log)
        );
    }

    /// How many Secret Service items match the attributes.
    fn search_items(&self, attributes: &[(&str, &str)]) -> usize {
        let dict = attributes
            .iter()
            .map(|(k, v)| format!("{k},{v}"))
            .collect::<Vec<_>>()
            .join(",");
        let reply = self
            .dbus_send(&[
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.SearchItems",
                &format!("dict:string:string:{dict}"),
            ])
            .unwrap_or_else(|e| panic!("SearchItems: {e}"));
        reply
            .lines()
            .filter(|l| l.contains("object path \"/org/freedesktop/secrets/collection/"))
            .count()
    }

    /// One `dbus-send --print-reply` call on the private bus, bounded in time.
    fn dbus_send(&self, args: &[&str]) -> Result<String, String> {
        let mut child = Command::new("dbus-send")
            .arg(format!("--bus={}", self.bus_address))
            .args(["--print-reply", "--reply-timeout=5000"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dbus-send ({e}): install the Debian package dbus-bin")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("dbus-send timed out".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        // The keyring first (it would exit by itself once the bus is gone, but do not rely on
        // it), then the bus. `Child::kill` signals that PID only.
        for child in [self.keyring.take(), self.bus.take()].into_iter().flatten() {
            stop(child);
        }
    }
}

/// Kill a child by its PID and reap it, waiting a bounded time.
fn stop(mut child: Child) {
    let _ = child.kill();
    for _ in 0..200 {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    eprintln!(
        "process {} did not exit after SIGKILL within 2 s",
        child.id()
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn read_log(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}
