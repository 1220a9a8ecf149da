//! The settings window's account form for Exchange: a new user adds an EWS account knowing only
//! the address, presses "Find server" (Autodiscover fills in the EWS URL), "Test connection"
//! (the newest inbox item), then OK — on a headless desktop (Xvfb, private D-Bus) against the
//! test EWS server. Then the tray runs the saved account, and new mail becomes a toast.
// Linux only: needs a D-Bus session, dunst and a StatusNotifierItem host under Xvfb.
#![cfg(target_os = "linux")]
#![cfg(feature = "desktop")]

mod support;

use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::agent::{Home, secs};
use support::desktop::{Desktop, settings_script};
use support::ews_server::{AuthMode, EwsServer, Options};

#[test]
fn settings_form_finds_the_ews_url_tests_and_saves_an_exchange_account() {
    let server = EwsServer::start(Options {
        auth: AuthMode::Ntlm,
        ..Options::default()
    });
    server.deliver("Welcome to Exchange", "IT", "it@example.com");
    let desktop = Desktop::start();
    let home = Home::new();
    home.write_config("[desktop]\nstart_at_login = false\n");
    let pw = home.password_file("secret-pw");
    let script = home.path().join("automation.js");
    settings_script(
        &script,
        &format!(
            r#"$("add-account").click();
           type("acct.protocol", "ews");
           type("acct.host", "localhost:{port}");
           type("acct.username", "alice@example.com");
           type("acct.password_command", "cat '{pw}'");
           type("acct.ca_file", "{ca}");
           if ($("acct.url").hidden || !$("acct.security").hidden) throw new Error("EWS fields not shown");
           $("discover").click();
           when(() => $("discover-result").classList.contains("ok"), () => {{
             $("test-account").click();
             when(() => $("test-result").classList.contains("ok"), () => $("ok").click());
           }});"#,
            port = server.port,
            pw = pw.display(),
            ca = server.ca_pem().display(),
        ),
    );
    let mut cmd = home.command(&["settings"]);
    desktop.apply(&mut cmd);
    let run = home.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let mut child = cmd
        .env("XDG_RUNTIME_DIR", &run)
        .env("MAILPULSE_SETTINGS_SCRIPT", &script)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.path().join("settings.log")).unwrap())
        .spawn()
        .expect("start mailpulse settings");
    let deadline = Instant::now() + secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(home.path().join("settings.log")).unwrap_or_default();
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    assert!(
        status.is_some(),
        "the window did not close after OK\n{log}\n{text}"
    );
    assert!(text.contains("protocol = \"ews\""), "{text}\n{log}");
    assert!(
        text.contains(&format!("url = \"{}\"", server.url())),
        "Find server filled in the URL:\n{text}\n{log}"
    );
    assert_eq!(server.count("Autodiscover"), 1);
    assert!(
        server.count("FindItem") >= 1,
        "Test connection ran the last-item query"
    );
    assert!(!text.contains("secret-pw"));
    // The saved account works as saved.
    let out = home.run(&["check"]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("Welcome to Exchange"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The tray with the saved Exchange account: a delivered mail becomes one toast with its
    // sender and subject, exactly as for IMAP.
    let mut cmd = home.command(&[]);
    desktop.apply(&mut cmd);
    let tray = StopOnDrop(
        cmd.env("XDG_RUNTIME_DIR", &run)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.path().join("tray.log")).unwrap())
            .spawn()
            .expect("start the tray"),
    );
    let tray_log = || std::fs::read_to_string(home.path().join("tray.log")).unwrap_or_default();
    let item = desktop.wait_for_tray_item(secs(30));
    let deadline = Instant::now() + secs(30);
    while !desktop
        .tray_property(&item, "ToolTip")
        .contains(": connected")
        || server.count("GetStreamingEvents") == 0
    {
        assert!(
            Instant::now() < deadline,
            "not connected
{}",
            tray_log()
        );
        sleep(Duration::from_millis(100));
    }
    server.deliver("Budget review", "Carol Jones", "carol@example.com");
    let toast = desktop.wait_for_toast(secs(30), |t| t.body == "Budget review");
    assert_eq!(
        toast.summary,
        "Carol Jones <carol@example.com>",
        "{}",
        tray_log()
    );
    assert_eq!(toast.category, "email.arrived");
    sleep(secs(2));
    assert_eq!(
        desktop
            .toasts()
            .iter()
            .filter(|t| t.body == "Budget review")
            .count(),
        1,
        "one toast"
    );
    drop(tray);
}

/// Stops a child process by its PID when the test ends, also when it fails.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.0.try_wait().ok().flatten().is_none() {
            sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain TCP listener on 127.0.0.2 (loopback, but not the literal `127.0.0.1`/`localhost`
/// for which the config allows `http://`) that records every byte anyone sends it and answers
/// each request with a Basic challenge, as a careless or hostile server would.
struct Tripwire {
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Tripwire {
    fn start() -> Tripwire {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.2", 0)).expect("bind 127.0.0.2");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded: at most 10 minutes, ends when the test drops the tripwire.
            let end = Instant::now() + Duration::from_secs(600);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                let Ok((mut tcp, _)) = listener.accept() else {
                    sleep(Duration::from_millis(10));
                    continue;
                };
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 4096];
                for _ in 0..10 {
                    match tcp.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => r.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                    let _ = tcp.write_all(
                        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            }
        });
        Tripwire {
            port,
            received,
            stop,
        }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Test connection, Find server and Diagnose network with what the page sent.
fn settings_actions(account: &serde_json::Value, password: &str) -> Vec<serde_json::Value> {
    use mailpulse::desktop::settings;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let limit = Duration::from_secs(60);
    rt.block_on(async {
        let test = settings::test_connection(account.clone(), Some(password.into()), None);
        let find = settings::discover(account.clone(), Some(password.into()));
        let diagnose = settings::diagnose(account.clone(), Some(password.into()), None, |_| {});
        vec![
            tokio::time::timeout(limit, test)
                .await
                .expect("Test connection ended"),
            tokio::time::timeout(limit, find)
                .await
                .expect("Find server ended"),
            tokio::time::timeout(limit, diagnose)
                .await
                .expect("Diagnose ended"),
        ]
    })
}

/// Save refuses an `http://` EWS URL (the password would travel in clear); Test connection,
/// Find server and Diagnose network refuse it the same way, before sending anything.
#[test]
fn settings_actions_refuse_a_plain_http_ews_url_before_sending_the_password() {
    let tripwire = Tripwire::start();
    let account = serde_json::json!({
        "name": "work", "protocol": "ews", "auth": "basic", "host": "127.0.0.2",
        "url": format!("http://127.0.0.2:{}/EWS/Exchange.asmx", tripwire.port),
        "username": "alice@example.com", "folders": ["INBOX"],
    });
    let answers = settings_actions(&account, "secret-pw");
    sleep(Duration::from_millis(500));
    let received = tripwire.received();
    assert!(
        received.is_empty(),
        "sent to a plain-http server: {received:?}\nanswers: {answers:#?}"
    );
    for answer in &answers {
        assert_eq!(answer["ok"], false, "{answer}");
        let text = answer["text"].as_str().unwrap();
        assert!(text.contains("url: must start with https://"), "{text}");
    }
}

/// An account that names host A (127.0.0.2) but whose url names host B (localhost): Save refuses
/// it ("keep only url"), since the password belongs to A. Test connection, Find server and Diagnose network refuse it
/// too, and B (the test EWS server) receives nothing.
#[test]
fn settings_actions_refuse_a_host_that_is_not_the_urls_host() {
    let server = EwsServer::start(Options::default());
    let account = serde_json::json!({
        "name": "work", "protocol": "ews", "host": "127.0.0.2",
        "url": server.url(), "username": "alice@example.com", "folders": ["INBOX"],
        "ca_file": server.ca_pem(),
    });
    let answers = settings_actions(&account, "secret-pw");
    assert!(
        server.counts().is_empty(),
        "sent to the url's server: {:?}\nanswers: {answers:#?}",
        server.counts()
    );
    for answer in &answers {
        assert_eq!(answer["ok"], false, "{answer}");
        let text = answer["text"].as_str().unwrap();
        assert!(
            text.contains("host: names \"127.0.0.2\" but url names \"localhost\""),
            "{text}"
        );
    }
    // The same form with only url (as Save wants it) works.
    let mut fixed = account.clone();
    fixed["host"] = serde_json::Value::String(String::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(mailpulse::desktop::settings::test_connection(
        fixed,
        Some("secret-pw".into()),
        None,
    ));
    assert_eq!(ok["ok"], true, "{ok}");
}
