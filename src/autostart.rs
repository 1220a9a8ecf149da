//! Starting mailpulse when the user logs in.
//!
//! | platform | entry |
//! | --- | --- |
//! | Linux and other freedesktop Unixes | `$XDG_CONFIG_HOME/autostart/mailpulse.desktop` (XDG Autostart; `$HOME/.config` when `XDG_CONFIG_HOME` is unset, empty or relative) |
//! | macOS | `~/Library/LaunchAgents/org.mailpulse.mailpulse.plist` (a launchd user agent, `RunAtLoad`) |
//! | Windows | value `mailpulse` of `HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run` |
//!
//! Files are written atomically (a temporary file in the same directory, then a rename), so a
//! crash never leaves a half-written entry behind. The environment variables are read at every
//! call, never cached.
//!
//! The `Exec` key of the desktop entry follows the "Exec key" section of the Desktop Entry
//! Specification exactly: the path is put in double quotes when it contains a reserved
//! character, `"` `` ` `` `$` `\` are backslash-escaped inside the quotes, `%` is doubled, and
//! then the string-value escaping of the file format doubles every backslash once more (so a
//! literal `\` is written `\\\\`, a literal `$` is written `\\$`). Paths that the format cannot
//! carry (not UTF-8, control characters, `=`, relative) are refused with
//! [`io::ErrorKind::InvalidInput`].
//!
//! Known limit: GLib's desktop-entry loader (used by gnome-session, and by other sessions that
//! read autostart entries with GLib) checks that the program exists before it expands `%%`, so
//! it ignores an entry whose program path contains `%`, although the entry is valid (seen with
//! GLib 2.74); [`enable`] logs a warning in that case.

use std::io;
use std::path::{Path, PathBuf};

/// The launchd label of the macOS login agent (also its file name, plus `.plist`).
pub const LAUNCH_AGENT_LABEL: &str = "org.mailpulse.mailpulse";
/// The name of the freedesktop autostart file.
pub const DESKTOP_FILE_NAME: &str = "mailpulse.desktop";
/// The name of the value under the Windows `Run` key.
pub const RUN_VALUE_NAME: &str = "mailpulse";

/// Make `exe` start when the user logs in, replacing any previous mailpulse entry. Returns
/// where the entry was written (a file, or on Windows the registry value's path).
///
/// `exe` must be absolute (typically `std::env::current_exe()`).
pub fn enable(exe: &Path) -> io::Result<PathBuf> {
    platform::enable(exe)
}

/// Remove the login entry. `Ok(())` when there was none.
pub fn disable() -> io::Result<()> {
    platform::disable()
}

/// Whether a mailpulse login entry exists (and, on freedesktop systems, is not switched off
/// with `Hidden=true` or `X-GNOME-Autostart-enabled=false`).
pub fn is_enabled() -> bool {
    platform::is_enabled()
}

/// Whether a mailpulse login entry exists at all, switched on or off (on Linux an entry the
/// desktop switched off still exists; on macOS and Windows there is no "off" but absence).
pub fn exists() -> bool {
    #[cfg(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))]
    {
        platform::location().is_some_and(|p| p.exists())
    }
    #[cfg(not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    )))]
    {
        platform::is_enabled()
    }
}

/// Where the login entry lives on this platform, whether or not it exists; `None` when that
/// cannot be determined (no home directory) or the platform has no autostart support.
pub fn location() -> Option<PathBuf> {
    platform::location()
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Write `contents` to `path` through a temporary file in the same directory and a rename.
#[cfg(any(all(unix, not(any(target_os = "ios", target_os = "android"))), test))]
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;

    let dir = path
        .parent()
        .ok_or_else(|| invalid_input(format!("{} has no parent directory", path.display())))?;
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // Make the rename itself durable; not every file system supports syncing a directory.
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Remove `path`; `Ok(())` when it does not exist.
#[cfg(any(all(unix, not(any(target_os = "ios", target_os = "android"))), test))]
fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A non-empty environment variable holding an absolute path.
#[cfg(all(unix, not(any(target_os = "ios", target_os = "android"))))]
fn absolute_env_path(name: &str) -> Option<PathBuf> {
    let value = PathBuf::from(std::env::var_os(name)?);
    value.is_absolute().then_some(value)
}

/// The home directory: `$HOME`, else the password database.
#[cfg(all(unix, not(any(target_os = "ios", target_os = "android"))))]
fn home_dir() -> Option<PathBuf> {
    #[allow(deprecated)] // Deprecated until Rust 1.86 for Windows-only reasons.
    absolute_env_path("HOME").or_else(|| std::env::home_dir().filter(|h| h.is_absolute()))
}

// ---------------------------------------------------------------------------------------------
// freedesktop (XDG Autostart)

/// The characters that force quoting of an `Exec` argument (Desktop Entry Specification,
/// "The Exec key").
const EXEC_RESERVED: &[char] = &[
    ' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')',
    '`',
];

/// The value of the `Exec` key that runs `exe` with no argument, as written in the file.
#[cfg_attr(
    not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    )),
    allow(dead_code)
)]
fn desktop_exec_value(exe: &Path) -> io::Result<String> {
    let path = exe
        .to_str()
        .ok_or_else(|| invalid_input(format!("{} is not valid UTF-8", exe.display())))?;
    if !exe.is_absolute() {
        return Err(invalid_input(format!("{path:?} is not an absolute path")));
    }
    if path.chars().any(char::is_control) {
        return Err(invalid_input(format!(
            "{path:?} contains control characters, which a desktop entry cannot hold"
        )));
    }
    if path.contains('=') {
        return Err(invalid_input(format!(
            "{path:?} contains '=', which the Desktop Entry Specification forbids in the \
             executable of an Exec key"
        )));
    }
    // 1. Quoting rule: quote the argument if it has a reserved character, escaping " ` $ \.
    let argument = if path.contains(EXEC_RESERVED) {
        let mut quoted = String::with_capacity(path.len() + 2);
        quoted.push('"');
        for c in path.chars() {
            if matches!(c, '"' | '`' | '$' | '\\') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    } else {
        path.to_owned()
    };
    // 2. Field codes: a literal '%' is written "%%" (inside quotes too).
    let argument = argument.replace('%', "%%");
    // 3. String-value escaping of the key file, applied to the whole value: '\' becomes "\\".
    Ok(argument.replace('\\', "\\\\"))
}

/// The complete autostart desktop entry for `exe`.
#[cfg_attr(
    not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    )),
    allow(dead_code)
)]
fn desktop_entry(exe: &Path) -> io::Result<String> {
    let exec = desktop_exec_value(exe)?;
    Ok(format!(
        "[Desktop Entry]\n\
         Type=Application\n\
         Name=mailpulse\n\
         GenericName=Mail keep-alive\n\
         Comment=Keeps your mail connection alive and notifies you of new mail\n\
         Exec={exec}\n\
         Icon=mailpulse\n\
         Terminal=false\n\
         NoDisplay=false\n\
         StartupNotify=false\n\
         X-GNOME-Autostart-enabled=true\n"
    ))
}

/// Whether the text of a desktop entry leaves it enabled: neither `Hidden=true` nor
/// `X-GNOME-Autostart-enabled=false` in its `[Desktop Entry]` group.
#[cfg_attr(
    not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    )),
    allow(dead_code)
)]
fn desktop_entry_enabled(text: &str) -> bool {
    let mut in_main_group = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_main_group = line == "[Desktop Entry]";
            continue;
        }
        if !in_main_group {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match (key.trim(), value.trim()) {
            ("Hidden", "true") | ("X-GNOME-Autostart-enabled", "false") => return false,
            _ => {}
        }
    }
    true
}

#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
mod platform {
    use super::*;

    /// `$XDG_CONFIG_HOME/autostart/mailpulse.desktop`, falling back to `$HOME/.config`.
    pub(super) fn location() -> Option<PathBuf> {
        let config_home =
            absolute_env_path("XDG_CONFIG_HOME").or_else(|| Some(home_dir()?.join(".config")))?;
        Some(config_home.join("autostart").join(DESKTOP_FILE_NAME))
    }

    fn required_location() -> io::Result<PathBuf> {
        location().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "cannot find the autostart directory: neither XDG_CONFIG_HOME nor HOME is set",
            )
        })
    }

    pub(super) fn enable(exe: &Path) -> io::Result<PathBuf> {
        let contents = desktop_entry(exe)?;
        let path = required_location()?;
        write_atomically(&path, contents.as_bytes())?;
        tracing::info!(path = %path.display(), "autostart enabled");
        if exe.to_string_lossy().contains('%') {
            // The entry is correct (`%%`), but GLib looks for the program before expanding
            // `%%`, so GNOME ignores it.
            tracing::warn!(
                exe = %exe.display(),
                "the program's path contains '%': GNOME (and other desktops that read autostart \
                 entries with GLib) will not start it at login; install mailpulse in a directory \
                 without '%'"
            );
        }
        Ok(path)
    }

    pub(super) fn disable() -> io::Result<()> {
        let Some(path) = location() else {
            return Ok(());
        };
        remove_if_exists(&path)?;
        tracing::info!(path = %path.display(), "autostart disabled");
        Ok(())
    }

    pub(super) fn is_enabled() -> bool {
        location()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .is_some_and(|text| desktop_entry_enabled(&text))
    }
}

// ---------------------------------------------------------------------------------------------
// macOS (launchd user agent)

/// `s` with the five XML special characters escaped.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The launchd property list that runs `exe` at login.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
fn launch_agent_plist(exe: &Path) -> io::Result<String> {
    let path = exe
        .to_str()
        .ok_or_else(|| invalid_input(format!("{} is not valid UTF-8", exe.display())))?;
    if !exe.is_absolute() {
        return Err(invalid_input(format!("{path:?} is not an absolute path")));
    }
    // XML 1.0 cannot carry most control characters, even escaped.
    if path.chars().any(char::is_control) {
        return Err(invalid_input(format!(
            "{path:?} contains control characters, which a property list cannot hold"
        )));
    }
    let label = LAUNCH_AGENT_LABEL;
    let program = xml_escape(path);
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{label}</string>
	<key>ProgramArguments</key>
	<array>
		<string>{program}</string>
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>LimitLoadToSessionType</key>
	<string>Aqua</string>
	<key>ProcessType</key>
	<string>Interactive</string>
</dict>
</plist>
"#
    ))
}

#[cfg(target_os = "macos")]
mod platform {
    use super::*;

    /// `~/Library/LaunchAgents/org.mailpulse.mailpulse.plist`.
    pub(super) fn location() -> Option<PathBuf> {
        Some(
            home_dir()?
                .join("Library")
                .join("LaunchAgents")
                .join(format!("{LAUNCH_AGENT_LABEL}.plist")),
        )
    }

    fn required_location() -> io::Result<PathBuf> {
        location().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "cannot find the LaunchAgents directory: HOME is not set",
            )
        })
    }

    /// Writes the agent; launchd loads it at the next login (nothing is started now).
    pub(super) fn enable(exe: &Path) -> io::Result<PathBuf> {
        let contents = launch_agent_plist(exe)?;
        let path = required_location()?;
        write_atomically(&path, contents.as_bytes())?;
        tracing::info!(path = %path.display(), "autostart enabled");
        Ok(path)
    }

    pub(super) fn disable() -> io::Result<()> {
        let Some(path) = location() else {
            return Ok(());
        };
        remove_if_exists(&path)?;
        tracing::info!(path = %path.display(), "autostart disabled");
        Ok(())
    }

    pub(super) fn is_enabled() -> bool {
        location().is_some_and(|path| path.is_file())
    }
}

// ---------------------------------------------------------------------------------------------
// Windows (HKCU Run key)

/// The `Run` key, under `HKEY_CURRENT_USER`.
#[cfg_attr(not(windows), allow(dead_code))]
const RUN_KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Run";

/// The command line stored under the `Run` key: the path in double quotes (Windows paths
/// cannot contain `"`, so no escaping is needed).
#[cfg_attr(not(windows), allow(dead_code))]
fn run_command_line(exe: &Path) -> io::Result<std::ffi::OsString> {
    if !exe.is_absolute() {
        return Err(invalid_input(format!(
            "{} is not an absolute path",
            exe.display()
        )));
    }
    if exe.as_os_str().to_string_lossy().contains('"') {
        return Err(invalid_input(format!(
            "{} contains a double quote",
            exe.display()
        )));
    }
    let mut line = std::ffi::OsString::from("\"");
    line.push(exe.as_os_str());
    line.push("\"");
    Ok(line)
}

#[cfg(windows)]
mod platform {
    use super::*;
    use winreg::RegKey;
    use winreg::enums::{HKEY_CURRENT_USER, KEY_QUERY_VALUE, KEY_SET_VALUE};

    /// `HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run\mailpulse` (a registry
    /// path, not a file).
    pub(super) fn location() -> Option<PathBuf> {
        Some(PathBuf::from(format!(
            r"HKEY_CURRENT_USER\{RUN_KEY}\{RUN_VALUE_NAME}"
        )))
    }

    pub(super) fn enable(exe: &Path) -> io::Result<PathBuf> {
        let line = run_command_line(exe)?;
        let hkcu = RegKey::predef(HKEY_CURRENT_USER);
        let (run, _) = hkcu.create_subkey_with_flags(RUN_KEY, KEY_SET_VALUE)?;
        run.set_value(RUN_VALUE_NAME, &line)?;
        let path = location().unwrap_or_default();
        tracing::info!(path = %path.display(), "autostart enabled");
        Ok(path)
    }

    pub(super) fn disable() -> io::Result<()> {
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

    pub(super) fn is_enabled() -> bool {
        RegKey::predef(HKEY_CURRENT_USER)
            .open_subkey_with_flags(RUN_KEY, KEY_QUERY_VALUE)
            .and_then(|run| run.get_raw_value(RUN_VALUE_NAME))
            .is_ok()
    }
}

// ---------------------------------------------------------------------------------------------
// Anything else

#[cfg(not(any(windows, all(unix, not(any(target_os = "ios", target_os = "android"))))))]
mod platform {
    use super::*;

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "starting at login is not supported on this platform",
        )
    }

    pub(super) fn location() -> Option<PathBuf> {
        None
    }

    pub(super) fn enable(_exe: &Path) -> io::Result<PathBuf> {
        Err(unsupported())
    }

    pub(super) fn disable() -> io::Result<()> {
        Ok(())
    }

    pub(super) fn is_enabled() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(path: &str) -> String {
        desktop_exec_value(Path::new(path)).unwrap()
    }

    #[test]
    fn plain_path_is_not_quoted() {
        assert_eq!(exec("/usr/bin/mailpulse"), "/usr/bin/mailpulse");
        assert_eq!(
            exec("/opt/mail-pulse_2.0/bin/mp+x"),
            "/opt/mail-pulse_2.0/bin/mp+x"
        );
    }

    #[test]
    fn space_is_quoted() {
        assert_eq!(
            exec("/home/me/My Apps/mailpulse"),
            r#""/home/me/My Apps/mailpulse""#
        );
    }

    #[test]
    fn every_reserved_character_forces_quotes() {
        for c in EXEC_RESERVED.iter().filter(|c| !c.is_control()) {
            let value = exec(&format!("/a{c}b"));
            assert!(
                value.starts_with('"') && value.ends_with('"'),
                "{c:?}: {value}"
            );
        }
    }

    #[test]
    fn double_quote_and_backtick_are_escaped_once() {
        assert_eq!(exec(r#"/a "b"/mp"#), r#""/a \\"b\\"/mp""#);
        assert_eq!(exec("/a`b`/mp"), r#""/a\\`b\\`/mp""#);
    }

    #[test]
    fn dollar_is_written_as_two_backslashes_and_dollar() {
        // The spec: 'a literal dollar sign in a quoted argument in a desktop entry file is
        // unambiguously represented with ("\\$")'.
        assert_eq!(exec("/opt/$HOME/mp"), r#""/opt/\\$HOME/mp""#);
    }

    #[test]
    fn backslash_is_written_as_four_backslashes() {
        // The spec: 'to unambiguously represent a literal backslash character in a quoted
        // argument in a desktop entry file requires the use of four successive backslash
        // characters ("\\\\")'.
        assert_eq!(exec(r"/opt/a\b/mp"), r#""/opt/a\\\\b/mp""#);
    }

    #[test]
    fn percent_is_doubled_quoted_or_not() {
        assert_eq!(exec("/opt/100%/mp"), "/opt/100%%/mp");
        assert_eq!(exec("/opt/100% sure/mp"), r#""/opt/100%% sure/mp""#);
        assert_eq!(exec("/opt/%u/mp"), "/opt/%%u/mp");
    }

    #[test]
    fn everything_at_once() {
        assert_eq!(
            exec(r#"/tmp/x y/"q" $d \b `t` 5%/mp"#),
            r#""/tmp/x y/\\"q\\" \\$d \\\\b \\`t\\` 5%%/mp""#
        );
    }

    #[test]
    fn non_ascii_passes_through() {
        assert_eq!(exec("/home/zoë/bin/mailpulse"), "/home/zoë/bin/mailpulse");
        assert_eq!(exec("/home/zoë/my bin/mp"), r#""/home/zoë/my bin/mp""#);
    }

    #[test]
    fn unrepresentable_paths_are_refused() {
        for bad in [
            "relative/mailpulse",
            "/a=b/mailpulse",
            "/a\nb/mailpulse",
            "/a\tb/mailpulse",
            "/a\rb",
        ] {
            let e = desktop_exec_value(Path::new(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let path = Path::new(std::ffi::OsStr::from_bytes(b"/opt/\xff/mailpulse"));
            let e = desktop_exec_value(path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn desktop_entry_has_the_required_keys() {
        let entry = desktop_entry(Path::new("/usr/bin/mailpulse")).unwrap();
        assert!(entry.starts_with("[Desktop Entry]\n"));
        for line in [
            "Type=Application",
            "Name=mailpulse",
            "Exec=/usr/bin/mailpulse",
            "Icon=mailpulse",
            "Terminal=false",
            "X-GNOME-Autostart-enabled=true",
        ] {
            assert!(entry.lines().any(|l| l == line), "missing {line}:\n{entry}");
        }
        assert!(desktop_entry_enabled(&entry));
    }

    #[test]
    fn switched_off_entries_are_not_enabled() {
        let base = desktop_entry(Path::new("/usr/bin/mailpulse")).unwrap();
        assert!(!desktop_entry_enabled(&format!("{base}Hidden=true\n")));
        assert!(!desktop_entry_enabled(&base.replace(
            "X-GNOME-Autostart-enabled=true",
            "X-GNOME-Autostart-enabled=false"
        )));
        // Keys of other groups do not count.
        assert!(desktop_entry_enabled(&format!(
            "{base}[Desktop Action x]\nHidden=true\n"
        )));
    }

    #[test]
    fn plist_escapes_the_path() {
        let plist = launch_agent_plist(Path::new("/Apps/R&D <x> \"q\" 'a'/mailpulse")).unwrap();
        assert!(
            plist.contains(
                "<string>/Apps/R&amp;D &lt;x&gt; &quot;q&quot; &apos;a&apos;/mailpulse</string>"
            ),
            "{plist}"
        );
        assert!(plist.contains("<key>RunAtLoad</key>\n\t<true/>"));
        assert!(plist.contains("<string>org.mailpulse.mailpulse</string>"));
        assert!(launch_agent_plist(Path::new("rel/mailpulse")).is_err());
    }

    #[test]
    fn run_value_is_quoted() {
        #[cfg(windows)]
        let exe = r"C:\Program Files\mailpulse\mailpulse.exe";
        #[cfg(not(windows))]
        let exe = "/Program Files/mailpulse/mailpulse.exe";
        let line = run_command_line(Path::new(exe)).unwrap();
        assert_eq!(line, std::ffi::OsString::from(format!("\"{exe}\"")));
        assert!(run_command_line(Path::new("mailpulse.exe")).is_err());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("f.desktop");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.desktop")]);
        remove_if_exists(&path).unwrap();
        remove_if_exists(&path).unwrap();
        assert!(!path.exists());
    }
}
