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

/// Replace this process with a companion program, same arguments (same PID on Unix, so
/// whoever started `mailpulse` keeps a handle on the tray).
#[cfg(feature = "desktop")]
pub fn run_companion(name: &str) -> std::process::ExitCode {
    let exe = match companion(name) {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("mailpulse: cannot find where mailpulse is installed: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1));
    let error = match platform::replace_process(cmd) {
        Ok(code) => return code,
        Err(e) => e,
    };
    eprintln!(
        "mailpulse: cannot start {}: {error}. It is installed beside mailpulse; reinstall \
         mailpulse, or run `mailpulse watch` for the agent without the tray.",
        exe.display()
    );
    std::process::ExitCode::from(1)
}

pub mod cli;
pub mod config;
pub mod credentials;
#[cfg(feature = "desktop")]
pub mod desktop;
pub mod engine;
pub mod error;
pub mod event;
pub mod fs;
pub mod hooks;
pub mod icons;
pub mod logging;
pub mod oauth;
pub mod platform;
pub mod protocol;
pub mod secret;
pub mod toasts;
pub mod tray_model;
pub mod wake;
