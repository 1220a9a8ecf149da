//! Files mailpulse writes and where they live: [`write_atomic`] (never a torn file, owner-only)
//! and [`Dirs`], the platform's config, state and log folders. Imports nothing of the crate.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Write `contents` to `path` so that a reader sees either the old or the new file, never a
/// torn one: a temp file in the same directory, fsync, rename over, fsync the directory.
/// The file is created with mode 0600 (owner only) on Unix.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        let mut f = owner_only(&mut opts).open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Files mailpulse creates are the user's alone (mode 0600 on Unix; on Windows the profile's
/// folders already are). The one place that knows about file modes.
pub fn owner_only(opts: &mut fs::OpenOptions) -> &mut fs::OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(opts, 0o600);
    opts
}

/// Make a rename in `dir` durable (Unix; NTFS journals the rename itself).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Where mailpulse keeps its files on this platform.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config_file: PathBuf,
    /// Last-seen UIDs and other state.
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Dirs {
    /// The platform's directories (`~/.config/mailpulse/config.toml` etc. on Linux, honouring
    /// the XDG variables), or `None` when there is no home directory.
    pub fn platform() -> Option<Dirs> {
        let p = directories::ProjectDirs::from("org", "mailpulse", "mailpulse")?;
        let state_dir = p
            .state_dir()
            .unwrap_or_else(|| p.data_local_dir())
            .to_owned();
        Some(Dirs {
            config_file: p.config_dir().join("config.toml"),
            log_dir: state_dir.join("logs"),
            state_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("f.desktop");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.desktop")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner only");
        }
    }
}
