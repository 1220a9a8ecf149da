//! Runs the real `mailpulse` binary as a user would, with its own config, state and log dirs,
//! and reads what it prints. Every process is stopped by PID when the test ends.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_mailpulse");

/// A private home for one agent: config file, XDG dirs, a password file.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("temp home"),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.toml")
    }
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }
    /// A file holding the password, for `password_command = "cat FILE"` (never in argv).
    pub fn password_file(&self, password: &str) -> PathBuf {
        let p = self.path().join("password");
        std::fs::write(&p, password).unwrap();
        p
    }
    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state/mailpulse")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }
    /// `mailpulse ARGS` with this home's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_STATE_HOME", self.path().join("state"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        // `proxy = "system"` is the default: the machine's own proxy settings stay out of the
        // tests (tests/proxy.rs sets them where it means to).
        for var in [
            "all_proxy",
            "ALL_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "http_proxy",
            "HTTP_PROXY",
            "no_proxy",
            "NO_PROXY",
            "XDG_CURRENT_DESKTOP",
        ] {
            c.env_remove(var);
        }
        c
    }
    /// Run to completion (bounded: the agent's own timeouts end it; this is a backstop).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_within(args, Duration::from_secs(90))
    }
    /// Run to completion; panics (after killing it) when it takes longer than `limit`.
    pub fn run_within(&self, args: &[&str], limit: Duration) -> Output {
        output_within(self.command(args), limit)
    }
}

/// Runs `cmd` (mailpulse with a home's environment) to its end; killed by PID, and the test
/// failed, when it takes longer than `limit`.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailpulse");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `mailpulse watch --json` running in the background.
pub struct Watch {
    child: Child,
    events: Receiver<Value>,
    /// Every stdout line so far (for failure messages).
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    pub fn start(home: &Home) -> Watch {
        Watch::start_with(home, &[])
    }

    pub fn start_with(home: &Home, env: &[(&str, &str)]) -> Watch {
        let mut cmd = home.command(&["watch", "--json"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailpulse watch");
        let (tx, events) = channel();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let lines = stdout.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("watch --json printed a non-JSON line {line:?}: {e}")
                });
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let lines = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Watch {
            child,
            events,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn transcript(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    /// Events up to and including the first that matches, within `limit`.
    pub fn until(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    let done = pred(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no matching event within {limit:?}\n{}", self.transcript()),
            }
        }
    }

    /// The first event of this type.
    pub fn until_type(&self, limit: Duration, kind: &str) -> Vec<Value> {
        self.until(limit, |v| v["type"] == kind)
    }

    /// Everything printed during `d`.
    pub fn during(&self, d: Duration) -> Vec<Value> {
        let deadline = Instant::now() + d;
        let mut seen = Vec::new();
        while let Ok(v) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.push(v);
        }
        seen
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns whether it exited by itself.
    pub fn stop(&mut self) -> bool {
        if self.child.try_wait().unwrap().is_some() {
            return true;
        }
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|v| v["type"] == kind).collect()
}

pub fn subjects(events: &[Value]) -> Vec<String> {
    of_type(events, "new_mail")
        .iter()
        .map(|v| v["subject"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
