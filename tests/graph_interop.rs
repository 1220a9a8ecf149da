//! A real third-party Graph client, Microsoft's msgraph-sdk for Python (from PyPI, into a venv
//! this test makes and keeps under `target/`), against the test Graph server: the user, a
//! well-known folder, child folders, the newest message with `$top`/`$select`/`$orderby`, a delta
//! round over several `@odata.nextLink` pages to the `@odata.deltaLink`, the changes (new and
//! `@removed`) over that link, and a lost token's 410 as the SDK's `ODataError`. So the test
//! server answers as Graph does, not only as mailpulse expects.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

use support::graph_server::GraphServer;

/// Pinned, so that a new release cannot change what this test means.
const MSGRAPH_SDK: &str = "msgraph-sdk==1.65.0";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The venv's python with msgraph-sdk (made once; later runs reuse it).
fn venv_python() -> PathBuf {
    let venv = target_dir().join("graph-interop-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args([
                "-c",
                "import importlib.metadata as m, sys; sys.exit(m.version('msgraph-sdk') != '1.65.0')",
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
            MSGRAPH_SDK,
        ])
        .status()
        .expect("pip");
    assert!(
        status.success(),
        "pip install {MSGRAPH_SDK} failed (PyPI unreachable?)"
    );
    assert!(
        ready(&python),
        "msgraph-sdk does not import after installing"
    );
    python
}

#[test]
fn msgraph_sdk_reads_folders_messages_and_delta_rounds() {
    let python = venv_python();
    let server = GraphServer::start("alice@contoso.com", "sdk-token");
    server.add_folder("inbox", "Work");
    server.add_folder("inbox", "Lists");
    for i in 0..4 {
        server.deliver("inbox", &format!("Old {i}"), "Bob", "bob@example.com");
    }
    std::thread::sleep(Duration::from_millis(1100));
    let doomed = server.deliver("inbox", "Newest", "Carol", "carol@example.com");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/msgraph_client.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env("GRAPH_URL", server.url())
        .env("GRAPH_TOKEN", "sdk-token")
        .env("GRAPH_CA", server.ca_pem())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the msgraph-sdk client");
    let mut stdin = child.stdin.take().unwrap();
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
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let text = stderr.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut text = text.lock().unwrap();
            *text += &line;
            *text += "\n";
        }
    });
    let mut lines = Vec::new();
    let mut next = |lines: &mut Vec<String>| -> String {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => {
                lines.push(l.clone());
                l
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "the client stopped early: {lines:?}\n{}",
                    stderr.lock().unwrap()
                );
            }
        }
    };
    let mut until_ready = Vec::new();
    loop {
        let l = next(&mut lines);
        if l == "READY" {
            break;
        }
        until_ready.push(l);
    }
    server.deliver("inbox", "Arrived later", "Dave", "dave@example.com");
    server.remove(&doomed);
    writeln!(stdin, "go").unwrap();
    let changes = next(&mut lines);
    server.lose_delta_tokens();
    writeln!(stdin, "go").unwrap();
    let gone = next(&mut lines);
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stderr = stderr.lock().unwrap().clone();
    assert!(status.success(), "{lines:?}\n{stderr}");
    assert_eq!(
        until_ready,
        [
            "ME alice@contoso.com",
            "INBOX Inbox 5",
            "CHILDREN Lists,Work",
            "NEWEST Newest | carol@example.com",
            "ROUND 5 pages 3",
            "DELTALINK yes",
        ],
        "{stderr}"
    );
    assert_eq!(changes, "CHANGES Arrived later removed 1");
    assert_eq!(gone, "GONE 410 syncStateNotFound");
    assert_eq!(server.writes(), 0);
}
