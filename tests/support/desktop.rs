//! A real, private desktop for tests: Xvfb on a free display, a private D-Bus session bus,
//! dunst as the notification daemon (its `-print` output shows every toast), and a
//! StatusNotifierWatcher (tests/desktop/sni_watcher.py) so the tray item registers as on a real
//! panel. Every process is stopped by PID when the value is dropped, also when a test fails.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub struct Desktop {
    pub dir: tempfile::TempDir,
    pub display: String,
    pub bus: String,
    children: Vec<(String, Child)>,
    /// Xvfb's stdout; kept open so a late write cannot kill it with SIGPIPE.
    _xvfb_out: std::io::PipeReader,
}

/// One notification as dunst printed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    pub id: u32,
    pub summary: String,
    pub body: String,
    pub category: String,
    /// The application icon (a path or a theme name).
    pub icon: String,
    /// What dunst hands to Pango (its `format` filled in: the summary escaped by dunst, the
    /// body as markup), i.e. what is drawn.
    pub formatted: String,
    /// Links dunst found in the body's markup (it offers them to open).
    pub links: Vec<String>,
}

/// Writes a script for the settings page (pass its path as `MAILPULSE_SETTINGS_SCRIPT`):
/// `body` runs 0.5 s after the page has loaded, with `$(id)`, `type(id, value)` (sets a field
/// the way a user's change does) and `when(condition, then)` (checks every 100 ms).
pub fn settings_script(path: &Path, body: &str) {
    fs::write(
        path,
        format!(
            "(() => {{\n\
             const $ = (id) => document.getElementById(id);\n\
             const type = (id, v) => {{ const f = $(id); f.value = v; f.dispatchEvent(new Event(\"change\")); }};\n\
             const when = (cond, then) => {{ const t = setInterval(() => {{ if (cond()) {{ clearInterval(t); then(); }} }}, 100); }};\n\
             setTimeout(() => {{\n{body}\n}}, 500);\n\
             }})();\n"
        ),
    )
    .unwrap();
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within {limit:?}");
}

fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found || Path::new(tool).is_file(),
        "{tool} is missing: install the Debian package {package} (make test does)"
    );
}

impl Desktop {
    pub fn start() -> Desktop {
        for (tool, pkg) in [
            ("Xvfb", "xvfb"),
            ("dbus-daemon", "dbus-daemon"),
            ("dunst", "dunst"),
            ("gdbus", "libglib2.0-bin"),
            ("/usr/bin/python3", "python3-gi"),
            ("import", "imagemagick"),
            ("xdotool", "xdotool"),
        ] {
            require(tool, pkg);
        }
        let dir = tempfile::tempdir().unwrap();
        let mut children = Vec::new();

        // Xvfb picks a free display itself (-displayfd: atomic against other servers and other
        // tests, and it replaces stale lock files) and writes its number to our pipe.
        let (pipe, writer) = std::io::pipe().expect("pipe");
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(writer)
            .stderr(fs::File::create(dir.path().join("xvfb.log")).unwrap())
            .spawn()
            .expect("start Xvfb");
        let mut number = String::new();
        // Blocks until Xvfb listens (it writes the number then) or exits (end of file).
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&pipe), &mut number);
        let number = number.trim().to_owned();
        if number.is_empty() || xvfb.try_wait().unwrap().is_some() {
            let _ = xvfb.kill();
            let _ = xvfb.wait();
            panic!(
                "Xvfb did not start: {}",
                fs::read_to_string(dir.path().join("xvfb.log")).unwrap_or_default()
            );
        }
        children.push(("Xvfb".to_string(), xvfb));
        let display = format!(":{number}");

        // A private session bus that starts nothing by itself.
        let bus_path = dir.path().join("bus");
        fs::create_dir_all(dir.path().join("services")).unwrap();
        fs::write(
            dir.path().join("bus.conf"),
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={}</listen><servicedir>{}</servicedir>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>"#,
                bus_path.display(),
                dir.path().join("services").display()
            ),
        )
        .unwrap();
        let bus_child = Command::new("dbus-daemon")
            .arg(format!(
                "--config-file={}",
                dir.path().join("bus.conf").display()
            ))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("bus.log")).unwrap())
            .spawn()
            .expect("start dbus-daemon");
        children.push(("dbus-daemon".to_string(), bus_child));
        wait_for("the session bus socket", Duration::from_secs(10), || {
            bus_path.exists()
        });
        let bus = format!("unix:path={}", bus_path.display());

        let mut desktop = Desktop {
            dir,
            display,
            bus,
            children,
            _xvfb_out: pipe,
        };
        let watcher = desktop
            .command("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/desktop/sni_watcher.py"))
            .stdout(fs::File::create(desktop.path("watcher.log")).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the StatusNotifierWatcher");
        desktop.children.push(("sni_watcher".to_string(), watcher));
        // A left click on a notification invokes its default action, as on most desktops.
        fs::write(
            desktop.path("dunstrc"),
            "[global]\n    format = \"%s\\n%b\"\n    mouse_left_click = do_action, close_current\n",
        )
        .unwrap();
        let dunst = desktop
            .command("dunst")
            .arg("-config")
            .arg(desktop.path("dunstrc"))
            .arg("-print")
            .stdout(fs::File::create(desktop.path("dunst.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dunst");
        desktop.children.push(("dunst".to_string(), dunst));
        let log = desktop.path("watcher.log");
        wait_for("the StatusNotifierWatcher", Duration::from_secs(15), || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("WATCHER READY")
        });
        wait_for("dunst on the bus", Duration::from_secs(15), || {
            desktop
                .command("gdbus")
                .args([
                    "call",
                    "--session",
                    "--dest",
                    "org.freedesktop.Notifications",
                ])
                .args(["--object-path", "/org/freedesktop/Notifications"])
                .args([
                    "--method",
                    "org.freedesktop.Notifications.GetServerInformation",
                ])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        desktop
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command inside this desktop (display, bus).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("NO_AT_BRIDGE", "1")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        c
    }

    /// Put these variables into a command for a program under test.
    pub fn apply(&self, c: &mut Command) {
        c.env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("NO_AT_BRIDGE", "1")
            .env_remove("WAYLAND_DISPLAY");
    }

    pub fn gdbus(&self, dest: &str, path: &str, method: &str, args: &[&str]) -> String {
        let out = self
            .command("gdbus")
            .args([
                "call",
                "--session",
                "--timeout",
                "10",
                "--dest",
                dest,
                "--object-path",
                path,
                "--method",
                method,
                "--",
            ])
            .args(args)
            .output()
            .expect("gdbus");
        assert!(
            out.status.success(),
            "gdbus {method} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Tray items the watcher has seen registering (and not yet leaving), as bus names.
    pub fn tray_items(&self) -> Vec<String> {
        let log = fs::read_to_string(self.path("watcher.log")).unwrap_or_default();
        let mut items: Vec<String> = Vec::new();
        for line in log.lines() {
            if let Some(item) = line.strip_prefix("REGISTERED ") {
                items.push(item.split('/').next().unwrap().to_owned());
            } else if let Some(item) = line.strip_prefix("UNREGISTERED ") {
                let name = item.split('/').next().unwrap();
                items.retain(|i| i != name);
            }
        }
        items
    }

    pub fn wait_for_tray_item(&self, limit: Duration) -> String {
        let mut found = None;
        wait_for("a tray item registering", limit, || {
            found = self.tray_items().pop();
            found.is_some()
        });
        found.unwrap()
    }

    /// The dbusmenu layout of a tray item: (id, label, toggle-state) per entry.
    pub fn menu(&self, item: &str) -> Vec<(u32, String, Option<i32>)> {
        let layout = self.gdbus(
            item,
            "/MenuBar",
            "com.canonical.dbusmenu.GetLayout",
            &["0", "-1", "[]"],
        );
        let mut entries = Vec::new();
        for part in layout.split("<(").skip(1) {
            let id: u32 = part.split(',').next().unwrap().trim().parse().unwrap_or(0);
            let label = part
                .split("'label': <'")
                .nth(1)
                .map(|s| s.split("'>").next().unwrap().to_owned());
            let toggle = part
                .split("'toggle-state': <")
                .nth(1)
                .and_then(|s| s.split('>').next().unwrap().parse().ok());
            if let Some(label) = label {
                entries.push((id, label, toggle));
            }
        }
        entries
    }

    /// Click a menu entry the way a panel does (dbusmenu `Event id "clicked"`).
    pub fn click_menu(&self, item: &str, label: &str) {
        let menu = self.menu(item);
        let (id, _, _) = menu
            .iter()
            .find(|(_, l, _)| l == label)
            .unwrap_or_else(|| panic!("no menu entry {label:?} in {menu:?}"));
        self.gdbus(
            item,
            "/MenuBar",
            "com.canonical.dbusmenu.Event",
            &[&id.to_string(), "clicked", "<0>", "0"],
        );
    }

    /// Click an entry that ends the program (it may exit before it answers the click).
    pub fn click_menu_to_quit(&self, item: &str, label: &str) {
        let menu = self.menu(item);
        let (id, _, _) = menu
            .iter()
            .find(|(_, l, _)| l == label)
            .expect("menu entry");
        let out = self
            .command("gdbus")
            .args([
                "call",
                "--session",
                "--timeout",
                "10",
                "--dest",
                item,
                "--object-path",
                "/MenuBar",
            ])
            .args([
                "--method",
                "com.canonical.dbusmenu.Event",
                "--",
                &id.to_string(),
                "clicked",
                "<0>",
                "0",
            ])
            .output()
            .expect("gdbus");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || err.contains("NoReply"), "{err}");
    }

    /// A left click on the tray icon (`StatusNotifierItem.Activate`).
    pub fn activate(&self, item: &str) {
        self.gdbus(
            item,
            "/StatusNotifierItem",
            "org.kde.StatusNotifierItem.Activate",
            &["0", "0"],
        );
    }

    pub fn tray_property(&self, item: &str, property: &str) -> String {
        self.gdbus(
            item,
            "/StatusNotifierItem",
            "org.freedesktop.DBus.Properties.Get",
            &["org.kde.StatusNotifierItem", property],
        )
    }

    /// Every notification dunst has received so far (updates of one id: the latest).
    pub fn toasts(&self) -> Vec<Toast> {
        let log = fs::read_to_string(self.path("dunst.log")).unwrap_or_default();
        let mut out: Vec<Toast> = Vec::new();
        for block in log.split("\n}").filter(|b| b.contains("summary:")) {
            // Values may span lines (a body with newlines): up to the next "\t<key>:" line.
            let field = |name: &str| {
                let start = format!("\t{name}: ");
                let Some(at) = block.find(&start) else {
                    return String::new();
                };
                let rest = &block[at + start.len()..];
                let end = rest.find("\n\t").unwrap_or(rest.len());
                rest[..end].trim_matches('\'').to_owned()
            };
            let toast = Toast {
                id: field("id").parse().unwrap_or(0),
                summary: field("summary"),
                body: field("body"),
                category: field("category"),
                icon: field("icon"),
                formatted: field("formatted"),
                links: block
                    .lines()
                    .filter_map(|l| l.strip_prefix("\t\t["))
                    .map(str::to_owned)
                    .collect(),
            };
            if let Some(old) = out.iter_mut().find(|t| t.id == toast.id) {
                *old = toast;
            } else {
                out.push(toast);
            }
        }
        out
    }

    /// Wait until a toast matches; returns it.
    pub fn wait_for_toast(&self, limit: Duration, pred: impl Fn(&Toast) -> bool) -> Toast {
        let mut found = None;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(t) = self.toasts().into_iter().find(|t| pred(t)) {
                found = Some(t);
                break;
            }
            sleep(Duration::from_millis(100));
        }
        found.unwrap_or_else(|| {
            panic!(
                "no matching toast within {limit:?}; toasts: {:#?}",
                self.toasts()
            )
        })
    }

    /// Click the middle of dunst's notification window with the mouse (xdotool), like a user.
    /// Returns false when no notification window is visible (yet).
    pub fn click_toast(&self) -> bool {
        let search = self
            .command("xdotool")
            .args(["search", "--onlyvisible", "--class", "dunst"])
            .output()
            .expect("xdotool");
        let window = String::from_utf8_lossy(&search.stdout)
            .lines()
            .next()
            .map(str::to_owned);
        let Some(window) = window else {
            return false;
        };
        let geometry = self
            .command("xdotool")
            .args(["getwindowgeometry", "--shell", &window])
            .output()
            .expect("xdotool");
        let geometry = String::from_utf8_lossy(&geometry.stdout).into_owned();
        let value = |key: &str| -> i64 {
            geometry
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {geometry}"))
        };
        let (x, y) = (
            value("X") + value("WIDTH") / 2,
            value("Y") + value("HEIGHT") / 2,
        );
        let ok = self
            .command("xdotool")
            .args(["mousemove", &x.to_string(), &y.to_string(), "click", "1"])
            .status()
            .expect("xdotool")
            .success();
        assert!(ok, "xdotool click failed");
        true
    }

    /// How many notifications are on screen now.
    pub fn displayed(&self) -> usize {
        let out = self
            .command("dunstctl")
            .args(["count", "displayed"])
            .output()
            .expect("dunstctl");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(usize::MAX)
    }

    /// A screenshot of the whole screen.
    pub fn screenshot(&self, to: &Path) {
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).unwrap();
        }
        let ok = self
            .command("import")
            .args(["-window", "root"])
            .arg(to)
            .status()
            .expect("import")
            .success();
        assert!(ok, "screenshot failed");
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        // SIGTERM first, so Xvfb removes its lock file and socket; SIGKILL whatever lingers.
        for (_, child) in self.children.iter_mut().rev() {
            let _ = Command::new("kill")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
