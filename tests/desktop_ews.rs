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
