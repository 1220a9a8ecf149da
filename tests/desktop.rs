//! The desktop agent on a real (headless) desktop: Xvfb, a private D-Bus session bus, dunst as
//! the notification daemon and a StatusNotifierWatcher, against a private Dovecot. The tray is
//! driven the way a panel drives it: dbusmenu `Event … clicked` and `StatusNotifierItem.Activate`.
#![cfg(target_os = "linux")]

#[path = "support/netns.rs"]
mod netns;
#[path = "support/proxies.rs"]
mod proxies;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::agent::{Home, secs};
use support::desktop::{Desktop, settings_script};
use support::dovecot::{Dovecot, DovecotOptions};
use support::relay::Relay;

const USER: &str = "alice";

/// The tray agent (`mailpulse` without a subcommand), stopped by PID at the end together with
/// any settings window it opened.
struct Tray {
    child: Child,
    config: PathBuf,
}

/// PIDs of processes whose command line contains `needle` (settings windows of one test).
fn pids_with_arg(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

fn settings_windows(config: &Path) -> Vec<u32> {
    pids_with_arg(config)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split('\0').any(|a| a == "settings"))
        })
        .collect()
}

impl Tray {
    fn start(home: &Home, desktop: &Desktop) -> Tray {
        Tray::start_with(home, desktop, &[])
    }

    fn start_with(home: &Home, desktop: &Desktop, env: &[(&str, &Path)]) -> Tray {
        let mut cmd = home.command(&[]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        desktop.apply(&mut cmd);
        let run = home.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        cmd.env("XDG_RUNTIME_DIR", &run)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.path().join("tray.log")).unwrap());
        Tray {
            child: cmd.spawn().expect("start the tray"),
            config: home.config_path(),
        }
    }

    fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Tray {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        if !self.exited_within(Duration::from_secs(10)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in settings_windows(&self.config) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn config(
    home: &Home,
    d: &Dovecot,
    port: u16,
    security: &str,
    extra_general: &str,
    extra_account: &str,
) -> String {
    let pw = home.password_file("secret-pw");
    format!(
        "{extra_general}\n[[accounts]]\nname = \"work\"\nhost = \"localhost\"\nport = {port}\nsecurity = \"{security}\"\n\
         username = \"{USER}\"\npassword_command = \"cat '{}'\"\nca_file = \"{}\"\n{extra_account}\n",
        pw.display(),
        d.ca_pem().display()
    )
}

/// Children of `pid` that ended and were not waited for (zombies whose parent it is).
fn zombie_children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
                fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str())
            })
        })
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within {limit:?}");
}

/// Wait for a toast; on failure say what was shown and what the tray logged.
fn expect_toast(
    desktop: &Desktop,
    home: &Home,
    limit: Duration,
    pred: impl Fn(&support::desktop::Toast) -> bool,
) -> support::desktop::Toast {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(t) = desktop.toasts().into_iter().find(|t| pred(t)) {
            return t;
        }
        sleep(Duration::from_millis(100));
    }
    panic!(
        "no matching toast within {limit:?}; toasts: {:#?}\ntray log:\n{}",
        desktop.toasts(),
        tray_log(home)
    );
}

/// There is no file manager or browser on this headless desktop: the first `xdg-open` on the
/// returned PATH records what it was given (and whether it saw GDK_GL) in the returned log.
fn fake_opener(home: &Home) -> (String, PathBuf) {
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = home.path().join("xdg-open.log");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\necho \"$1\" GDK_GL=${{GDK_GL-unset}} >> '{}'\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, log)
}

fn tray_log(home: &Home) -> String {
    std::fs::read_to_string(home.path().join("tray.log")).unwrap_or_default()
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts")
}

#[test]
fn tray_menu_toasts_keepalive_switch_and_click() {
    let d = Dovecot::start(DovecotOptions::default());
    let desktop = Desktop::start();
    let home = Home::new();
    let opened = home.path().join("client-opened");
    let hooked = home.path().join("hooked");
    home.write_config(&config(
        &home,
        &d,
        d.imaps_port(),
        "tls",
        "[keepalive]\ninterval_secs = 30\ncheck_on_wake = false\n",
        &format!(
            "open_command = \"echo opened GDK_GL=${{GDK_GL-unset}} >> '{}'\"\n\
             on_new_mail = \"echo \\\"$MAILPULSE_SUBJECT\\\" >> '{}'\"",
            opened.display(),
            hooked.display()
        ),
    ));
    // "Open log" hands the log folder to the desktop's opener (xdg-open).
    let (path, opener_log) = fake_opener(&home);
    // Every settings window this tray opens shows the version and, as a user would, clicks
    // the project link in About.
    let script = home.path().join("about.js");
    std::fs::write(
        &script,
        format!(
            r#"setTimeout(() => {{
                 if (document.getElementById("version").textContent === "{}")
                   document.getElementById("homepage").click();
               }}, 500);"#,
            env!("CARGO_PKG_VERSION")
        ),
    )
    .unwrap();
    let mut tray = Tray::start_with(
        &home,
        &desktop,
        &[
            ("PATH", Path::new(&path)),
            ("MAILPULSE_SETTINGS_SCRIPT", &script),
        ],
    );

    // The item registers with the watcher, with its menu.
    let item = desktop.wait_for_tray_item(secs(30));
    let labels: Vec<String> = desktop.menu(&item).into_iter().map(|(_, l, _)| l).collect();
    assert_eq!(
        labels,
        [
            "Keep-alive",
            "Check now",
            "Settings…",
            "Open log",
            "About mailpulse",
            "Quit"
        ]
    );
    assert_eq!(
        desktop.menu(&item)[0].2,
        Some(1),
        "keep-alive starts checked"
    );
    wait_until("the tooltip to say connected", secs(30), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("work: connected")
    });
    // Start at login was set up with the first account.
    let autostart = home.path().join("config/autostart/mailpulse.desktop");
    assert!(autostart.is_file(), "no {}", autostart.display());

    // A delivered mail → one toast with its sender and subject.
    d.deliver(USER, "Bob <bob@example.org>", "lunch?", "at noon");
    let toast = desktop.wait_for_toast(secs(30), |t| t.body == "lunch?");
    assert_eq!(toast.summary, "Bob <bob@example.org>");
    assert_eq!(toast.category, "email.arrived");
    assert!(
        toast.icon.ends_with("mailpulse.png") && Path::new(&toast.icon).is_file(),
        "the app icon: {toast:?}"
    );
    sleep(secs(1));
    assert_eq!(
        desktop
            .toasts()
            .iter()
            .filter(|t| t.body == "lunch?")
            .count(),
        1
    );
    assert!(
        desktop
            .tray_property(&item, "ToolTip")
            .contains("1 new message")
    );
    // Clicking the toast opens the mail client (and counts the mail as seen).
    // (Clicked again if the first click landed while the window was still being mapped.)
    for _ in 0..3 {
        sleep(Duration::from_millis(500));
        if !desktop.click_toast() {
            continue;
        }
        let deadline = Instant::now() + secs(5);
        while !opened.exists() && Instant::now() < deadline {
            sleep(Duration::from_millis(100));
        }
        if opened.exists() {
            break;
        }
    }
    assert!(
        opened.exists(),
        "the toast click did not open the mail client"
    );
    // The tray runs `on_new_mail` as `watch` does (it used to ignore it).
    wait_until("the on_new_mail hook to run", secs(10), || {
        std::fs::read_to_string(&hooked).is_ok_and(|t| t == "lunch?\n")
    });
    // The mail client's shell was reaped (it used to stay a zombie as long as the tray ran).
    wait_until("no zombie child of the tray", secs(10), || {
        zombie_children(tray.child.id()).is_empty()
    });
    wait_until("the unread count to clear", secs(10), || {
        !desktop
            .tray_property(&item, "ToolTip")
            .contains("new message")
    });

    // A burst → one coalesced toast (after the 2 s window of the first mail has passed).
    sleep(secs(3));
    for i in 1..=5 {
        d.deliver(USER, "List <list@example.org>", &format!("digest {i}"), "x");
    }
    let burst = expect_toast(&desktop, &home, secs(30), |t| t.summary == "5 new messages");
    assert!(burst.body.contains("List — digest 1"), "{burst:?}");
    let individual = desktop
        .toasts()
        .into_iter()
        .filter(|t| t.body.starts_with("digest"))
        .count();
    assert!(
        individual <= 3,
        "at most three before coalescing: {:#?}",
        desktop.toasts()
    );

    // "Open log" opens the log folder.
    desktop.click_menu(&item, "Open log");
    wait_until("the log folder to be opened", secs(10), || {
        std::fs::read_to_string(&opener_log)
            .is_ok_and(|t| t.trim() == format!("{} GDK_GL=unset", home.log_dir().display()))
    });
    // The tray switched GDK's GL off for itself (no GL driver mapped, tens of MB saved), and
    // not for the programs it starts (checked above and with the mail client below).
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", tray.child.id())).unwrap();
    assert!(
        !maps.contains("_dri.so") && !maps.contains("libLLVM"),
        "a GL driver is loaded"
    );
    assert!(home.log_dir().is_dir());

    // "Check now" initiates a query at once.
    let before = d.keepalive_queries(USER);
    desktop.click_menu(&item, "Check now");
    wait_until("the check-now query at the server", secs(10), || {
        d.keepalive_queries(USER) > before
    });

    // About opens the settings window at its About section.
    desktop.click_menu(&item, "About mailpulse");
    let mut about = Vec::new();
    wait_until("the About window", secs(10), || {
        about = settings_windows(&home.config_path());
        !about.is_empty()
    });
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", about[0])).unwrap();
    assert!(cmdline.contains("--page\0about"), "{cmdline:?}");
    // It showed this version, and its project link opens in the browser.
    wait_until("the project link to be opened", secs(20), || {
        std::fs::read_to_string(&opener_log).is_ok_and(|t| {
            t.lines()
                .any(|l| l == format!("{} GDK_GL=unset", env!("CARGO_PKG_REPOSITORY")))
        })
    });
    for pid in about {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
    wait_until("the About window to close", secs(10), || {
        settings_windows(&home.config_path()).is_empty()
    });
    sleep(secs(1));

    // A second start asks this one to open Settings and exits.
    let mut second = home.command(&[]);
    desktop.apply(&mut second);
    let out = second
        .env("XDG_RUNTIME_DIR", home.path().join("run"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    assert_eq!(desktop.tray_items().len(), 1, "still one tray item");
    wait_until("the first instance to open Settings", secs(10), || {
        !settings_windows(&home.config_path()).is_empty()
    });

    // Keep-alive off from the menu: saved, and no more queries at the server.
    desktop.click_menu(&item, "Keep-alive");
    wait_until("the switch to be saved", secs(10), || {
        std::fs::read_to_string(home.config_path())
            .unwrap()
            .contains("enabled = false")
    });
    assert_eq!(desktop.menu(&item)[0].2, Some(0));
    sleep(secs(2));
    let off = d.keepalive_queries(USER);
    sleep(secs(35));
    assert_eq!(
        d.keepalive_queries(USER),
        off,
        "keep-alive queries continued after switching off"
    );
    assert!(
        desktop
            .tray_property(&item, "ToolTip")
            .contains("Keep-alive is off.")
    );

    // A left click opens the mail client.
    desktop.activate(&item);
    wait_until("open_command to run again", secs(10), || {
        std::fs::read_to_string(&opened)
            .unwrap_or_default()
            .lines()
            .count()
            == 2
    });
    assert!(
        std::fs::read_to_string(&opened)
            .unwrap()
            .lines()
            .all(|l| l == "opened GDK_GL=unset"),
        "the mail client gets the user's environment"
    );

    // Quit logs out and ends the process.
    desktop.click_menu_to_quit(&item, "Quit");
    assert!(tray.exited_within(secs(30)), "{}", tray_log(&home));
    assert!(
        d.imap_commands(USER)
            .iter()
            .any(|c| c.to_uppercase().ends_with("LOGOUT"))
    );
    assert!(!tray_log(&home).contains("panicked"), "{}", tray_log(&home));
}

#[test]
fn error_toast_only_after_the_grace_period_then_restored() {
    let d = Dovecot::start(DovecotOptions::default());
    let relay = Relay::start(d.imap_port());
    let desktop = Desktop::start();
    let home = Home::new();
    home.write_config(&config(
        &home,
        &d,
        relay.port(),
        "plain",
        "[notifications]\nerror_grace_secs = 5\n[desktop]\nstart_at_login = false\n",
        "",
    ));
    let _tray = Tray::start(&home, &desktop);
    let item = desktop.wait_for_tray_item(secs(30));
    wait_until("connected", secs(30), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("work: connected")
    });

    relay.refuse();
    relay.cut();
    let down = Instant::now();
    wait_until("the tooltip to show the error", secs(15), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("no connection")
    });
    while down.elapsed() < secs(3) {
        assert!(
            !desktop
                .toasts()
                .iter()
                .any(|t| t.category == "network.error"),
            "error toast before the grace period: {:#?}",
            desktop.toasts()
        );
        sleep(Duration::from_millis(200));
    }
    let error = expect_toast(&desktop, &home, secs(30), |t| t.category == "network.error");
    assert_eq!(error.summary, "work: no connection");
    assert!(down.elapsed() >= secs(5));
    sleep(secs(3));
    assert_eq!(
        desktop
            .toasts()
            .iter()
            .filter(|t| t.category == "network.error")
            .count(),
        1,
        "once per episode"
    );

    // The path is back; "Check now" skips whatever backoff is pending, as a user would click it.
    relay.forward();
    desktop.click_menu(&item, "Check now");
    let restored = expect_toast(&desktop, &home, secs(30), |t| {
        t.summary == "Connection restored"
    });
    assert_eq!(restored.category, "network.connected");
    assert!(
        !home
            .path()
            .join("config/autostart/mailpulse.desktop")
            .exists(),
        "start at login was switched off"
    );
}

/// A mail's subject is the sender's text, not the agent's: dunst renders body markup, so a
/// subject with `<b>`, `&` and `<a href>` must be drawn as typed — no bold text, no link to
/// open — and the sender (the summary, which dunst escapes itself) not escaped twice.
#[test]
fn markup_in_a_subject_shows_as_literal_text_in_the_toast() {
    let d = Dovecot::start(DovecotOptions::default());
    let desktop = Desktop::start();
    let home = Home::new();
    home.write_config(&config(
        &home,
        &d,
        d.imaps_port(),
        "tls",
        "[keepalive]\ncheck_on_wake = false\n[desktop]\nstart_at_login = false\n",
        "",
    ));
    let _tray = Tray::start(&home, &desktop);
    let item = desktop.wait_for_tray_item(secs(30));
    wait_until("connected", secs(30), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("work: connected")
    });
    let subject = r#"<b>Urgent</b> & <a href="http://evil.example/login">verify</a> 'now'"#;
    d.deliver(USER, "Bob <bob@example.org>", subject, "x");
    let toast = expect_toast(&desktop, &home, secs(30), |t| t.category == "email.arrived");
    assert!(toast.links.is_empty(), "a link in the toast: {toast:#?}");
    assert_eq!(
        toast.formatted,
        "Bob &lt;bob@example.org&gt;\n&lt;b&gt;Urgent&lt;/b&gt; &amp; &lt;a href=&quot;http://evil.example/login&quot;&gt;verify&lt;/a&gt; &apos;now&apos;",
        "what dunst draws: {toast:#?}"
    );
}

/// The settings window can save commands the agent runs (`password_command`, `on_new_mail`):
/// it must never show another page, which would get the same messages. A navigation to a local
/// file is refused and the page stays (its own script goes on and closes the window); a web link
/// opens in the desktop's browser instead; the other page's message never arrives.
#[test]
fn settings_window_stays_on_its_page_and_hands_web_links_to_the_browser() {
    let desktop = Desktop::start();
    let home = Home::new();
    let original = "[desktop]\nstart_at_login = false\n";
    home.write_config(original);
    let (path, opener_log) = fake_opener(&home);
    // Another page, as a hostile link or a redirect would bring: it asks the agent to open the
    // project page (visible in the opener's log) and to save an on_new_mail command.
    let evil = home.path().join("evil.html");
    std::fs::write(
        &evil,
        r#"<html><body>elsewhere<script>
        window.ipc.postMessage(JSON.stringify({op: "open_homepage"}));
        window.ipc.postMessage(JSON.stringify({op: "save", close: true, config: {
          desktop: {start_at_login: false},
          accounts: [{name: "x", host: "localhost", username: "u", folders: ["INBOX"],
                      password_command: "echo pw", on_new_mail: "touch PWNED"}]}}));
        </script></body></html>"#,
    )
    .unwrap();
    let script = home.path().join("navigate.js");
    settings_script(
        &script,
        &format!(
            r#"location.href = "file://{evil}";
           setTimeout(() => {{
             location.href = "x-other-app:run";
             setTimeout(() => {{
               location.href = "https://mail.example/elsewhere";
               setTimeout(() => $("cancel").click(), 1000);
             }}, 500);
           }}, 1000);"#,
            evil = evil.display()
        ),
    );
    let mut cmd = home.command(&["settings"]);
    desktop.apply(&mut cmd);
    let run = home.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let mut child = cmd
        .env("XDG_RUNTIME_DIR", &run)
        .env("PATH", &path)
        .env("MAILPULSE_SETTINGS_SCRIPT", &script)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.path().join("settings.log")).unwrap())
        .spawn()
        .expect("start mailpulse settings");
    let deadline = Instant::now() + secs(60);
    let exited = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(home.path().join("settings.log")).unwrap_or_default();
    let opened = std::fs::read_to_string(&opener_log).unwrap_or_default();
    assert!(
        !opened.contains(env!("CARGO_PKG_REPOSITORY")),
        "the other page's message was obeyed: {opened}\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(home.config_path()).unwrap(),
        original,
        "the other page saved settings\n{log}"
    );
    assert!(
        exited,
        "the page did not stay (its Cancel never came)\n{log}"
    );
    assert!(
        opened
            .lines()
            .any(|l| l.starts_with("https://mail.example/elsewhere ")),
        "the web link was not opened in the browser: {opened:?}\n{log}"
    );
    assert!(
        log.contains("refused to navigate to \"x-other-app:run\""),
        "{log}"
    );
}

#[test]
fn settings_window_opens_from_the_menu_and_saving_reaches_the_running_engine() {
    let d = Dovecot::start(DovecotOptions::default());
    let desktop = Desktop::start();
    let home = Home::new();
    home.write_config(&config(
        &home,
        &d,
        d.imaps_port(),
        "tls",
        "[keepalive]\ninterval_secs = 600\ncheck_on_wake = false\n[desktop]\nstart_at_login = false\n",
        "",
    ));
    // Drive the page as a user would: change the interval field, then press OK — after a pause
    // in which the test takes its screenshot.
    let script = home.path().join("automation.js");
    settings_script(
        &script,
        r#"$("test-account").click();
           $("test-result").scrollIntoView();
           when(() => $("test-result").classList.contains("ok"), () => {
             $("logging.enabled").checked = true;
             type("keepalive.interval_secs", "30");
             setTimeout(() => $("ok").click(), 4000);
           });"#,
    );
    let _tray = Tray::start_with(&home, &desktop, &[("MAILPULSE_SETTINGS_SCRIPT", &script)]);
    let item = desktop.wait_for_tray_item(secs(30));
    wait_until("connected", secs(30), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("work: connected")
    });
    let logins = d.login_attempts(USER);

    desktop.click_menu(&item, "Settings…");
    sleep(secs(4));
    let shot = artifacts().join("settings-window.png");
    desktop.screenshot(&shot);
    let colours = std::process::Command::new("identify")
        .args(["-format", "%k"])
        .arg(&shot)
        .output()
        .unwrap();
    let colours: u32 = String::from_utf8_lossy(&colours.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        colours > 50,
        "the screenshot looks empty ({colours} colours): {}",
        shot.display()
    );

    // "Test connection" logged in once, from the settings window.
    wait_until("the test connection", secs(30), || {
        d.login_attempts(USER) > logins
    });
    wait_until("the settings to be saved", secs(30), || {
        std::fs::read_to_string(home.config_path())
            .unwrap()
            .contains("interval_secs = 30")
    });
    eprintln!("tray log:\n{}", tray_log(&home));
    eprintln!(
        "config:\n{}",
        std::fs::read_to_string(home.config_path()).unwrap()
    );
    // The running engine picked up the new interval. The window has closed (so its Test
    // connection sends nothing more) and whatever the reload itself sent has settled; from
    // then on a keep-alive comes within ~30 s, where 600 s would have meant none.
    wait_until("the settings window to close", secs(30), || {
        settings_windows(&home.config_path()).is_empty()
    });
    sleep(secs(5));
    let queries = d.keepalive_queries(USER);
    wait_until("a keep-alive at the new interval", secs(45), || {
        d.keepalive_queries(USER) > queries
    });
    eprintln!("commands: {:#?}", d.imap_commands(USER));
    // Logging was switched on in Settings: the running tray writes its log file from now on.
    wait_until("the log file to be written", secs(10), || {
        std::fs::read_dir(home.log_dir()).is_ok_and(|dir| {
            dir.flatten().any(|f| {
                std::fs::read_to_string(f.path())
                    .is_ok_and(|t| t.contains("configuration reloaded"))
            })
        })
    });
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    assert!(
        text.contains("password_command"),
        "the account survived the save:\n{text}"
    );
    assert!(!text.contains("secret-pw"));
}

/// A new user's first account, entered in the settings window that the tray opens by itself:
/// the password typed into the form goes into the keyring (a real gnome-keyring on the
/// session bus), never into the file; Apply reaches the running tray while the window is still
/// open; start at login comes on with the first account; the page refuses an interval below 30
/// before asking Rust; Cancel leaves the file as the last Apply wrote it.
#[test]
fn settings_adds_the_first_account_with_its_password_in_the_keyring_apply_and_cancel() {
    let d = Dovecot::start(DovecotOptions::default());
    let desktop = Desktop::start();
    let keyring = support::keyring::Daemons::keyring_on(&desktop.bus);
    let home = Home::new();
    home.write_config("[keepalive]\ncheck_on_wake = false\n");
    let script = home.path().join("automation.js");
    settings_script(
        &script,
        &format!(
            r#"$("add-account").click();
           type("acct.name", "work");
           type("acct.host", "localhost");
           type("acct.security", "tls");
           type("acct.port", "{port}");
           type("acct.username", "{USER}");
           type("acct.password", "secret-pw");
           type("acct.ca_file", "{ca}");
           $("test-account").click();
           when(() => $("test-result").classList.contains("ok"), () => {{
             $("apply").click();
             setTimeout(() => {{
               type("keepalive.interval_secs", "10");
               $("apply").click();
               // Refused in the page, before any message to Rust: the field is marked at once.
               // Otherwise a valid 31 is saved, which the test sees in the file.
               if (!$("keepalive.interval_secs").classList.contains("invalid")) {{
                 type("keepalive.interval_secs", "31");
                 $("apply").click();
                 return;
               }}
               type("keepalive.interval_secs", "45");
               setTimeout(() => $("cancel").click(), 1000);
             }}, 20000);
           }});"#,
            port = d.imaps_port(),
            ca = d.ca_pem().display(),
        ),
    );
    let _tray = Tray::start_with(&home, &desktop, &[("MAILPULSE_SETTINGS_SCRIPT", &script)]);
    let item = desktop.wait_for_tray_item(secs(30));
    wait_until("Apply to save the account", secs(60), || {
        std::fs::read_to_string(home.config_path())
            .unwrap()
            .contains("name = \"work\"")
    });
    wait_until(
        "the tray to connect with the applied account",
        secs(15),
        || {
            desktop
                .tray_property(&item, "ToolTip")
                .contains("work: connected")
        },
    );
    assert!(
        !settings_windows(&home.config_path()).is_empty(),
        "Apply, not closing the window, reached the tray"
    );
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    assert!(
        !text.contains("secret-pw") && !text.contains("password_command"),
        "{text}"
    );
    assert_eq!(
        keyring.search_items(&[("service", "mailpulse"), ("username", "alice@localhost")]),
        1,
        "the typed password is in the keyring"
    );
    assert!(
        home.path()
            .join("config/autostart/mailpulse.desktop")
            .is_file(),
        "start at login comes on with the first account"
    );
    wait_until("Cancel to close the window", secs(60), || {
        settings_windows(&home.config_path()).is_empty()
    });
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    assert!(text.contains("interval_secs = 60"), "{text}");
    for refused in ["= 10", "= 31", "= 45"] {
        assert!(
            !text.contains(&format!("interval_secs {refused}")),
            "{text}"
        );
    }
    // What the keyring holds works outside the tray too.
    let mut check = home.command(&["check"]);
    desktop.apply(&mut check);
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Settings' Network section: a proxy with a user, its password typed once. Test connection
/// goes through it, Save writes the proxy (never its password) into the file and the password
/// into the keyring, and the tray then connects through the proxy.
#[test]
fn settings_network_section_sets_a_proxy_with_its_password_in_the_keyring() {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "behind the proxy", "x");
    let squid = proxies::Squid::start(
        "127.0.0.1",
        support::free_port(),
        proxies::SquidOptions {
            users: vec![("pat".into(), "proxy-pw".into())],
            hosts: vec![("127.0.0.1".into(), "localhost".into())],
            ..proxies::SquidOptions::default()
        },
        None,
    );
    let desktop = Desktop::start();
    let keyring = support::keyring::Daemons::keyring_on(&desktop.bus);
    let home = Home::new();
    home.write_config("[keepalive]\ncheck_on_wake = false\n");
    let script = home.path().join("automation.js");
    settings_script(
        &script,
        &format!(
            r#"type("net.mode", "manual");
           type("net.kind", "http");
           type("net.host", "127.0.0.1");
           type("net.port", "{proxy_port}");
           type("net.user", "pat");
           type("net.password", "proxy-pw");
           $("add-account").click();
           type("acct.name", "work");
           type("acct.host", "localhost");
           type("acct.security", "tls");
           type("acct.port", "{port}");
           type("acct.username", "{USER}");
           type("acct.password", "secret-pw");
           type("acct.ca_file", "{ca}");
           $("test-account").click();
           when(() => $("test-result").classList.contains("ok") || $("test-result").classList.contains("fail"), () => {{
             if ($("test-result").classList.contains("ok")) $("ok").click();
             else document.title = "FAILED: " + $("test-result").textContent;
           }});"#,
            proxy_port = squid.port,
            port = d.imaps_port(),
            ca = d.ca_pem().display(),
        ),
    );
    let _tray = Tray::start_with(&home, &desktop, &[("MAILPULSE_SETTINGS_SCRIPT", &script)]);
    let item = desktop.wait_for_tray_item(secs(30));
    wait_until("OK to save the account and the proxy", secs(60), || {
        std::fs::read_to_string(home.config_path())
            .unwrap()
            .contains("name = \"work\"")
    });
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    assert!(
        text.contains(&format!(
            "[network]\nproxy = \"http://pat@127.0.0.1:{}\"",
            squid.port
        )),
        "{text}"
    );
    assert!(
        !text.contains("proxy-pw") && !text.contains("secret-pw"),
        "{text}"
    );
    assert_eq!(
        keyring.search_items(&[
            ("service", "mailpulse"),
            ("username", &format!("pat@proxy 127.0.0.1:{}", squid.port))
        ]),
        1,
        "the proxy's password is in the keyring"
    );
    wait_until("the tray to connect through the proxy", secs(30), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("work: connected")
    });
    // Test connection's tunnel (Squid logs a tunnel when it ends), authenticated as pat.
    let log = squid.access_log();
    assert!(
        log.lines().any(
            |l| l.contains(&format!("CONNECT localhost:{}", d.imaps_port())) && l.contains(" pat ")
        ),
        "{log}"
    );
    // The tray's session: a connection to the proxy, open (its tunnel is not logged yet).
    let out = std::process::Command::new("ss")
        .args([
            "-Htn",
            "state",
            "established",
            &format!("( dport = :{} )", squid.port),
        ])
        .output()
        .expect("ss (iproute2)");
    let open = String::from_utf8_lossy(&out.stdout);
    assert!(
        !open.trim().is_empty(),
        "the tray's connection goes to the proxy\n{log}"
    );
}

/// A wrong password in the keyring: one rejected login and "Check now" adds none (the account
/// would be locked otherwise); the right password saved in Settings logs in as soon as the
/// window closes, although the file did not change.
#[test]
fn a_rejected_password_waits_for_a_new_one_from_settings() {
    let d = Dovecot::start(DovecotOptions::default());
    let desktop = Desktop::start();
    let _keyring = support::keyring::Daemons::keyring_on(&desktop.bus);
    let home = Home::new();
    home.write_config(&format!(
        "[keepalive]\ncheck_on_wake = false\n[desktop]\nstart_at_login = false\n\n\
         [[accounts]]\nname = \"work\"\nhost = \"localhost\"\nport = {}\nsecurity = \"tls\"\n\
         username = \"{USER}\"\nca_file = \"{}\"\n",
        d.imaps_port(),
        d.ca_pem().display()
    ));
    set_password(&home, &desktop, "wrong-pw");
    let script = home.path().join("automation.js");
    settings_script(
        &script,
        r#"type("acct.password", "secret-pw");
           setTimeout(() => $("ok").click(), 500);"#,
    );
    let _tray = Tray::start_with(&home, &desktop, &[("MAILPULSE_SETTINGS_SCRIPT", &script)]);
    let item = desktop.wait_for_tray_item(secs(30));
    wait_until("the rejected login in the tooltip", secs(30), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("rejected the login")
    });
    for _ in 0..3 {
        desktop.click_menu(&item, "Check now");
        sleep(secs(1));
    }
    sleep(secs(2));
    assert_eq!(d.login_attempts(USER), 1, "{}", tray_log(&home));

    desktop.click_menu(&item, "Settings…");
    wait_until("connected with the new password", secs(60), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("work: connected")
    });
    assert_eq!(d.login_attempts(USER), 2, "{}", tray_log(&home));
}

/// `mailpulse password set --account work` with `pw` typed in, in the tray's session (its
/// keyring, its runtime dir); what it said on stderr.
fn set_password(home: &Home, desktop: &Desktop, pw: &str) -> String {
    let mut set = home.command(&["password", "set", "--account", "work"]);
    desktop.apply(&mut set);
    let mut child = set
        .env("XDG_RUNTIME_DIR", home.path().join("run"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{pw}\n").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "password set");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `mailpulse password set` while the tray waits out a rejected password: the tray is told over
/// its socket and logs in with the new password at once, without a "Check now".
#[test]
fn password_set_reaches_the_running_tray_and_it_logs_in_at_once() {
    let d = Dovecot::start(DovecotOptions::default());
    let desktop = Desktop::start();
    let _keyring = support::keyring::Daemons::keyring_on(&desktop.bus);
    let home = Home::new();
    home.write_config(&format!(
        "[keepalive]\ncheck_on_wake = false\n[desktop]\nstart_at_login = false\n\n\
         [[accounts]]\nname = \"work\"\nhost = \"localhost\"\nport = {}\nsecurity = \"tls\"\n\
         username = \"{USER}\"\nca_file = \"{}\"\n",
        d.imaps_port(),
        d.ca_pem().display()
    ));
    let said = set_password(&home, &desktop, "wrong-pw");
    assert!(!said.contains("running mailpulse"), "no tray yet: {said}");
    let _tray = Tray::start(&home, &desktop);
    let item = desktop.wait_for_tray_item(secs(30));
    wait_until("the rejected login in the tooltip", secs(30), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("rejected the login")
    });
    assert_eq!(d.login_attempts(USER), 1, "{}", tray_log(&home));
    let said = set_password(&home, &desktop, "secret-pw");
    assert!(
        said.contains("The running mailpulse uses it from now on."),
        "{said}"
    );
    wait_until("connected with the new password", secs(30), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("work: connected")
    });
    assert_eq!(d.login_attempts(USER), 2, "{}", tray_log(&home));
}

/// The config edited by hand while the tray runs (an editor, a script, `mailpulse settings` on
/// its own): a broken version is refused with one toast naming the file, line and key, and the
/// agent goes on with the last good one; the fixed version takes effect at once. Start at login
/// follows the setting, but an entry the desktop switched off stays off.
#[test]
fn a_hand_edited_config_is_reloaded_and_a_broken_one_is_refused() {
    let d = Dovecot::start(DovecotOptions::default());
    let desktop = Desktop::start();
    let home = Home::new();
    let config_text = |interval: u32, start_at_login: bool| {
        config(
            &home,
            &d,
            d.imaps_port(),
            "tls",
            &format!(
                "[keepalive]\ninterval_secs = {interval}\ncheck_on_wake = false\n[desktop]\nstart_at_login = {start_at_login}\n"
            ),
            "",
        )
    };
    let good = |interval: u32| config_text(interval, true);
    let entry = home.path().join("config/autostart/mailpulse.desktop");
    home.write_config(&good(600));
    let (path, opener_log) = fake_opener(&home);
    let _tray = Tray::start_with(&home, &desktop, &[("PATH", Path::new(&path))]);
    let item = desktop.wait_for_tray_item(secs(30));
    wait_until("connected", secs(30), || {
        desktop
            .tray_property(&item, "ToolTip")
            .contains("work: connected")
    });

    // Broken: an interval below the minimum, on line 2 of the file.
    home.write_config(&good(10));
    let error = expect_toast(&desktop, &home, secs(20), |t| {
        t.summary == "mailpulse: the configuration has an error"
    });
    let file_line = format!("{}:2:17:", home.config_path().display());
    assert!(
        error.body.contains(&file_line)
            && error.body.contains("keepalive.interval_secs")
            && error.body.contains("still using the previous settings"),
        "{error:?}"
    );
    // The agent still runs on the last good configuration: connected, and no keep-alive at
    // the refused 10 s (nor at 30 s) in the next 35 s.
    let queries = d.keepalive_queries(USER);
    sleep(secs(35));
    assert_eq!(d.keepalive_queries(USER), queries, "still at 600 s");
    assert!(
        desktop
            .tray_property(&item, "ToolTip")
            .contains("work: connected")
    );
    let errors = |desktop: &Desktop| {
        desktop
            .toasts()
            .iter()
            .filter(|t| t.summary == "mailpulse: the configuration has an error")
            .count()
    };
    assert_eq!(errors(&desktop), 1, "one toast for one broken version");

    // Fixed, with a new interval: used at once, without Settings or a restart.
    home.write_config(&good(30));
    wait_until("the reload", secs(20), || {
        tray_log(&home).contains("configuration reloaded: 1 account(s), keep-alive on every 30 s")
    });
    sleep(secs(2));
    let queries = d.keepalive_queries(USER);
    wait_until("a keep-alive at the new interval", secs(45), || {
        d.keepalive_queries(USER) > queries
    });
    assert_eq!(errors(&desktop), 1, "{:#?}", desktop.toasts());

    // Start at login: on with the account, off when the setting says so.
    let entry_text = std::fs::read_to_string(&entry).expect("start at login with an account");
    assert!(
        entry_text.contains("X-GNOME-Autostart-enabled=true"),
        "{entry_text}"
    );
    home.write_config(&config_text(30, false));
    wait_until("the entry to be removed", secs(20), || !entry.exists());
    // The user switches it off in the desktop's own tool and the setting is on again: the
    // desktop's choice stands (the tray would otherwise rewrite it at every start).
    let switched_off = entry_text.replace(
        "X-GNOME-Autostart-enabled=true",
        "X-GNOME-Autostart-enabled=false",
    );
    std::fs::write(&entry, &switched_off).unwrap();
    home.write_config(&good(30));
    wait_until("the third reload", secs(20), || {
        tray_log(&home)
            .matches("configuration reloaded: 1 account(s)")
            .count()
            >= 3
    });
    sleep(secs(1));
    assert_eq!(std::fs::read_to_string(&entry).unwrap(), switched_off);

    // A webmail address added by hand: a left click on the icon opens it in the browser (the
    // desktop's opener, here a stand-in on PATH that records what it was given).
    home.write_config(&format!(
        "{}webmail_url = \"https://mail.example.org/\"\n",
        good(30)
    ));
    wait_until("the fourth reload", secs(20), || {
        tray_log(&home)
            .matches("configuration reloaded: 1 account(s)")
            .count()
            >= 4
    });
    desktop.activate(&item);
    wait_until("the webmail to be opened", secs(10), || {
        std::fs::read_to_string(&opener_log).is_ok_and(|t| {
            t.lines()
                .any(|l| l == "https://mail.example.org/ GDK_GL=unset")
        })
    });
}

#[test]
fn first_run_writes_a_commented_config_and_opens_settings() {
    let desktop = Desktop::start();
    let home = Home::new();
    assert!(!home.config_path().exists());
    let _tray = Tray::start(&home, &desktop);
    let item = desktop.wait_for_tray_item(secs(30));
    let text = std::fs::read_to_string(home.config_path()).unwrap();
    assert!(text.contains("# Add accounts in Settings"), "{text}");
    assert!(
        text.contains("[keepalive]") && text.contains("# host = \"imap.example.com\""),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(home.config_path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    wait_until("Settings to open", secs(10), || {
        !settings_windows(&home.config_path()).is_empty()
    });
    assert!(
        desktop
            .tray_property(&item, "ToolTip")
            .contains("No account yet: open Settings to add one.")
    );
    assert!(
        !home
            .path()
            .join("config/autostart/mailpulse.desktop")
            .exists(),
        "no start at login without an account"
    );
    // Closed without adding an account, a left click on the icon opens Settings again: there
    // is no mail client or webmail to open yet.
    for pid in settings_windows(&home.config_path()) {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
    wait_until("Settings to close", secs(10), || {
        settings_windows(&home.config_path()).is_empty()
    });
    sleep(secs(1));
    desktop.activate(&item);
    wait_until("a left click to open Settings", secs(10), || {
        !settings_windows(&home.config_path()).is_empty()
    });
}
