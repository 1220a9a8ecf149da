//! mailpulse keeps a client-initiated mail session alive through NAT gateways and firewalls,
//! and turns what the server pushes over it into events (printed, or shown as desktop toasts).
//!
//! Data flow: [`config`] → [`engine`] (with a [`protocol`] per account) → [`event::Event`]s →
//! a shell ([`cli`]'s `watch`, or the tray in `desktop`). See `docs/ARCHITECTURE.md`.

/// mailpulse ships as three programs side by side, so that each maps only the libraries it
/// uses: `mailpulse` (the command line, `watch`, `check`; no GUI library linked), which starts
/// `mailpulse-tray` (GTK, the tray and toasts) when run without a subcommand, which starts
/// `mailpulse-settings` (WebKit) for the settings window.
pub fn companion(name: &str) -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or(std::io::ErrorKind::NotFound)?;
    Ok(dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}

pub mod autostart;
pub mod cli;
pub mod config;
pub mod credentials;
#[cfg(feature = "desktop")]
pub mod desktop;
pub mod engine;
pub mod event;
pub mod hooks;
pub mod icons;
pub mod logging;
pub mod netid;
pub mod oauth;
pub mod protocol;
pub mod secret;
pub mod toasts;
pub mod tray_model;
pub mod wake;
