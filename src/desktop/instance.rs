//! Single instance: the first `mailpulse` listens on a socket in the runtime directory; a
//! second one connects, asks it to open Settings, and exits.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// What a second instance can ask of the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    OpenSettings,
}

pub enum Claim {
    /// We are the only instance; requests from later ones arrive through `on_request`.
    First,
    /// Another instance is running and was asked to open Settings.
    Forwarded,
}

/// The socket's path: `$XDG_RUNTIME_DIR/mailpulse/instance.sock`, else in the state dir.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .map(|p| p.join("mailpulse"))
        .unwrap_or_else(|| state_dir.to_owned())
        .join("instance.sock")
}

#[cfg(unix)]
pub fn claim(path: &Path, on_request: impl Fn(Request) + Send + 'static) -> std::io::Result<Claim> {
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::time::Duration;

    if let Ok(mut stream) = UnixStream::connect(path) {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"settings\n")?;
        let mut reply = String::new();
        let _ = BufReader::new(stream).read_line(&mut reply);
        if reply.trim() == "ok" {
            return Ok(Claim::Forwarded);
        }
    }
    // Nobody answered: a stale socket from a crashed instance.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::Builder::new()
        .name("mailpulse-instance".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut line).is_ok() && line.trim() == "settings" {
                    on_request(Request::OpenSettings);
                    let _ = (&stream).write_all(b"ok\n");
                }
            }
        })?;
    Ok(Claim::First)
}

#[cfg(not(unix))]
pub fn claim(
    _path: &Path,
    _on_request: impl Fn(Request) + Send + 'static,
) -> std::io::Result<Claim> {
    // Windows: a named pipe would do the same; until then every start is a first instance.
    Ok(Claim::First)
}

#[cfg(all(test, unix))]
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
            claim(&path, move |r| tx.send(r).unwrap()).unwrap(),
            Claim::First
        ));
        assert!(matches!(
            claim(&path, |_| panic!("not the first")).unwrap(),
            Claim::Forwarded
        ));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Request::OpenSettings
        );
    }

    #[test]
    fn a_stale_socket_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(matches!(claim(&path, |_| {}).unwrap(), Claim::First));
    }
}
