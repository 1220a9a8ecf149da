//! A private "system" bus (dbus-daemon) with a stand-in for logind on it
//! (tests/support/fake_logind.py), so the agent's resume handling can be driven by the signal
//! logind really sends. Both processes are stopped by PID when the value is dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

pub struct FakeLogind {
    _dir: tempfile::TempDir,
    /// `DBUS_SYSTEM_BUS_ADDRESS` for the agent.
    pub address: String,
    bus: Child,
    logind: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl FakeLogind {
    pub fn start() -> FakeLogind {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("system_bus_socket");
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={}</listen>
<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy></busconfig>"#,
                socket.display()
            ),
        )
        .unwrap();
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus-daemon; make test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !socket.exists() {
            let _ = bus.kill();
            let _ = bus.wait();
            panic!("the private system bus did not start");
        }
        let address = format!("unix:path={}", socket.display());
        let mut logind = Command::new("/usr/bin/python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/fake_logind.py"
            ))
            .arg(&address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with gi (Debian python3-gi)");
        let stdin = logind.stdin.take().unwrap();
        let stdout = BufReader::new(logind.stdout.take().unwrap());
        let mut me = FakeLogind {
            _dir: dir,
            address,
            bus,
            logind,
            stdin,
            stdout,
        };
        me.expect("LOGIND READY");
        me
    }

    /// Reads the script's output up to the line `want` (it exits, and the read ends, on error).
    fn expect(&mut self, want: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap_or(0);
            assert!(n > 0, "fake logind ended before saying {want:?}");
            if line.trim() == want {
                return;
            }
        }
    }

    /// `PrepareForSleep(true)`, as before a suspend.
    pub fn sleep(&mut self) {
        self.emit("sleep");
    }

    /// `PrepareForSleep(false)`, as after the resume.
    pub fn resume(&mut self) {
        self.emit("resume");
    }

    fn emit(&mut self, what: &str) {
        writeln!(self.stdin, "{what}").unwrap();
        self.stdin.flush().unwrap();
        self.expect(&format!("EMITTED {what}"));
    }
}

impl Drop for FakeLogind {
    fn drop(&mut self) {
        for child in [&mut self.logind, &mut self.bus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
