//! The login entry each OS reads, as text: the freedesktop autostart desktop entry (with the
//! `Exec` quoting of the Desktop Entry Specification), the launchd property list, the `Run` key's
//! command line. Pure functions of the program's path, so every format is tested on every host;
//! each OS room writes its own.
//!
//! The `Exec` key follows the "Exec key" section of the Desktop Entry Specification exactly: the
//! path is put in double quotes when it contains a reserved character, `"` `` ` `` `$` `\` are
//! backslash-escaped inside the quotes, `%` is doubled, and then the string-value escaping of the
//! file format doubles every backslash once more (so a literal `\` is written `\\\\`, a literal
//! `$` is written `\\$`). Paths that the format cannot carry (not UTF-8, control characters, `=`,
//! relative) are refused with [`io::ErrorKind::InvalidInput`].
// Each OS uses one of the formats; all three are compiled and tested everywhere.
#![allow(dead_code)]

use std::io;
use std::path::Path;

/// The launchd label of the macOS login agent (also its file name, plus `.plist`).
pub const LAUNCH_AGENT_LABEL: &str = super::BUNDLE_ID;
/// The name of the freedesktop autostart file.
pub const DESKTOP_FILE_NAME: &str = "mailpulse.desktop";
/// The name of the value under the Windows `Run` key.
pub const RUN_VALUE_NAME: &str = "mailpulse";
/// The `Run` key, under `HKEY_CURRENT_USER`.
pub const RUN_KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Run";

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The characters that force quoting of an `Exec` argument (Desktop Entry Specification,
/// "The Exec key").
const EXEC_RESERVED: &[char] = &[
    ' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')',
    '`',
];

/// The value of the `Exec` key that runs `exe` with no argument, as written in the file.
pub(crate) fn desktop_exec_value(exe: &Path) -> io::Result<String> {
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
pub(crate) fn desktop_entry(exe: &Path) -> io::Result<String> {
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
pub(crate) fn desktop_entry_enabled(text: &str) -> bool {
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

/// `s` with the five XML special characters escaped (quick-xml's, as the EWS code uses).
pub(crate) fn xml_escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The launchd property list that runs `exe` at login.
pub(crate) fn launch_agent_plist(exe: &Path) -> io::Result<String> {
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

/// The command line stored under the `Run` key: the path in double quotes (Windows paths
/// cannot contain `"`, so no escaping is needed).
pub(crate) fn run_command_line(exe: &Path) -> io::Result<std::ffi::OsString> {
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
}
