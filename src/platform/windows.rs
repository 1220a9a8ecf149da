//! The Windows room: the `Run` key, the interrupt-time clocks for resume, the Credential
//! Manager, `cmd /C`, `explorer`, the single instance over loopback with a token, and (desktop)
//! Windows toasts and WebView2. Type-checked on every CI run (`make cross-check`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::Signal;
use crate::event::Command;

/// Start at login: value `mailpulse` of `HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run`.
pub mod autostart {
    use super::*;
    use crate::platform::login_entry::{RUN_KEY, RUN_VALUE_NAME, run_command_line};
    use winreg::RegKey;
    use winreg::enums::{HKEY_CURRENT_USER, KEY_QUERY_VALUE, KEY_SET_VALUE};

    /// `HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run\mailpulse` (a registry
    /// path, not a file).
    pub fn location() -> Option<PathBuf> {
        Some(PathBuf::from(format!(
            r"HKEY_CURRENT_USER\{RUN_KEY}\{RUN_VALUE_NAME}"
        )))
    }

    pub fn enable(exe: &Path) -> io::Result<PathBuf> {
        let line = run_command_line(exe)?;
        let hkcu = RegKey::predef(HKEY_CURRENT_USER);
        let (run, _) = hkcu.create_subkey_with_flags(RUN_KEY, KEY_SET_VALUE)?;
        run.set_value(RUN_VALUE_NAME, &line)?;
        let path = location().unwrap_or_default();
        tracing::info!(path = %path.display(), "autostart enabled");
        Ok(path)
    }

    pub fn disable() -> io::Result<()> {
        let hkcu = RegKey::predef(HKEY_CURRENT_USER);
        let run = match hkcu.open_subkey_with_flags(RUN_KEY, KEY_SET_VALUE) {
            Ok(run) => run,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match run.delete_value(RUN_VALUE_NAME) {
            Ok(()) => {
                tracing::info!("autostart disabled");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn is_enabled() -> bool {
        RegKey::predef(HKEY_CURRENT_USER)
            .open_subkey_with_flags(RUN_KEY, KEY_QUERY_VALUE)
            .and_then(|run| run.get_raw_value(RUN_VALUE_NAME))
            .is_ok()
    }

    /// There is no "switched off" entry here: it exists or not.
    pub fn exists() -> bool {
        is_enabled()
    }
}

/// Power-broadcast and connectivity notifications need a window's message loop (not wired
/// yet): the clocks below find a resume within a minute, the keep-alive a dead connection within
/// one interval.
pub(crate) fn spawn_wake_sources(commands: UnboundedSender<Command>) {
    drop(commands);
}

/// Windows: the interrupt time counts sleep, the unbiased interrupt time does not
/// (both in 100 ns units).
pub(crate) fn suspended_so_far() -> Option<Duration> {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn QueryUnbiasedInterruptTime(unbiased: *mut u64) -> i32;
        fn GetTickCount64() -> u64;
    }
    let mut unbiased = 0u64;
    // SAFETY: both calls only write into / return plain integers.
    let (ok, ticks_ms) = unsafe { (QueryUnbiasedInterruptTime(&mut unbiased), GetTickCount64()) };
    if ok == 0 {
        return None;
    }
    let awake = Duration::from_nanos(unbiased.saturating_mul(100));
    Some(Duration::from_millis(ticks_ms).saturating_sub(awake))
}

/// Learned intervals are remembered per network; Windows' network identity is not read yet.
pub(crate) fn network_id() -> String {
    "unknown".into()
}

/// The Windows Credential Manager.
pub(crate) fn credential_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    windows_native_keyring_store::Store::new().map(|s| s as Arc<keyring_core::CredentialStore>)
}

/// What the user is told to do when there is no usable keyring.
pub(crate) const KEYRING_UNAVAILABLE_HINT: &str = "the Windows Credential Manager cannot be \
     opened: check that the Credential Manager service is running, or use password_command";

/// A command line run with `cmd /C`, so that pipes work in `password_command` and
/// `on_new_mail`.
pub(crate) fn shell_std(command_line: &str) -> std::process::Command {
    let mut c = std::process::Command::new("cmd");
    c.arg("/C").arg(command_line);
    super::restore_child_env(&mut c);
    c
}

/// TCP keep-alive probes after `time` of silence, every `interval` (Windows fixes the count at 10).
pub(crate) fn tcp_keepalive(time: Duration, interval: Duration) -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(time)
        .with_interval(interval)
}

/// What opens a folder or URL with the default application.
pub(crate) const OPENER: &str = "explorer";

/// The single instance: a loopback port and a random token in a file of the user's own state
/// folder (`instance.port`); a request without the token is ignored.
#[cfg(feature = "desktop")]
pub mod instance {
    use super::*;
    pub use crate::platform::instance::{Claim, Request};

    pub fn claim(
        state_dir: &Path,
        on_request: impl Fn(Request) + Send + 'static,
    ) -> io::Result<Claim> {
        crate::platform::instance::loopback::claim(&state_dir.join("instance.port"), on_request)
    }
}

/// Ctrl-C quits (after logging out), Ctrl-Break reloads the config: the console's two signals.
pub(crate) struct Signals {
    brk: Option<tokio::signal::windows::CtrlBreak>,
}

impl Signals {
    pub(crate) fn new() -> Signals {
        Signals {
            brk: tokio::signal::windows::ctrl_break().ok(),
        }
    }

    pub(crate) async fn next(&mut self) -> Signal {
        let brk = async {
            match self.brk.as_mut() {
                Some(b) => {
                    b.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Quit,
            _ = brk => Signal::Reload,
        }
    }
}

/// Run `cmd` in this process's stead: Windows has no exec, so wait for it and pass its exit
/// code on. Returns only on failure to start it.
pub(crate) fn replace_process(
    mut cmd: std::process::Command,
) -> Result<std::process::ExitCode, io::Error> {
    let status = cmd.status()?;
    Ok(std::process::ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8,
    ))
}

/// The desktop shell's OS part: WebView2, Windows toast notifications (a click opens the mail
/// client or webmail, as on Linux).
#[cfg(feature = "desktop")]
pub(crate) mod desktop {
    pub(crate) use crate::platform::native_desktop::*;

    /// What to do when the settings window's web view cannot be created.
    pub(crate) const WEBVIEW_MISSING_HINT: &str = "install the Microsoft Edge WebView2 Runtime (Windows 11 has it; for Windows 10 Microsoft offers the Evergreen installer), which draws it";

    use crate::toasts::ToastKind;

    /// A shown toast: notify-rust's handle, whose events (a click, a dismissal) arrive once.
    /// Windows offers no replacing through notify-rust (no tag): a newer toast of the same slot
    /// is shown beside the old one, and the Action Center keeps both.
    pub(crate) struct ToastHandle(std::sync::Mutex<Option<notify_rust::NotificationHandle>>);

    pub(crate) fn toast_hints(_n: &mut notify_rust::Notification, _kind: ToastKind) {}

    pub(crate) async fn show_toast(
        n: &mut notify_rust::Notification,
        _old: Option<&ToastHandle>,
    ) -> notify_rust::error::Result<ToastHandle> {
        let handle = n.show()?;
        Ok(ToastHandle(std::sync::Mutex::new(Some(handle))))
    }

    /// A click on the toast's body (its default activation) runs `clicked`; the wait for it
    /// blocks on notify-rust's channel, so it runs on the blocking pool.
    pub(crate) async fn wait_for_click(handle: &ToastHandle, clicked: impl FnOnce()) {
        let Some(h) = handle.0.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let default = tokio::task::spawn_blocking(move || {
            let mut default = false;
            let _ = h.wait_for_response(|r: &notify_rust::NotificationResponse| {
                default = matches!(r, notify_rust::NotificationResponse::Default)
            });
            default
        })
        .await
        .unwrap_or(false);
        if default {
            clicked();
        }
    }

    /// Toasts leave on their own (Action Center keeps them); nothing to close.
    pub(crate) async fn close_toast(_handle: &ToastHandle) {}

    /// Nothing to adjust in the tray's own environment on Windows.
    pub(crate) fn prepare_tray_env() {}

    /// Ctrl-C (or the console closing).
    pub(crate) async fn termination() {
        let _ = tokio::signal::ctrl_c().await;
    }
}
