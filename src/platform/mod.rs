//! Everything that differs between operating systems, in one room per OS, selected here once:
//! `freedesktop.rs` (Linux and the BSDs), `windows.rs`, `macos.rs`. Shared code calls
//! `platform::…` and never spells out a `cfg(target_os)`.
//!
//! What every room provides:
//!
//! | item | what |
//! | --- | --- |
//! | `autostart::{enable, disable, is_enabled, exists, location}` | start at login (XDG autostart entry, LaunchAgent, `Run` key) |
//! | `instance::claim(state_dir, on_request)` (here `single_instance`) | single instance; a second one asks the first to open Settings |
//! | `spawn_wake_sources(commands)` | network-change and resume notifications → `Command::Wake` |
//! | `suspended_so_far()` | time spent suspended, from a clock pair (the resume fallback) |
//! | `network_id()` | which network the machine is on (adaptive keep-alive memory) |
//! | `credential_store()`, `KEYRING_UNAVAILABLE_HINT` | the OS keyring and what to do without one |
//! | `shell_std(line)`, `hook_std(line)`, `kill_hook_group(pid)`, `OPENER` | process spawning: `password_command` (`sh -c`, `cmd /D /S /C`), hooks (`sh -c` in a process group of its own, killed as a group; on Windows no shell); what opens a file or URL (`open_with_desktop` and `spawn_reaped` here) |
//! | `system_proxy(url)` | the OS's proxy for a URL: KDE's `kioslaverc` or GNOME's settings (`gsettings`) with their PAC script (QuickJS), WinHTTP (manual, PAC, auto-detection), System Configuration (PAC by CFNetwork); read by `proxy_settings` |
//! | `system_sign_in(offered, proxy_host, identity)` | a proxy's Negotiate/NTLM sign-in done by the OS ([`ConnectionSignIn`]): SSPI on Windows, with the logged-on user's credentials when no user is given; none elsewhere (the portable NTLM in `protocol::ntlm` answers with a stored password) |
//! | `tcp_keepalive(time, interval)` | the kernel's keep-alive probes (with a count where the OS takes one) |
//! | `ack_answers_together(tcp)` | before a write: the answers' ACKs delayed and combined (Linux leaves quick-ACK mode) |
//! | `Signals`, `replace_process(cmd)` | the shell's signals for `watch`; `exec` of a companion |
//! | `desktop::…` (feature `desktop`) | display, environment, webview, the toasts' OS part, termination |
//!
//! Shared parts: `login_entry` (each OS's login entry as text), `instance` (the one-line
//! protocol), the settling of wake notifications and the Windows command-line split, compiled
//! and tested on every host; `unix` (what
//! freedesktop and macOS share) and `native_desktop` (what macOS and Windows share).

// `freedesktop` is a cfg alias (build.rs): all(unix, not(any(macos, ios, android))).
#[cfg(freedesktop)]
#[path = "freedesktop.rs"]
mod os;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod os;
#[cfg(windows)]
#[path = "windows.rs"]
mod os;
#[cfg(not(any(freedesktop, target_os = "macos", windows)))]
compile_error!("mailpulse runs on Linux and the BSDs (freedesktop), Windows and macOS");

#[cfg(feature = "desktop")]
pub(crate) mod instance;
pub(crate) mod login_entry;
#[cfg(all(feature = "desktop", not(freedesktop)))]
mod native_desktop;
mod proxy_settings;
#[cfg(unix)]
mod unix;

pub use os::autostart;
#[cfg(feature = "desktop")]
pub(crate) use os::desktop;
#[cfg(feature = "desktop")]
pub(crate) use os::instance as single_instance;

/// Tell a running tray that a stored password changed (`mailpulse password set`), so that an
/// account blocked after a rejection logs in with it at once; whether a tray answered. A build
/// without the desktop shell has no tray to tell.
pub(crate) fn tell_credentials_changed(state_dir: &std::path::Path) -> bool {
    #[cfg(feature = "desktop")]
    return single_instance::tell(state_dir, instance::Request::CheckCredentials);
    #[cfg(not(feature = "desktop"))]
    {
        let _ = state_dir;
        false
    }
}
pub(crate) use os::{system_proxy, system_sign_in};

/// A connection-based HTTP sign-in (Negotiate, NTLM) that the OS performs itself: each step
/// takes the proxy's challenge (none at first, base64) and gives the next token (base64); the
/// tokens authenticate the TCP connection they travel on. `system_sign_in(offered, proxy_host,
/// identity)` gives one for the schemes a 407 offers (lower-case), `Ok(None)` where the OS has
/// none, an error that says why the OS could not start it.
pub(crate) trait ConnectionSignIn: Send {
    /// The scheme as the headers name it: "Negotiate" or "NTLM".
    fn scheme(&self) -> &'static str;
    fn step(&mut self, challenge: Option<&str>) -> Result<String, String>;
}
pub(crate) use os::{
    KEYRING_UNAVAILABLE_HINT, Signals, ack_answers_together, credential_store, hook_std,
    kill_hook_group, network_id, replace_process, shell_std, sleep_until, spawn_wake_sources,
    suspended_so_far, tcp_keepalive,
};

/// Sleep for `d` with as few wake-ups as the OS allows ([`sleep_until`]): for the long idle
/// waits, never for anything a test drives with tokio's paused clock.
pub(crate) async fn sleep(d: std::time::Duration) {
    sleep_until(tokio::time::Instant::now() + d).await
}
pub(crate) use proxy_settings::{SystemProxy, no_proxy_matches};

use std::sync::atomic::{AtomicBool, Ordering};

/// What the shell's signals ask of `mailpulse watch` (`Signals::next`): Unix has all three
/// (SIGTERM/SIGINT, SIGHUP, SIGUSR1), Windows' console Ctrl-C (quit) and Ctrl-Break (reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // not every OS has a signal for each
pub enum Signal {
    Quit,
    Reload,
    CheckNow,
}

/// The application's identifier where a platform asks for one (the macOS bundle and its
/// notifications, the LaunchAgent's label).
pub(crate) const BUNDLE_ID: &str = "org.mailpulse.mailpulse";

/// Set when the tray switched GDK's OpenGL off for itself (see `desktop::prepare_tray_env`):
/// the programs it starts (mail client, settings window, hooks) must not inherit that.
pub(crate) static GDK_GL_SET_BY_US: AtomicBool = AtomicBool::new(false);

/// Open a folder or URL with the desktop's default handler (`xdg-open`, `open`, `explorer`):
/// the tray's "Open log", a click on a toast, and the browser of `mailpulse signin`.
pub(crate) fn open_with_desktop(target: &str) -> std::io::Result<()> {
    let mut cmd = std::process::Command::new(os::OPENER);
    restore_child_env(&mut cmd);
    cmd.arg(target).stdin(std::process::Stdio::null());
    spawn_reaped(cmd)
}

/// Start a program we do not wait for (the opener, `open_command`) and reap it when it ends, on
/// a thread of its own, so that no zombie stays behind for as long as the tray runs.
pub(crate) fn spawn_reaped(mut cmd: std::process::Command) -> std::io::Result<()> {
    let mut child = cmd.spawn()?;
    std::thread::Builder::new()
        .name("mailpulse-reap".into())
        .spawn(move || {
            let _ = child.wait();
        })
        .map(drop)
}

/// Set once the system itself announces resumes to mailpulse (logind's `PrepareForSleep`, the
/// Windows power manager, IOKit): the clock-pair suspend detector, which wakes the agent every
/// minute only to compare two clocks, then stops.
pub(crate) static RESUME_ANNOUNCED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Why a platform's wake source fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // not every OS has both sources
pub(crate) enum WakeReason {
    Network,
    Resume,
}

/// Notifications arrive in bursts (a link coming up adds addresses and routes; a resume brings
/// the network back): wait this long after the last one (at most ten times this long after the
/// first), then initiate once.
pub(crate) const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Turn a platform's raw wake notifications into one [`Command::Wake`] per settled burst.
#[allow(dead_code)] // the freedesktop room settles its netlink stream itself
pub(crate) async fn forward_settled(
    mut raw: tokio::sync::mpsc::UnboundedReceiver<WakeReason>,
    commands: tokio::sync::mpsc::UnboundedSender<crate::event::Command>,
) {
    while let Some(mut reason) = raw.recv().await {
        // A notification that never stops still gets its check after ten settling times.
        let latest = tokio::time::Instant::now() + SETTLE * 10;
        let settle = tokio::time::sleep(SETTLE);
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => break,
                more = raw.recv() => {
                    match more {
                        Some(WakeReason::Resume) => reason = WakeReason::Resume,
                        Some(WakeReason::Network) => {}
                        None => return,
                    }
                    settle.as_mut().reset((tokio::time::Instant::now() + SETTLE).min(latest));
                }
            }
        }
        match reason {
            WakeReason::Resume => tracing::info!("resumed: checking every connection now"),
            WakeReason::Network => {
                tracing::info!("the network changed: checking every connection now")
            }
        }
        if commands.send(crate::event::Command::Wake).is_err() {
            return;
        }
    }
}

/// A Windows command line split the way `CreateProcess` finds the program: a quoted first part
/// (`"C:\Program Files\x.exe" a b`) or the first word, and the rest as it is written.
#[allow(dead_code)] // the Windows room's hooks; tested on every host
pub(crate) fn split_program(line: &str) -> (&str, &str) {
    let line = line.trim();
    if let Some(quoted) = line.strip_prefix('"') {
        return match quoted.find('"') {
            Some(end) => (&quoted[..end], quoted[end + 1..].trim_start()),
            None => (quoted, ""),
        };
    }
    match line.find(char::is_whitespace) {
        Some(end) => (&line[..end], line[end..].trim_start()),
        None => (line, ""),
    }
}

/// [`shell_std`] on the tokio runtime.
pub(crate) fn shell(command_line: &str) -> tokio::process::Command {
    tokio::process::Command::from(shell_std(command_line))
}

/// Undo the tray's own environment tweaks for a program it starts.
pub(crate) fn restore_child_env(c: &mut std::process::Command) {
    if GDK_GL_SET_BY_US.load(Ordering::Relaxed) {
        c.env_remove("GDK_GL");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Command;

    #[test]
    fn the_program_is_the_first_word_or_the_quoted_first_part() {
        assert_eq!(split_program("notify.exe"), ("notify.exe", ""));
        assert_eq!(
            split_program("  reg add HKCU\\x /d %MAILPULSE_SUBJECT% "),
            ("reg", "add HKCU\\x /d %MAILPULSE_SUBJECT%")
        );
        assert_eq!(
            split_program(r#""C:\Program Files\Hook\hook.exe" --subject "a b""#),
            (r"C:\Program Files\Hook\hook.exe", r#"--subject "a b""#)
        );
        assert_eq!(
            split_program(r#""C:\unterminated"#),
            (r"C:\unterminated", "")
        );
        assert_eq!(split_program(""), ("", ""));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_wake_notifications_becomes_one_check() {
        let (raw_tx, raw_rx) = tokio::sync::mpsc::unbounded_channel();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(forward_settled(raw_rx, tx));
        for _ in 0..5 {
            raw_tx.send(WakeReason::Network).unwrap();
            tokio::time::sleep(SETTLE / 5).await;
        }
        raw_tx.send(WakeReason::Resume).unwrap();
        tokio::time::sleep(SETTLE * 2).await;
        assert!(matches!(rx.try_recv(), Ok(Command::Wake)));
        assert!(rx.try_recv().is_err(), "one check for the whole burst");
        raw_tx.send(WakeReason::Network).unwrap();
        tokio::time::sleep(SETTLE * 2).await;
        assert!(matches!(rx.try_recv(), Ok(Command::Wake)));
    }
}
