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

use std::io::Write;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mailpulse::testing::credentials::{self, CredentialError};

mod support;

use support::keyring::Daemons;

/// How long one keyring call may take before the test gives up on it (a call could wait for
/// an unlock prompt that nobody answers).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

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

    // On a terminal (a pty from `script`): a prompt naming the login, and no echo of what is
    // typed, which is typed only once the prompt is there (echo is on before).
    let typed = set_on_a_terminal(&home);
    assert!(
        typed.contains("Password for alice at localhost: "),
        "{typed:?}"
    );
    assert!(!typed.contains("secret-pw"), "echoed: {typed:?}");
    assert_eq!(get("alice", "localhost").as_deref(), Some("secret-pw"));

    // A running `watch` (no tray, so nothing tells it) with a rejected password: one error;
    // `mailpulse password set` says the watch picks it up, and it does, by itself, in a minute.
    self::set("alice", "localhost", "wrong");
    let w = support::agent::Watch::start(&home);
    let events = w.until_type(Duration::from_secs(30), "error");
    assert!(
        events.last().is_some_and(|e| e["kind"] == "auth"),
        "{events:?}"
    );
    let mut setting = home
        .command(&["password", "set", "--account", "work"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    setting
        .stdin
        .take()
        .unwrap()
        .write_all(b"secret-pw\n")
        .unwrap();
    let out = setting.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("A running `mailpulse watch` uses it within a minute."),
        "{said}"
    );
    let back = w.until_type(Duration::from_secs(90), "connected");
    assert!(!back.iter().any(|e| e["type"] == "error"), "{back:?}");
    // The check above, the rejected login and the one with the new password (the log is
    // written asynchronously: looked at for up to 5 s).
    let settled = Instant::now() + Duration::from_secs(5);
    while dovecot.login_attempts("alice") < 3 && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(dovecot.login_attempts("alice"), 3, "{}", dovecot.log());
    drop(w);

    assert!(
        home.run(&["password", "delete", "--account", "work"])
            .status
            .success()
    );
    assert_eq!(get("alice", "localhost"), None);
    // `daemons` is dropped here: both processes are killed and reaped.
}

/// `mailpulse password set` with a pseudo-terminal as its terminal
/// (tests/support/type_on_tty.py): the password is typed once the prompt is shown and echo is
/// off; returns everything the terminal showed.
fn set_on_a_terminal(home: &support::agent::Home) -> String {
    let set = home.command(&["password", "set", "--account", "work"]);
    let mut typist = std::process::Command::new("/usr/bin/python3");
    typist
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/type_on_tty.py"
        ))
        .args(["Password for", "secret-pw", "--"])
        .arg(set.get_program())
        .args(set.get_args());
    for (k, v) in set.get_envs() {
        match v {
            Some(v) => typist.env(k, v),
            None => typist.env_remove(k),
        };
    }
    let mut child = typist
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    // The script bounds its own waits (20 s); this is a backstop.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: {shown:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    shown
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
