//! The settings window's account form for Microsoft 365 over Graph: a new user picks
//! "Microsoft 365 (Graph)", which shows the Graph URL and the bearer sign-in only (no server,
//! security, port or password), presses "Test connection" (the newest inbox item from the test
//! Graph server), then OK — on a headless desktop (Xvfb, private D-Bus). The saved account then
//! works with `mailpulse check`.
// Linux only: needs a D-Bus session under Xvfb.
#![cfg(target_os = "linux")]
#![cfg(feature = "desktop")]

mod support;

use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::agent::{Home, secs};
use support::desktop::{Desktop, settings_script};
use support::graph_server::GraphServer;

#[test]
fn settings_form_tests_and_saves_a_graph_account() {
    let server = GraphServer::start("alice@contoso.com", "graph-token");
    server.deliver("inbox", "Welcome to Microsoft 365", "IT", "it@contoso.com");
    let desktop = Desktop::start();
    let home = Home::new();
    home.write_config("[desktop]\nstart_at_login = false\n");
    let token = home.password_file("graph-token");
    let script = home.path().join("automation.js");
    settings_script(
        &script,
        &format!(
            r#"$("add-account").click();
           type("acct.name", "m365");
           type("acct.protocol", "graph");
           if ($("acct.url").hidden || !$("acct.host").hidden || !$("acct.security").hidden
               || !$("acct.port").hidden || !$("discover").hidden) throw new Error("Graph fields wrong");
           if ($("acct.auth").value !== "bearer" || !$("acct.password").hidden) throw new Error("Graph signs in with a token");
           type("acct.url", "{url}");
           type("acct.username", "alice@contoso.com");
           type("acct.password_command", "cat '{token}'");
           type("acct.ca_file", "{ca}");
           type("acct.folders", "inbox");
           $("test-account").click();
           when(() => $("test-result").classList.contains("ok"), () => $("ok").click());"#,
            url = server.url(),
            token = token.display(),
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
    assert!(text.contains("protocol = \"graph\""), "{text}\n{log}");
    assert!(text.contains("auth = \"bearer\""), "{text}\n{log}");
    assert!(
        text.contains(&format!("url = \"{}\"", server.url())),
        "{text}\n{log}"
    );
    assert!(
        server.count("/messages?") >= 1,
        "Test connection ran the newest-item query"
    );
    let out = home.run(&["check"]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("Welcome to Microsoft 365"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.writes(), 0);
}
