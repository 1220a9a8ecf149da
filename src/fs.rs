//! Files mailpulse writes and where they live: [`write_atomic`] (never a torn file, owner-only)
//! and [`Dirs`], the platform's config, state and log folders. Imports nothing of the crate.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Write `contents` to `path` so that a reader sees either the old or the new file, never a
/// torn one: a temp file in the same directory, fsync, rename over, fsync the directory.
/// The file is created with mode 0600 (owner only) on Unix. A symbolic link (a config kept in
/// a dotfiles repository) stays a link: the file it points to is replaced.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let resolved = resolve_links(path)?;
    let path = resolved.as_path();
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

/// `path` with its symbolic links followed (also to a file that does not exist yet), so that
/// writing replaces the file a link points to rather than the link.
pub fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut path = path.to_owned();
    // As the kernel does, give up on a loop after 40 links.
    for _ in 0..40 {
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&path)?;
                path = match path.parent() {
                    Some(dir) => dir.join(target),
                    None => target,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// An exclusive lock for a read-modify-write of `path` (the tray, the settings window and the
/// command line may edit the config at the same moment): a `.NAME.lock` file beside the file
/// `path` resolves to, locked by the OS (flock, LockFileEx) until the guard is dropped, so a
/// process that dies releases it.
pub fn lock_for_edit(path: &Path) -> io::Result<fs::File> {
    let path = resolve_links(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut opts = fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    let file = owner_only(&mut opts).open(dir.join(format!(".{name}.lock")))?;
    file.lock()?;
    Ok(file)
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
        // The lock file lives beside it and is not the file.
        drop(lock_for_edit(&path).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner only");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_file_stays_a_link_and_its_target_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dotfiles = dir.path().join("dotfiles");
        fs::create_dir_all(&dotfiles).unwrap();
        fs::write(dotfiles.join("config.toml"), "old").unwrap();
        let conf = dir.path().join("conf");
        fs::create_dir_all(&conf).unwrap();
        let link = conf.join("config.toml");
        std::os::unix::fs::symlink("../dotfiles/config.toml", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(dotfiles.join("config.toml")).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(&conf).unwrap().count(),
            1,
            "nothing beside the link"
        );
        // A loop is an error, not a hang.
        let a = dir.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        assert!(write_atomic(&a, b"x").is_err());
    }
}
