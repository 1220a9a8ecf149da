//! The demo on Linux: a private Dovecot with a demo account, the tray agent pointed at it, and a new
//! message every 20 s, so a newcomer sees toasts within a minute. Ctrl-C stops everything it
//! started (the server and the agent are its children, in its process group) and removes its
//! temporary folder.
//!
//! Usage: cargo run --example demo -- PATH/TO/mailpulse

#[path = "../../tests/support/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;
#[path = "../../tests/support/message.rs"]
#[allow(dead_code)]
mod message;
#[path = "../../tests/support/tls.rs"]
#[allow(dead_code)]
mod tls;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set on Ctrl-C (SIGINT) or SIGTERM, so that the demo cleans up instead of dying mid-way.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        s.store(true, Ordering::SeqCst);
    });
    stop
}

pub fn main() {
    let stop = stop_flag();
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
    // Its own state, runtime and config dirs, so a mailpulse you already run is left alone,
    // and so is its start-at-login entry (the demo's config switches start at login off).
    let mut agent = Command::new(&exe)
        .arg("--config")
        .arg(&config)
        .env("XDG_STATE_HOME", home.path().join("state"))
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_RUNTIME_DIR", home.path())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e} (run `make demo`, which builds it)"));
    println!(
        "mailpulse is running in your tray with the demo account (config: {}).\n\
         A message arrives every 20 s; right-click the tray icon to try the menu. Ctrl-C stops it all.",
        config.display()
    );
    'deliveries: for n in 1.. {
        let next = Instant::now() + Duration::from_secs(20);
        while Instant::now() < next {
            std::thread::sleep(Duration::from_millis(200));
            if stop.load(Ordering::SeqCst) {
                println!("Stopping the demo.");
                break 'deliveries;
            }
            if let Ok(Some(status)) = agent.try_wait() {
                println!("mailpulse exited ({status}); stopping the demo.");
                break 'deliveries;
            }
        }
        server.deliver(
            "demo",
            "mailpulse demo <demo@example.org>",
            &format!("Demo message {n}"),
            "This message was delivered over LMTP to the demo Dovecot.",
        );
        println!("Delivered demo message {n}.");
    }
    // SIGTERM first, so the agent logs out; SIGKILL if it has not gone within 10 s.
    let _ = Command::new("kill").arg(agent.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && matches!(agent.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    drop(server); // stops Dovecot by its PID
    drop(home); // removes the temporary folder
}
