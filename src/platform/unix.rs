//! What the Unix rooms (freedesktop and macOS) share: `sh -c`, the home directory, and the
//! single-instance socket (in a 0700 folder: only the user can connect).

use std::io;
use std::path::{Path, PathBuf};

use super::Signal;
#[cfg(feature = "desktop")]
use super::instance::{ANSWER_WITHIN, Claim, Request, answer, ask, listen_thread};

/// Neither freedesktop nor macOS signs in to a proxy with the session's own credentials
/// (Kerberos tickets are left to a later day): the portable NTLM answers with a stored password.
pub(crate) fn system_sign_in(
    _offered: &[String],
    _proxy_host: &str,
    _identity: Option<(&str, &str)>,
) -> Result<Option<Box<dyn super::ConnectionSignIn>>, String> {
    Ok(None)
}

/// A PAC script's answer (proxy-watch's steps) as the proxy to use: the first step mailpulse
/// can take (DIRECT, an HTTP proxy, SOCKS5); `source` names the script in messages.
pub(crate) fn pac_answer(
    answer: Result<Vec<proxy_watch::ProxyStep>, proxy_watch::Error>,
    source: &str,
) -> super::SystemProxy {
    use proxy_watch::ProxyStep;
    let steps = match answer {
        Ok(steps) => steps,
        Err(e) => {
            return super::SystemProxy::Unsupported(format!("{source} failed: {e}"));
        }
    };
    for step in &steps {
        let scheme = match step {
            ProxyStep::Direct => return super::SystemProxy::Direct,
            ProxyStep::Http(_) => "http",
            // PAC's plain `SOCKS` is read as SOCKS4 by proxy-watch (as Chrome reads it; Firefox
            // and the Windows and macOS rooms read SOCKS5): tried as SOCKS5, which the SOCKS
            // servers in use speak (Dante, `ssh -D`), rather than skipped.
            ProxyStep::Socks5(_) | ProxyStep::Socks4(_) => "socks5",
            // An HTTPS proxy: not one mailpulse speaks; the next one may be.
            _ => continue,
        };
        if let Some(endpoint) = step.endpoint() {
            return super::SystemProxy::Proxy {
                url: format!("{scheme}://{}", endpoint.authority()),
                source: source.to_owned(),
            };
        }
    }
    super::SystemProxy::Unsupported(format!(
        "{source} answers only with proxies mailpulse does not speak (HTTPS proxies)"
    ))
}

/// `url` without `user:password@`, to name it in messages.
pub(crate) fn without_userinfo(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// A shell command line run with `sh -c`, so that pipes work in `password_command` and
/// `on_new_mail`.
pub(crate) fn shell_std(command_line: &str) -> std::process::Command {
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(command_line);
    super::restore_child_env(&mut c);
    c
}

/// A hook: `sh -c` as well; the shell expands `"$MAILPULSE_SUBJECT"` as data, never as code.
/// It leads a process group of its own, so that [`kill_hook_group`] ends what it started too.
pub(crate) fn hook_std(command_line: &str) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut c = shell_std(command_line);
    c.process_group(0);
    c
}

/// Kill a hook started by [`hook_std`] and everything in its process group (a `sleep 300 &`
/// of its own, a pipeline's other commands). `pid` must not have been reaped yet.
pub(crate) fn kill_hook_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pgid > 0 {
        // SAFETY: a plain system call; the group is the hook's own (process_group(0)).
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// A non-empty environment variable holding an absolute path.
pub(crate) fn absolute_env_path(name: &str) -> Option<PathBuf> {
    let value = PathBuf::from(std::env::var_os(name)?);
    value.is_absolute().then_some(value)
}

/// The home directory: `$HOME`, else the password database.
pub(crate) fn home_dir() -> Option<PathBuf> {
    #[allow(deprecated)] // Deprecated until Rust 1.86 for Windows-only reasons.
    absolute_env_path("HOME").or_else(|| std::env::home_dir().filter(|h| h.is_absolute()))
}

/// Remove `path`; `Ok(())` when it does not exist.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// SIGINT/SIGTERM quit (after logging out), SIGHUP reloads, SIGUSR1 checks now.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            hup: signal(SignalKind::hangup()).expect("SIGHUP handler"),
            usr1: signal(SignalKind::user_defined1()).expect("SIGUSR1 handler"),
        }
    }

    pub(crate) async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Quit,
            _ = self.term.recv() => Signal::Quit,
            _ = self.hup.recv() => Signal::Reload,
            _ = self.usr1.recv() => Signal::CheckNow,
        }
    }
}

/// SIGTERM or Ctrl-C: the tray's way to be told to quit.
#[cfg_attr(not(feature = "desktop"), allow(dead_code))]
pub(crate) async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Replace this process with `cmd` (`exec`: same PID, so whoever started `mailpulse` keeps a
/// handle on the tray). Returns only on failure.
pub(crate) fn replace_process(
    mut cmd: std::process::Command,
) -> Result<std::process::ExitCode, io::Error> {
    use std::os::unix::process::CommandExt;
    Err(cmd.exec())
}

/// The single-instance socket `instance.sock` in `$DIR_VAR/mailpulse` (the per-user runtime or
/// temporary folder), else in the state dir.
#[cfg(feature = "desktop")]
pub(crate) fn claim_socket_in(
    dir_var: &str,
    state_dir: &Path,
    on_request: impl Fn(Request) + Send + 'static,
) -> io::Result<Claim> {
    claim_socket(&socket_path(dir_var, state_dir), on_request)
}

/// Tell the running instance (if any) `request` over its socket in `$DIR_VAR/mailpulse` (or
/// the state dir): whether it answered.
#[cfg(feature = "desktop")]
pub(crate) fn tell_socket_in(dir_var: &str, state_dir: &Path, request: Request) -> bool {
    tell_socket(&socket_path(dir_var, state_dir), request)
}

/// `instance.sock` in `$DIR_VAR/mailpulse`, else in the state dir.
#[cfg(feature = "desktop")]
fn socket_path(dir_var: &str, state_dir: &Path) -> PathBuf {
    std::env::var_os(dir_var)
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .map(|p| p.join("mailpulse"))
        .unwrap_or_else(|| state_dir.to_owned())
        .join("instance.sock")
}

/// Tell the instance listening at `path` `request`.
#[cfg(feature = "desktop")]
pub(crate) fn tell_socket(path: &Path, request: Request) -> bool {
    let Ok(stream) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(ANSWER_WITHIN));
    ask(&stream, &format!("{}\n", request.line()))
}

/// The single-instance claim over a Unix socket at `path`.
#[cfg(feature = "desktop")]
pub(crate) fn claim_socket(
    path: &Path,
    on_request: impl Fn(Request) + Send + 'static,
) -> std::io::Result<Claim> {
    use std::os::unix::net::{UnixListener, UnixStream};

    if let Ok(stream) = UnixStream::connect(path) {
        stream.set_read_timeout(Some(ANSWER_WITHIN))?;
        if ask(&stream, &format!("{}\n", Request::OpenSettings.line())) {
            return Ok(Claim::Forwarded);
        }
    }
    // Nobody answered: a stale socket from a crashed instance.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    listen_thread(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(ANSWER_WITHIN));
            answer(&stream, &on_request);
        }
    })?;
    Ok(Claim::First)
}

#[cfg(all(test, feature = "desktop"))]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn a_second_instance_asks_the_first_to_open_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/instance.sock");
        let (tx, rx) = channel();
        assert!(matches!(
            claim_socket(&path, move |r| tx.send(r).unwrap()).unwrap(),
            Claim::First
        ));
        assert!(matches!(
            claim_socket(&path, |_| panic!("not the first")).unwrap(),
            Claim::Forwarded
        ));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Request::OpenSettings
        );
        // `mailpulse password set` tells it to look at the keyring again.
        assert!(tell_socket(&path, Request::CheckCredentials));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Request::CheckCredentials
        );
        // Anything else is not answered and not passed on.
        let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!ask(&stream, "quit\n"));
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        // Nobody there: nothing answers.
        assert!(!tell_socket(
            &dir.path().join("none.sock"),
            Request::CheckCredentials
        ));
    }

    #[test]
    fn a_stale_socket_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(matches!(claim_socket(&path, |_| {}).unwrap(), Claim::First));
    }
}
