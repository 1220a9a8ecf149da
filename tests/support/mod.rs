//! Shared support code for the integration tests.
//!
//! The main piece is [`Dovecot`]: a private, per-test Dovecot 2.3 instance
//! (IMAP with STARTTLS, implicit-TLS IMAPS and LMTP, all on 127.0.0.1 with
//! free ports) living entirely inside its own temporary directory. Nothing of
//! the system Dovecot (`/etc/dovecot`, `/run/dovecot`, `/var/lib/dovecot`) is
//! read or touched, so any number of instances can run in parallel.
//!
//! [`ImapClient`] is a tiny line-based raw IMAP client over plain TCP, for
//! tests that need to talk to the server directly (greeting, LOGIN, IDLE, ...).
//!
//! Environment knobs: `MAILPULSE_KEEP_DOVECOT=1` keeps each instance's
//! directory (config, logs, rawlogs, Maildirs) for debugging; `TMPDIR`
//! chooses where those directories go; `DOVECOT_BIN`/`DOVEADM_BIN` override
//! `/usr/sbin/dovecot` and `/usr/bin/doveadm`.
//!
//! Every test binary declares `mod support;`, and not all of them use every
//! item, hence the blanket `dead_code` allowance.
#![allow(dead_code, unused_imports)]

// Platform-neutral: the mailpulse binary as a child, messages, TLS files, the EWS and OAuth test
// servers, the relay; they compile and run on every OS.
pub mod agent;
pub mod ews_schema;
pub mod ews_server;
pub mod graph_server;
pub mod idp;
pub mod imap;
pub mod message;
pub mod ntlm_server;
pub mod relay;
pub mod tls;

// Linux only: a private Dovecot (Debian's package, uid/gid and modes of Unix), a D-Bus session
// with a notification daemon and a keyring under Xvfb, a fake logind on a private system bus.
#[cfg(target_os = "linux")]
pub mod desktop;
#[cfg(target_os = "linux")]
pub mod dovecot;
#[cfg(target_os = "linux")]
pub mod hostile_imap;
#[cfg(target_os = "linux")]
pub mod imap_setup;
#[cfg(target_os = "linux")]
pub mod keyring;
#[cfg(target_os = "linux")]
pub mod logind;

#[cfg(target_os = "linux")]
pub use dovecot::{Dovecot, DovecotOptions, free_port};
pub use imap::ImapClient;
