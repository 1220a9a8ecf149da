//! A private D-Bus session bus and a real `gnome-keyring-daemon` on it (a fresh "login"
//! keyring, unlocked by a known password), for tests of what mailpulse keeps in the keyring.
//! See tests/keyring.rs for how the daemons are started; both are killed by PID on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a daemon may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The password of the test's "login" keyring (not an account password).
const KEYRING_PASSWORD: &str = "mailpulse-test-keyring";

/// The private bus and keyring daemon; killed (by PID) and reaped on drop, also on panic.
pub struct Daemons {
    pub dir: tempfile::TempDir,
    pub bus_address: String,
    bus: Option<Child>,
    keyring: Option<Child>,
}

impl Daemons {
    /// Start a private session bus.
    pub fn start() -> Daemons {
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
    pub fn start_keyring(&mut self) {
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
    pub fn search_items(&self, attributes: &[(&str, &str)]) -> usize {
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
    pub fn dbus_send(&self, args: &[&str]) -> Result<String, String> {
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

impl Daemons {
    /// An unlocked keyring on a bus that someone else runs (a test desktop's), so that one
    /// session has the tray's watcher, the notification daemon and the keyring together.
    pub fn keyring_on(bus_address: &str) -> Daemons {
        let dir = tempfile::Builder::new()
            .prefix("mailpulse-kr-")
            .tempdir()
            .expect("temporary directory");
        for sub in ["home", "data", "config", "cache", "run"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        set_mode(&dir.path().join("run"), 0o700);
        let mut d = Daemons {
            dir,
            bus_address: bus_address.to_owned(),
            bus: None,
            keyring: None,
        };
        d.start_keyring();
        d
    }

    /// A bus with an unlocked keyring on it.
    pub fn with_keyring() -> Daemons {
        let mut d = Daemons::start();
        d.start_keyring();
        d
    }
}
