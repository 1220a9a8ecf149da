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

// The public surface is what the three programs, the integration tests and the benchmark use;
// everything else is crate-private, so the compiler reports dead code.
pub mod cli;
pub(crate) mod config;
pub(crate) mod credentials;
#[cfg(feature = "desktop")]
pub mod desktop;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod fs;
pub(crate) mod hooks;
#[cfg(feature = "desktop")]
pub(crate) mod icons;
pub(crate) mod logging;
pub(crate) mod net;
pub(crate) mod oauth;
pub(crate) mod platform;
pub(crate) mod protocol;
pub(crate) mod proxy;
pub(crate) mod secret;
#[cfg(feature = "desktop")]
pub(crate) mod toasts;
#[cfg(feature = "desktop")]
pub(crate) mod tray_model;
pub(crate) mod wake;

/// What the integration tests and the benchmark reach inside the crate; not an API.
#[doc(hidden)]
pub mod testing {
    pub mod credentials {
        pub use crate::credentials::*;
    }
    pub use crate::engine::adaptive::{Params, Sample, Search};
    pub use crate::platform::autostart;
    pub use crate::protocol::ews::xml;
}
