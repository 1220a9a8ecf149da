//! What tests/imap*.rs share: an account of the private Dovecot written into the agent's config,
//! and reading what the agent printed or logged.

use std::path::PathBuf;

use serde_json::Value;

use super::agent::{Home, Watch, of_type, secs};
use super::dovecot::Dovecot;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret-pw";

/// How the agent reaches the server.
pub struct Account<'a> {
    pub port: u16,
    pub security: &'a str,
    pub ca_file: Option<PathBuf>,
    pub password: &'a str,
    pub extra: &'a str,
}

pub fn config(home: &Home, accounts: &[Account<'_>], keepalive: &str) -> String {
    // Keep-alive counts are exact here; a paused test VM must not add a "resume" check.
    let mut text = format!("[keepalive]\ncheck_on_wake = false\n{keepalive}\n\n");
    for (i, a) in accounts.iter().enumerate() {
        let pw = home.path().join(format!("password-{i}"));
        std::fs::write(&pw, a.password).unwrap();
        text += &format!(
            "[[accounts]]\nname = \"{}\"\nhost = \"localhost\"\nport = {}\nsecurity = \"{}\"\n\
             username = \"{USER}\"\npassword_command = \"cat '{}'\"\n{}{}\n",
            if i == 0 {
                "work".to_string()
            } else {
                format!("work{i}")
            },
            a.port,
            a.security,
            pw.display(),
            a.ca_file
                .as_ref()
                .map(|c| format!("ca_file = \"{}\"\n", c.display()))
                .unwrap_or_default(),
            a.extra,
        );
    }
    text
}

pub fn tls(dovecot: &Dovecot) -> Account<'static> {
    Account {
        port: dovecot.imaps_port(),
        security: "tls",
        ca_file: Some(dovecot.ca_pem()),
        password: PASSWORD,
        extra: "",
    }
}

pub fn plain(port: u16) -> Account<'static> {
    Account {
        port,
        security: "plain",
        ca_file: None,
        password: PASSWORD,
        extra: "",
    }
}

pub fn setup(_dovecot: &Dovecot, account: Account<'_>, keepalive: &str) -> Home {
    let home = Home::new();
    home.write_config(&config(&home, &[account], keepalive));
    home
}

pub fn connected(w: &Watch) -> Vec<Value> {
    w.until_type(secs(30), "connected")
}

pub fn new_mail(w: &Watch) -> Value {
    w.until_type(secs(30), "new_mail").pop().unwrap()
}

/// A message's INTERNALDATE as the agent prints it (RFC 3339) is a real timestamp, within a
/// few minutes of now: every message here was delivered during the test.
pub fn assert_recent(date: &str) {
    let t = chrono::DateTime::parse_from_rfc3339(date)
        .unwrap_or_else(|e| panic!("date {date:?} is not an RFC 3339 timestamp: {e}"));
    let off = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .abs();
    assert!(off < 300, "date {date} is {off} s away from now");
}

/// Everything in the agent's log files so far ("" while there are none).
pub fn log_files_text(home: &Home) -> String {
    let Ok(entries) = std::fs::read_dir(home.log_dir()) else {
        return String::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}
