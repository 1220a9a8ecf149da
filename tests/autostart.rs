//! XDG autostart on Linux, against the real tools: the entry is checked by
//! `desktop-file-validate` (Debian package `desktop-file-utils`) and launched by GLib's
//! `gio launch` (Debian package `libglib2.0-bin`), the same desktop-entry code that
//! gnome-session uses, which must run exactly our executable. Missing tools fail the test.
//!
//! The environment variables are process-global, so the whole scenario that depends on them is
//! one `#[test]`.
#![cfg(target_os = "linux")]

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailpulse::testing::autostart;

/// A directory name with every character that the Exec quoting has to deal with, except `%`
/// (see [`PERCENT_DIR`]).
const TRICKY_DIR: &str = r#"My Apps/q"x" $HOME `b` back\slash ~ & (p) #;*?<>|'"#;

/// `%` is written `%%` per the specification, but GLib (2.74 at least) checks that the program
/// exists *before* expanding `%%`, so it refuses to load such an entry: this one is only
/// validated and parsed, not launched.
const PERCENT_DIR: &str = "100% sure/a b";

#[test]
fn enable_validate_launch_and_disable() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let config_home = tmp.path().join("config");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // SAFETY: the other test of this binary does not touch the environment, and this one starts
    // no thread of its own.
    unsafe {
        std::env::set_var("XDG_CONFIG_HOME", &config_home);
        std::env::set_var("HOME", &home);
    }

    let expected = config_home.join("autostart").join("mailpulse.desktop");
    assert_eq!(autostart::location(), Some(expected.clone()));
    assert!(!autostart::is_enabled());
    autostart::disable().expect("disable when nothing is enabled");

    // An executable that records how it was started.
    let exe_dir = tmp.path().join(TRICKY_DIR);
    std::fs::create_dir_all(&exe_dir).unwrap();
    let exe = exe_dir.join("mail pulse");
    std::fs::write(
        &exe,
        "#!/bin/sh\nprintf '%s' \"$0\" > \"$MAILPULSE_TEST_MARKER\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Enable, twice (the second replaces the first).
    assert_eq!(
        autostart::enable(Path::new("/usr/bin/old")).unwrap(),
        expected
    );
    let written = autostart::enable(&exe).expect("enable");
    assert_eq!(written, expected);
    assert!(expected.is_file());
    assert!(autostart::is_enabled());
    let names: Vec<OsString> = std::fs::read_dir(expected.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mailpulse.desktop"], "temporary files left behind");

    let text = check_entry(&expected, &exe);

    // GLib launches exactly our executable.
    let marker = tmp.path().join("marker");
    let out = run(
        Command::new("gio")
            .arg("launch")
            .arg(&expected)
            .env("MAILPULSE_TEST_MARKER", &marker)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .current_dir(tmp.path()),
        "libglib2.0-bin",
    );
    assert!(
        out.status.success(),
        "gio launch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = wait_for_file(&marker, Duration::from_secs(10));
    assert_eq!(
        PathBuf::from(started),
        exe,
        "gio launch started another path"
    );

    // A '%' in the path.
    let percent_exe = tmp.path().join(PERCENT_DIR).join("mailpulse");
    autostart::enable(&percent_exe).expect("enable with %");
    let percent_text = check_entry(&expected, &percent_exe);
    assert!(percent_text.contains("100%% sure"), "{percent_text}");
    autostart::enable(&exe).expect("enable");

    // Switched off by the user (GNOME Tweaks writes this) counts as not enabled.
    std::fs::write(
        &expected,
        text.replace("Autostart-enabled=true", "Autostart-enabled=false"),
    )
    .unwrap();
    assert!(!autostart::is_enabled());

    // Disable, twice.
    autostart::disable().expect("disable");
    assert!(!expected.exists());
    assert!(!autostart::is_enabled());
    autostart::disable().expect("disable again");

    // Fallback to $HOME/.config when XDG_CONFIG_HOME is unset, empty or relative.
    let fallback = home.join(".config/autostart/mailpulse.desktop");
    for value in [None, Some(""), Some("relative/config")] {
        // SAFETY: as above.
        unsafe {
            match value {
                None => std::env::remove_var("XDG_CONFIG_HOME"),
                Some(v) => std::env::set_var("XDG_CONFIG_HOME", v),
            }
        }
        assert_eq!(autostart::location(), Some(fallback.clone()), "{value:?}");
    }
    assert_eq!(autostart::enable(&exe).unwrap(), fallback);
    assert!(fallback.is_file() && autostart::is_enabled());
    autostart::disable().unwrap();
    assert!(!fallback.exists() && !autostart::is_enabled());

    // A relative executable path is refused, and nothing is written.
    let e = autostart::enable(Path::new("mailpulse")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!fallback.exists());
}

/// Check the desktop entry at `path` written for `exe`, and return its text: the expected keys,
/// no error nor warning from `desktop-file-validate`, and an `Exec` line that parses back to
/// exactly `exe`.
fn check_entry(path: &Path, exe: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    for line in [
        "[Desktop Entry]",
        "Type=Application",
        "Name=mailpulse",
        "Icon=mailpulse",
        "Terminal=false",
        "X-GNOME-Autostart-enabled=true",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("Comment=")), "{text}");

    let out = run(
        Command::new("desktop-file-validate").arg(path),
        "desktop-file-utils",
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !report.contains("error:") && !report.contains("warning:"),
        "desktop-file-validate rejects the entry ({}):\n{report}\n{text}",
        out.status
    );

    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("Exec="))
        .expect("an Exec line");
    let argv = parse_exec(exec).unwrap_or_else(|e| panic!("Exec={exec}: {e}"));
    assert_eq!(argv, [exe.to_str().unwrap()], "Exec={exec}");
    text
}

/// Run a tool to completion (bounded), failing the test with the Debian package to install
/// when it is missing.
fn run(command: &mut Command, package: &str) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install the Debian package {package}")
        });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The contents of `path` once it is non-empty, waiting at most `timeout`.
fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    for _ in 0..1000 {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} was not written within {timeout:?}", path.display());
}

/// The argument vector of an `Exec` value as written in a desktop file, parsed strictly per
/// the Desktop Entry Specification ("Recognized desktop entry keys" string escapes, then "The
/// Exec key" quoting, then the `%%` field code). Any other field code is an error, since
/// mailpulse writes none.
fn parse_exec(raw: &str) -> Result<Vec<String>, String> {
    // 1. String-value escapes: \s \n \t \r \\.
    let mut value = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => value.push(' '),
            Some('n') => value.push('\n'),
            Some('t') => value.push('\t'),
            Some('r') => value.push('\r'),
            Some('\\') => value.push('\\'),
            // Not a string escape: left for the quoting rule (e.g. `\"` inside quotes).
            Some(other) => {
                value.push('\\');
                value.push(other);
            }
            None => return Err("trailing backslash".into()),
        }
    }

    // 2. Split into arguments, honouring double quotes.
    const RESERVED: &str = " \t\n\"'\\><~|&;$*?#()`";
    let mut args = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut arg = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quote".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '`' | '$' | '\\')) => arg.push(c),
                        other => return Err(format!("bad escape \\{other:?} in quotes")),
                    },
                    Some(c @ ('`' | '$')) => return Err(format!("unescaped {c} in quotes")),
                    Some(c) => arg.push(c),
                }
            }
            if chars.peek().is_some_and(|&c| c != ' ') {
                return Err("text right after a closing quote".into());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if RESERVED.contains(c) {
                    return Err(format!("reserved character {c:?} outside quotes"));
                }
                arg.push(c);
                chars.next();
            }
        }
        args.push(arg);
    }

    // 3. Field codes.
    args.into_iter()
        .map(|arg| {
            let mut out = String::new();
            let mut chars = arg.chars();
            while let Some(c) = chars.next() {
                if c == '%' {
                    match chars.next() {
                        Some('%') => out.push('%'),
                        other => return Err(format!("unexpected field code %{other:?}")),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

#[test]
fn exec_parser_follows_the_spec_examples() {
    // The specification's own examples of a literal backslash and dollar sign.
    assert_eq!(parse_exec(r#""/a\\\\b""#).unwrap(), [r"/a\b"]);
    assert_eq!(parse_exec(r#""/a\\$b""#).unwrap(), ["/a$b"]);
    assert_eq!(
        parse_exec(r#"/bin/x "a b" 100%%"#).unwrap(),
        ["/bin/x", "a b", "100%"]
    );
    assert!(parse_exec("/bin/x %u").is_err());
    assert!(parse_exec("/a b$").is_err());
    assert!(parse_exec(r#""/a$b""#).is_err());
}
