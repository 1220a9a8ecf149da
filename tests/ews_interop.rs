//! A real third-party EWS client, Python's exchangelib (from PyPI, into a venv this test makes
//! and keeps under `target/`), against the test EWS server: the newest inbox item, the total
//! count, a streaming subscription receiving a NewMailEvent, a pull subscription. So the test
//! server behaves like Exchange, not only like mailpulse expects. Its traffic (exchangelib's
//! requests too) is validated against the EWS schema.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use support::ews_server::{AuthMode, EwsServer, Options};

/// Pinned, so that a new release cannot change what this test means.
const EXCHANGELIB: &str = "exchangelib==5.6.0";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The venv's python, made (once; later runs reuse it) with exchangelib installed. The tests of
/// this binary share it; the first one makes it while the others wait.
fn venv_python() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(make_venv).clone()
}

fn make_venv() -> PathBuf {
    let venv = target_dir().join("ews-interop-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args([
                "-c",
                "import exchangelib, sys; sys.exit(exchangelib.__version__ != '5.6.0')",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && ready(&python) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .expect("python3 (with the venv module: Debian python3-venv)");
    assert!(
        status.success(),
        "python3 -m venv failed (install python3-venv)"
    );
    let status = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            EXCHANGELIB,
        ])
        .status()
        .expect("pip");
    assert!(
        status.success(),
        "pip install {EXCHANGELIB} failed (PyPI unreachable?)"
    );
    assert!(
        ready(&python),
        "exchangelib does not import after installing"
    );
    python
}

#[test]
fn exchangelib_reads_the_inbox_and_receives_streaming_and_pull_notifications() {
    let python = venv_python();
    let server = EwsServer::start(Options::default());
    server.deliver("Older", "Bob", "bob@example.com");
    std::thread::sleep(Duration::from_millis(1100));
    server.deliver("Newest", "Carol", "carol@example.com");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/exchangelib_client.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env("EWS_URL", server.url())
        .env("EWS_USER", "alice@example.com")
        .env("EWS_PASSWORD", "secret-pw")
        .env("EWS_CA", server.ca_pem())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the exchangelib client");
    let (tx, rx) = channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            text += &line;
            text.push('\n');
        }
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    let mut streamed = None;
    let mut pulled = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line == "SUBSCRIBED" {
                    streamed = Some(server.deliver("Streamed", "Dave", "dave@example.com"));
                }
                if line == "PULL_SUBSCRIBED" {
                    pulled = Some(server.deliver("Pulled", "Erin", "erin@example.com"));
                }
                let done = line == "DONE";
                lines.push(line);
                if done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let finished = {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let stderr = stderr.join().unwrap();
    let transcript = format!("stdout:\n{}\nstderr:\n{stderr}", lines.join("\n"));
    assert!(finished.is_some_and(|s| s.success()), "{transcript}");
    assert!(
        lines.contains(&"NEWEST Newest | carol@example.com".to_string()),
        "{transcript}"
    );
    assert!(lines.contains(&"TOTAL 2".to_string()), "{transcript}");
    let streamed = streamed.expect("subscribed");
    assert!(
        lines.contains(&format!("STREAM_EVENT {streamed}")),
        "{transcript}"
    );
    let pulled = pulled.expect("pull-subscribed");
    assert!(
        lines.contains(&format!("PULL_EVENT {pulled}")),
        "{transcript}"
    );
    assert!(server.count("GetStreamingEvents") >= 1 && server.count("GetEvents") >= 1);
    server.validate();
}

/// exchangelib's NTLM (requests_ntlm / pyspnego) against the test server's own NTLMv2 check:
/// the server's NTLM is not only compatible with mailpulse's.
#[test]
fn exchangelib_logs_in_with_ntlm() {
    let python = venv_python();
    let server = EwsServer::start(Options {
        auth: AuthMode::Ntlm,
        ..Options::default()
    });
    server.deliver("Over NTLM", "Carol", "carol@example.com");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/exchangelib_client.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env("EWS_URL", server.url())
        .env("EWS_USER", "alice@example.com")
        .env("EWS_PASSWORD", "secret-pw")
        .env("EWS_CA", server.ca_pem())
        .env("EWS_AUTH", "ntlm")
        .env("EWS_ONLY_READ", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the exchangelib client");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let transcript = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{transcript}");
    assert!(
        stdout.contains("NEWEST Over NTLM | carol@example.com"),
        "{transcript}"
    );
    assert!(stdout.contains("TOTAL 1"), "{transcript}");
    assert!(server.count("401") >= 1, "the NTLM handshake ran");
    server.validate();
}
