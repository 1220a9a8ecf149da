//! `make demo`: a private Dovecot with a demo account, the tray agent pointed at it, and a new
//! message every 20 s, so a newcomer sees toasts within a minute. Ctrl-C stops everything it
//! started (the server and the agent are its children, in its process group).
//!
//! Usage: cargo run --example demo -- PATH/TO/mailpulse

#[path = "../tests/support/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;
#[path = "../tests/support/message.rs"]
#[allow(dead_code)]
mod message;
#[path = "../tests/support/tls.rs"]
#[allow(dead_code)]
mod tls;

use std::process::Command;
use std::time::Duration;

fn main() {
    let exe = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/release/mailpulse".into());
    println!("Starting a private Dovecot on 127.0.0.1 …");
    let server = dovecot::Dovecot::start(dovecot::DovecotOptions {
        users: vec![("demo".into(), "demo-pw".into())],
        ..Default::default()
    });
    let home = tempfile::tempdir().expect("temp dir");
    let password = home.path().join("password");
    std::fs::write(&password, "demo-pw").unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[keepalive]\ninterval_secs = 30\n\n[notifications]\nerror_grace_secs = 30\n\n\
             [desktop]\nstart_at_login = false\n\n[[accounts]]\nname = \"demo\"\nhost = \"localhost\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"demo\"\npassword_command = \"cat '{}'\"\n\
             ca_file = \"{}\"\n",
            server.imaps_port(),
            password.display(),
            server.ca_pem().display()
        ),
    )
    .unwrap();
    // Its own state and runtime dirs, so a mailpulse you already run is left alone.
    let mut agent = Command::new(&exe)
        .arg("--config")
        .arg(&config)
        .env("XDG_STATE_HOME", home.path().join("state"))
        .env("XDG_RUNTIME_DIR", home.path())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e} (run `make demo`, which builds it)"));
    println!(
        "mailpulse is running in your tray with the demo account (config: {}).\n\
         A message arrives every 20 s; right-click the tray icon to try the menu. Ctrl-C stops it all.",
        config.display()
    );
    for n in 1.. {
        std::thread::sleep(Duration::from_secs(20));
        if let Ok(Some(status)) = agent.try_wait() {
            println!("mailpulse exited ({status}); stopping the demo.");
            break;
        }
        server.deliver(
            "demo",
            "mailpulse demo <demo@example.org>",
            &format!("Demo message {n}"),
            "This message was delivered over LMTP to the demo Dovecot.",
        );
        println!("Delivered demo message {n}.");
    }
    let _ = agent.kill();
    let _ = agent.wait();
}
