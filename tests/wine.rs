//! mailpulse.exe, the Windows build, run under Wine against the private Dovecot over TLS: the
//! Windows code paths (SChannel through native-tls with the test CA in `ca_file`, `cmd /C` for
//! `password_command`, Credential Manager, console output) exercised for real on a Linux host.
//!
//! What it needs, and what happens without it:
//!
//! * `wine` and `wineserver` (Debian `wine` + `wine64`), the mingw-w64 linker
//!   `x86_64-w64-mingw32-gcc` (Debian `gcc-mingw-w64-x86-64`) and the Rust target
//!   `x86_64-pc-windows-gnu` (`rustup target add x86_64-pc-windows-gnu`); `scripts/install-deps.sh
//!   test` installs all of them. When one is missing every test here prints `SKIPPED` with what
//!   is missing and passes, unless `MAILPULSE_REQUIRE_WINE=1` (set it in CI): then it fails.
//! * The exe is built once per run of this test binary by a nested `cargo build --target
//!   x86_64-pc-windows-gnu` into `<target dir>/wine` (its own target dir: the outer `cargo test`
//!   keeps the lock on the normal one). The first build takes minutes; later ones are
//!   incremental. `MAILPULSE_WINE_EXE=/path/to/mailpulse.exe` uses a prebuilt exe instead.
//! * Rust's std (since 1.78) takes random numbers from `ProcessPrng` in bcryptprimitives.dll,
//!   which Wine 8 lacks: tests/wine/bcryptprimitives.c, a few lines over `BCryptGenRandom`, is
//!   built with mingw and put beside the exe (a DLL beside the exe is found first).
//! * SChannel's revocation policy: mailpulse (through the schannel crate) asks for the browsers'
//!   policy, revoked fails and unknown/offline passes, which Windows honours and Wine 8's crypt32
//!   does not (it fails the test CA's certificate, which names no CRL, with 0x800B010E). The
//!   prefix therefore gets tests/wine/revocation.c as its revocation provider: Wine's own
//!   cryptnet.dll answers, "unknown"/"offline" become "not revoked", "revoked" stays.
//!   `MAILPULSE_WINE_REVOCATION=wine` leaves Wine's provider in place (the check test then fails
//!   with mailpulse's sentence for that code).
//!
//! Every test shares one Wine prefix (a temporary directory, booted once with `wineboot`, which
//! takes 10-30 s); when the last test that uses it ends, `wineserver -k` stops every Wine process
//! of that prefix and the directory is removed. Wine's own chatter is off (`WINEDEBUG=-all`;
//! `MAILPULSE_WINEDEBUG=+chain,+secur32` and the like turn channels on for debugging) and no
//! display is used: these are console programs. All traffic stays on 127.0.0.1.
#![cfg(target_os = "linux")] // Wine, the mingw linker and the Dovecot fixture are Linux tools here.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/proxies.rs"]
mod proxies;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::dovecot::{Dovecot, DovecotOptions};

/// The cargo features of the Windows build. The desktop build does not link for Windows yet;
/// when it does, this becomes `&[]` and the same tests run the tray-capable exe headless.
const EXE_FEATURES: &[&str] = &[];

const TARGET: &str = "x86_64-pc-windows-gnu";
/// tests/wine/revocation.c, registered in the prefix as its revocation provider (see there).
const REVOCATION_DLL: &str = "mailpulse_test_revocation.dll";
const REVOCATION_KEY: &str =
    r"HKLM\Software\Microsoft\Cryptography\OID\EncodingType 1\CertDllVerifyRevocation\DEFAULT";
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";
const USER: &str = "alice";
const PASSWORD: &str = "secret-pw";

/// Upper bounds. The machine is shared; Wine starts a process in a second or two.
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);
const BOOT_LIMIT: Duration = Duration::from_secs(180);
const RUN_LIMIT: Duration = Duration::from_secs(120);
const EVENT_LIMIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Prerequisites and the build.

/// `Some(reason)` when this machine cannot run the tests (nothing is built then).
fn missing_prerequisite() -> Option<String> {
    for tool in ["wine", "wineserver", "wineboot", MINGW_GCC] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` is not on PATH"));
        }
    }
    if std::env::var_os("MAILPULSE_WINE_EXE").is_none() {
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let libdir = Command::new(&rustc)
            .args(["--print", "target-libdir", "--target", TARGET])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        let has_std = libdir.is_some_and(|d| {
            std::fs::read_dir(d).is_ok_and(|mut it| {
                it.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
            })
        });
        if !has_std {
            return Some(format!(
                "the Rust target {TARGET} is not installed (rustup target add {TARGET})"
            ));
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Skip (print why, pass) or, with `MAILPULSE_REQUIRE_WINE` set, fail.
fn skip_unless_ready() -> bool {
    let Some(reason) = missing_prerequisite() else {
        return false;
    };
    let message = format!(
        "SKIPPED tests/wine.rs: {reason}; `scripts/install-deps.sh test` installs wine, wine64, \
         gcc-mingw-w64-x86-64 and the Rust target {TARGET}"
    );
    if std::env::var_os("MAILPULSE_REQUIRE_WINE").is_some_and(|v| v != "0") {
        panic!("{message} (and MAILPULSE_REQUIRE_WINE is set)");
    }
    // Once, and past libtest's capture of passing tests' output, so `make test` shows it.
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let _ = writeln!(std::io::stderr(), "{message}");
    });
    true
}

/// This test binary's target directory (`<target>/debug/deps/wine-HASH` is the running exe).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .expect("test binary in <target>/<profile>/deps")
        .to_path_buf()
}

/// A directory holding `mailpulse.exe` and the `bcryptprimitives.dll` shim, built once.
fn bundle() -> &'static Path {
    static BUNDLE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUNDLE.get_or_init(build_bundle) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

fn build_bundle() -> Result<PathBuf, String> {
    let wine_target = target_dir().join("wine");
    let dir = wine_target.join("bundle");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let exe = match std::env::var_os("MAILPULSE_WINE_EXE") {
        Some(exe) => PathBuf::from(exe),
        None => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args([
                    "build",
                    "--locked",
                    "--target",
                    TARGET,
                    "--bin",
                    "mailpulse",
                    "--bin",
                    "mailpulse-tray",
                ])
                .args(EXE_FEATURES)
                .arg("--target-dir")
                .arg(&wine_target)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET")
                .stdin(Stdio::null());
            eprintln!("wine: building mailpulse.exe: {build:?}");
            let out = run_bounded(build, BUILD_LIMIT, "cargo build of mailpulse.exe")?;
            if !out.status.success() {
                return Err(format!(
                    "cargo build of mailpulse.exe failed ({}):\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            wine_target.join(TARGET).join("debug").join("mailpulse.exe")
        }
    };
    // A copy, not a link: the next build must not rewrite the exe a running test uses.
    std::fs::copy(&exe, dir.join("mailpulse.exe"))
        .map_err(|e| format!("copy {}: {e}", exe.display()))?;
    let tray = exe.with_file_name("mailpulse-tray.exe");
    if tray.is_file() {
        std::fs::copy(&tray, dir.join("mailpulse-tray.exe"))
            .map_err(|e| format!("copy {}: {e}", tray.display()))?;
    }
    // The desktop build imports WebView2Loader.dll (wry's WebView2 on the gnu target), which
    // webview2-com-sys's build script leaves in its OUT_DIR; a Windows package ships it beside
    // the exe, and so does this bundle.
    if let Some(loader) = webview2_loader(exe.parent().unwrap_or(Path::new("."))) {
        std::fs::copy(&loader, dir.join("WebView2Loader.dll"))
            .map_err(|e| format!("copy {}: {e}", loader.display()))?;
    }

    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine");
    for (dll, source, lib) in [
        ("bcryptprimitives.dll", "bcryptprimitives", "-lbcrypt"),
        (REVOCATION_DLL, "revocation", "-lcrypt32"),
    ] {
        let mut gcc = Command::new(MINGW_GCC);
        gcc.args(["-O2", "-Wall", "-shared", "-o"])
            .arg(dir.join(dll))
            .arg(sources.join(format!("{source}.c")))
            .arg(sources.join(format!("{source}.def")))
            .arg(lib)
            .stdin(Stdio::null());
        let out = run_bounded(
            gcc,
            Duration::from_secs(120),
            &format!("mingw build of {dll}"),
        )?;
        if !out.status.success() {
            return Err(format!(
                "building {dll} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(dir)
}

/// `PROFILE_DIR/build/webview2-com-sys-*/out/x64/WebView2Loader.dll`, when the build has one.
fn webview2_loader(profile_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(profile_dir.join("build"))
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("webview2-com-sys-")
        })
        .map(|e| e.path().join("out/x64/WebView2Loader.dll"))
        .find(|p| p.is_file())
}

/// Run to completion within `limit`, else kill it (by its PID) and say so.
fn run_bounded(cmd: Command, limit: Duration, what: &str) -> Result<Output, String> {
    run_bounded_with_input(cmd, None, limit, what)
}

/// [`run_bounded`], writing `input` to its standard input (which `cmd` pipes) and closing it.
fn run_bounded_with_input(
    mut cmd: Command,
    input: Option<&str>,
    limit: Duration,
    what: &str,
) -> Result<Output, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A few bytes: the pipe takes them without the child reading; closing it ends input.
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("writing to {what}: {e}"))?;
    }
    // Drain both pipes while waiting: a chatty child must not block on a full pipe.
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = thread::spawn(move || read_all(out));
    let err = thread::spawn(move || read_all(err));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = err.join().unwrap_or_default();
            return Err(format!(
                "{what} did not finish within {limit:?}:\n{}",
                String::from_utf8_lossy(&err)
            ));
        }
        thread::sleep(Duration::from_millis(50));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn read_all(mut r: impl std::io::Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    v
}

// ---------------------------------------------------------------------------------------------
// The Wine prefix.

/// A booted Wine prefix in a temporary directory, shared by the tests running at the same time.
struct Prefix {
    dir: tempfile::TempDir,
}

impl Prefix {
    /// The prefix the running tests share, booted on first use.
    fn shared() -> Arc<Prefix> {
        static SHARED: Mutex<Weak<Prefix>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = shared.upgrade() {
            return p;
        }
        let p = Arc::new(Prefix::boot());
        *shared = Arc::downgrade(&p);
        p
    }

    fn boot() -> Prefix {
        let dir = tempfile::Builder::new()
            .prefix("mailpulse-wine-")
            .tempdir()
            .expect("temp dir for the Wine prefix");
        let prefix = Prefix { dir };
        let started = Instant::now();
        let mut boot = prefix.wine_env(Command::new("wineboot"));
        boot.arg("--init").stdin(Stdio::null());
        let out = run_bounded(boot, BOOT_LIMIT, "wineboot").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "wineboot --init failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // Wine 8 ignores the revocation policy flags SChannel clients pass (see
        // tests/wine/revocation.c): its cryptnet.dll answers through this provider instead.
        // `MAILPULSE_WINE_REVOCATION=wine` keeps Wine's own (to see what Wine 8 does).
        if std::env::var("MAILPULSE_WINE_REVOCATION").is_ok_and(|v| v == "wine") {
            return prefix;
        }
        let provider = win(&bundle().join(REVOCATION_DLL));
        let mut reg = prefix.wine_env(Command::new("wine"));
        reg.args([
            "reg",
            "add",
            REVOCATION_KEY,
            "/v",
            "Dll",
            "/t",
            "REG_MULTI_SZ",
        ])
        .args(["/d", &provider, "/f"])
        .stdin(Stdio::null());
        let out = run_bounded(reg, BOOT_LIMIT, "wine reg add").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "registering {provider}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("wine: prefix booted in {:?}", started.elapsed());
        prefix
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// This prefix's environment for a Wine program: no display, no debug chatter, no offer to
    /// install Mono or Gecko.
    fn wine_env(&self, mut cmd: Command) -> Command {
        cmd.env("WINEPREFIX", self.path())
            .env(
                "WINEDEBUG",
                std::env::var("MAILPULSE_WINEDEBUG").unwrap_or_else(|_| "-all".into()),
            )
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("RUST_LOG");
        cmd
    }

    /// `wine reg query KEY /v VALUE`: the value's line, or `None` when it is not there.
    fn reg_value(&self, key: &str, value: &str) -> Option<String> {
        let mut q = self.wine_env(Command::new("wine"));
        q.args(["reg", "query", key, "/v", value])
            .stdin(Stdio::null());
        let out = run_bounded(q, RUN_LIMIT, "wine reg query").unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.trim_start().starts_with(value))?;
        out.status.success().then(|| line.trim().to_owned())
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // Stops the wineserver of this prefix and, with it, every Wine process of the prefix.
        let mut kill = self.wine_env(Command::new("wineserver"));
        kill.arg("-k").stdin(Stdio::null());
        if let Err(e) = run_bounded(kill, Duration::from_secs(30), "wineserver -k") {
            eprintln!("wine: {e}");
        }
    }
}

/// A Unix path as the Windows program sees it: Wine maps drive Z: to `/`.
fn win(path: &Path) -> String {
    let s = path.to_str().expect("UTF-8 path");
    assert!(
        s.starts_with('/') && !s.contains(' '),
        "unsuitable path {s}"
    );
    format!("Z:{}", s.replace('/', "\\"))
}

// ---------------------------------------------------------------------------------------------
// One user of mailpulse.exe: a config, and commands run with it.

struct Agent {
    prefix: Arc<Prefix>,
    exe: PathBuf,
    dir: tempfile::TempDir,
}

impl Agent {
    fn new() -> Agent {
        Agent::in_prefix(Prefix::shared())
    }

    fn in_prefix(prefix: Arc<Prefix>) -> Agent {
        Agent {
            prefix,
            exe: bundle().join("mailpulse.exe"),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// One IMAPS account on the test Dovecot, the test CA in `ca_file`; `password_command`
    /// `type`s a file through `cmd /C` when `password_from_file`, else the password comes
    /// from Credential Manager.
    fn write_config(&self, dovecot: &Dovecot, password_from_file: bool) {
        let password = if password_from_file {
            let file = self.dir.path().join("password");
            std::fs::write(&file, PASSWORD).unwrap();
            format!("password_command = 'type {}'\n", win(&file))
        } else {
            String::new()
        };
        // TOML literal strings ('...'): Windows paths keep their backslashes.
        let text = format!(
            "[keepalive]\ncheck_on_wake = false\n\n\
             [[accounts]]\nname = \"work\"\nhost = \"localhost\"\nport = {}\nsecurity = \"tls\"\n\
             username = \"{USER}\"\nca_file = '{}'\n{password}",
            dovecot.imaps_port(),
            win(&dovecot.ca_pem()),
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// `wine mailpulse.exe --config CONFIG ARGS`.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.prefix.wine_env(Command::new("wine"));
        c.arg(&self.exe)
            .arg("--config")
            .arg(win(&self.config_path()))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, None)
    }

    /// Run to completion (bounded), with `input` on standard input (a pipe) when given.
    fn run_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut cmd = self.command(args);
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        run_bounded_with_input(cmd, input, RUN_LIMIT, &format!("mailpulse.exe {args:?}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// `watch --json` under Wine.

struct Watch {
    child: Child,
    events: Receiver<Value>,
    transcript: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(agent: &Agent) -> Watch {
        let mut child = agent
            .command(&["watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailpulse.exe watch");
        let (tx, events) = channel();
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let lines = transcript.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(format!("out: {line}"));
                // Windows console output may end lines with \r\n.
                match serde_json::from_str::<Value>(line.trim_end()) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(e) => lines.lock().unwrap().push(format!("(not JSON: {e})")),
                }
            }
        });
        let lines = transcript.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(format!("err: {line}"));
            }
        });
        Watch {
            child,
            events,
            transcript,
        }
    }

    fn transcript(&self) -> String {
        self.transcript.lock().unwrap().join("\n")
    }

    /// Events up to and including the first that matches, within `limit`.
    fn until(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    let done = pred(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!(
                    "no matching event within {limit:?}; seen {seen:?}\n{}",
                    self.transcript()
                ),
            }
        }
    }

    /// Everything printed during `d`.
    fn during(&self, d: Duration) -> Vec<Value> {
        let deadline = Instant::now() + d;
        let mut seen = Vec::new();
        while let Ok(v) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.push(v);
        }
        seen
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // `wine` execs the Windows process's loader: this PID is mailpulse.exe itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|v| v["type"] == kind).collect()
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn check_over_schannel_with_the_test_ca_prints_the_newest_message() {
    if skip_unless_ready() {
        return;
    }
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "first", "1");
    d.deliver(USER, "Bob Builder <bob@example.org>", "Grüße aus Köln", "2");
    let agent = Agent::new();
    agent.write_config(&d, true);

    let out = agent.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "work: uid=2 from=\"Bob Builder <bob@example.org>\" subject=\"Grüße aus Köln\" date="
        ),
        "{}",
        text(&out)
    );

    let out = agent.run(&["check", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(v["uid"], 2, "{v}");
    assert_eq!(v["from"], "Bob Builder <bob@example.org>", "{v}");
    assert_eq!(v["subject"], "Grüße aus Köln", "{v}");
}

#[test]
fn watch_json_reports_a_delivered_mail_once() {
    if skip_unless_ready() {
        return;
    }
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Old <old@example.org>", "already there", "x");
    let agent = Agent::new();
    agent.write_config(&d, true);
    let w = Watch::start(&agent);
    let start = w.until(EVENT_LIMIT, |v| {
        v["type"] == "state" && v["state"] == "idle"
    });
    assert!(
        of_type(&start, "new_mail").is_empty(),
        "old mail is not news: {start:?}"
    );

    d.deliver(USER, "Bob <bob@example.org>", "lunch?", "at noon");
    let mut seen = w.until(EVENT_LIMIT, |v| v["type"] == "new_mail");
    // Anything more about the same message within a few seconds would be a duplicate.
    seen.extend(w.during(Duration::from_secs(5)));
    let mails = of_type(&seen, "new_mail");
    assert_eq!(mails.len(), 1, "{seen:?}\n{}", w.transcript());
    let mail = mails[0];
    assert_eq!(mail["account"], "work", "{mail}");
    assert_eq!(mail["folder"], "INBOX", "{mail}");
    assert_eq!(mail["from"], "Bob <bob@example.org>", "{mail}");
    assert_eq!(mail["subject"], "lunch?", "{mail}");
    assert_eq!(mail["uid"], 2, "{mail}");
}

#[test]
fn password_set_stores_it_in_credential_manager_and_check_logs_in_with_it() {
    if skip_unless_ready() {
        return;
    }
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", "stored password", "1");
    let agent = Agent::new();
    agent.write_config(&d, false);

    // Nothing stored yet: the exit code and advice of a missing password.
    let out = agent.run(&["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mailpulse password set --account work"),
        "{}",
        text(&out)
    );

    // One line on standard input (not a console) is the password: Credential Manager keeps it.
    let out = agent.run_with_input(
        &["password", "set", "--account", "work"],
        Some("secret-pw\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = agent.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("work: uid=1 from=\"Ann <ann@example.org>\" subject=\"stored password\""),
        "{}",
        text(&out)
    );

    // Deleted: missing again.
    let out = agent.run(&["password", "delete", "--account", "work"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = agent.run(&["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

const RUN_KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";

#[test]
fn autostart_writes_and_removes_the_run_key_and_the_config_keeps_the_choice() {
    if skip_unless_ready() {
        return;
    }
    let d = Dovecot::start(DovecotOptions::default());
    let agent = Agent::new();
    agent.write_config(&d, true);

    let out = agent.run(&["autostart", "on"]);
    assert!(out.status.success(), "{}", text(&out));
    let entry = agent
        .prefix
        .reg_value(RUN_KEY, "mailpulse")
        .unwrap_or_else(|| panic!("no Run value after `autostart on`: {}", text(&out)));
    assert!(
        entry.contains("REG_SZ") && entry.contains("mailpulse.exe"),
        "{entry}"
    );
    let config = std::fs::read_to_string(agent.config_path()).unwrap();
    assert!(config.contains("start_at_login = true"), "{config}");
    let out = agent.run(&["autostart"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("start at login: on ("),
        "{}",
        text(&out)
    );

    let out = agent.run(&["autostart", "off"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(agent.prefix.reg_value(RUN_KEY, "mailpulse"), None);
    let config = std::fs::read_to_string(agent.config_path()).unwrap();
    assert!(config.contains("start_at_login = false"), "{config}");
    let out = agent.run(&["autostart", "status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("start at login: off ("),
        "{}",
        text(&out)
    );
}

/// `on_new_mail` runs without cmd.exe: a `%MAILPULSE_SUBJECT%` in the command line stays text
/// (cmd would paste the subject into its command and run what follows `&`), and the subject
/// reaches the hook as data in its environment.
#[test]
fn a_hostile_subject_reaches_the_hook_as_data_and_runs_nothing() {
    if skip_unless_ready() {
        return;
    }
    const KEY: &str = r"HKCU\Software\mailpulse-test";
    let d = Dovecot::start(DovecotOptions::default());
    let agent = Agent::new();
    let password = agent.dir.path().join("password");
    std::fs::write(&password, PASSWORD).unwrap();
    let seen = agent.dir.path().join("subject.txt");
    let account = |name: &str, hook: &str| {
        format!(
            "[[accounts]]\nname = \"{name}\"\nhost = \"localhost\"\nport = {}\n\
             security = \"tls\"\nusername = \"{USER}\"\nca_file = '{}'\n\
             password_command = 'type {}'\non_new_mail = '{hook}'\n\n",
            d.imaps_port(),
            win(&d.ca_pem()),
            win(&password),
        )
    };
    let config = format!(
        "[keepalive]\ncheck_on_wake = false\n\n{}{}",
        account(
            "direct",
            &format!(r"reg add {KEY} /v subject /d %MAILPULSE_SUBJECT% /f")
        ),
        account(
            "data",
            &format!("cmd /D /C set MAILPULSE_SUBJECT> {}", win(&seen))
        ),
    );
    std::fs::write(agent.config_path(), config).unwrap();

    let w = Watch::start(&agent);
    let mut idle = std::collections::BTreeSet::new();
    while idle.len() < 2 {
        let seen = w.until(EVENT_LIMIT, |v| {
            v["type"] == "state" && v["state"] == "idle"
        });
        idle.insert(seen.last().unwrap()["account"].to_string());
    }
    let hostile = format!(r"x & reg add {KEY} /v pwned /d 1 /f");
    d.deliver(USER, "Eve <eve@example.org>", &hostile, "hi");
    let mut mails = 0;
    let deadline = Instant::now() + EVENT_LIMIT;
    while mails < 2 && Instant::now() < deadline {
        w.until(EVENT_LIMIT, |v| v["type"] == "new_mail");
        mails += 1;
    }
    // Both hooks have run once their traces are there (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && (agent.prefix.reg_value(KEY, "subject").is_none()
            || std::fs::read(&seen).map_or(true, |b| b.is_empty()))
    {
        thread::sleep(Duration::from_millis(500));
    }
    let direct = agent.prefix.reg_value(KEY, "subject");
    assert!(
        direct
            .as_deref()
            .is_some_and(|l| l.ends_with("%MAILPULSE_SUBJECT%")),
        "the hook without a shell got the text as written: {direct:?}\n{}",
        w.transcript()
    );
    assert_eq!(
        agent.prefix.reg_value(KEY, "pwned"),
        None,
        "the subject ran as a command"
    );
    let data = String::from_utf8_lossy(&std::fs::read(&seen).unwrap_or_default()).into_owned();
    assert_eq!(
        data.trim_end(),
        format!("MAILPULSE_SUBJECT={hostile}"),
        "{}",
        w.transcript()
    );
}

/// The tray under Wine, on a private X display: it writes the `Run` value at start (an account
/// and `start_at_login`, the default), and a second tray asks the first over the named pipe and
/// exits instead of starting.
#[test]
fn a_second_tray_asks_the_first_over_the_pipe_and_exits() {
    if skip_unless_ready() {
        return;
    }
    let desktop = support::desktop::Desktop::start();
    let d = Dovecot::start(DovecotOptions::default());
    // A prefix of its own: its explorer.exe (the tray area) runs on this display.
    let agent = Agent::in_prefix(Arc::new(Prefix::boot()));
    agent.write_config(&d, true);
    let tray = |agent: &Agent| {
        let mut c = agent.prefix.wine_env(Command::new("wine"));
        c.arg(bundle().join("mailpulse-tray.exe"))
            .arg("--config")
            .arg(win(&agent.config_path()))
            .stdin(Stdio::null());
        desktop.apply(&mut c);
        c
    };
    let mut first = tray(&agent)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the first tray");
    let first_err = first.stderr.take().unwrap();
    let first_err = thread::spawn(move || read_all(first_err));
    struct Stop(Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut first = Stop(first);

    // Up once it has claimed the instance and set up start at login.
    let deadline = Instant::now() + EVENT_LIMIT;
    let mut entry = None;
    while entry.is_none() && Instant::now() < deadline {
        if let Ok(Some(status)) = first.0.try_wait() {
            panic!(
                "the first tray ended ({status}): {}",
                String::from_utf8_lossy(&first_err.join().unwrap_or_default())
            );
        }
        thread::sleep(Duration::from_millis(500));
        entry = agent.prefix.reg_value(RUN_KEY, "mailpulse");
    }
    let entry = entry.expect("the tray wrote the Run value");
    assert!(entry.contains("mailpulse.exe"), "{entry}");

    let out =
        run_bounded(tray(&agent), RUN_LIMIT, "the second tray").unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running; asked it to open Settings"),
        "{}",
        text(&out)
    );
    assert!(
        first.0.try_wait().ok().flatten().is_none(),
        "the first tray is still running"
    );
    drop(first);
}

/// The test Dovecot holding one message `subject`, a Squid on loopback (with `options`) that
/// alone resolves the server's name (its hosts file), and `agent`'s config naming the server by
/// that name: a check passes only through the proxy.
fn behind_squid(
    agent: &Agent,
    subject: &str,
    options: proxies::SquidOptions,
) -> (Dovecot, proxies::Squid) {
    let d = Dovecot::start(DovecotOptions::default());
    d.deliver(USER, "Ann <ann@example.org>", subject, "1");
    let name = support::tls::NETNS_SERVER_NAME;
    let squid = proxies::Squid::start(
        "127.0.0.1",
        support::dovecot::free_port(),
        proxies::SquidOptions {
            hosts: vec![("127.0.0.1".into(), name.into())],
            ..options
        },
        None,
    );
    let file = agent.dir.path().join("password");
    std::fs::write(&file, PASSWORD).unwrap();
    std::fs::write(
        agent.config_path(),
        format!(
            "[keepalive]\ncheck_on_wake = false\n\n\
             [[accounts]]\nname = \"work\"\nhost = \"{name}\"\nport = {}\nsecurity = \"tls\"\n\
             username = \"{USER}\"\nca_file = '{}'\npassword_command = 'type {}'\n",
            d.imaps_port(),
            win(&d.ca_pem()),
            win(&file),
        ),
    )
    .unwrap();
    (d, squid)
}

/// `proxy = "system"` on Windows: the user's proxy settings (Settings › Network › Proxy, i.e.
/// WinINET's `DefaultConnectionSettings`), read through WinHTTP. The account names a server only
/// the proxy can resolve (Squid's hosts file), so the check passes only through the proxy.
#[test]
fn the_windows_proxy_settings_take_the_connection_through_the_proxy() {
    if skip_unless_ready() {
        return;
    }
    // A prefix of its own: the proxy setting is the user's, for every program of the prefix.
    let prefix = Arc::new(Prefix::boot());
    let agent = Agent::in_prefix(prefix.clone());
    let (d, squid) = behind_squid(
        &agent,
        "through the Windows proxy",
        proxies::SquidOptions::default(),
    );
    let name = support::tls::NETNS_SERVER_NAME;
    // WinINET's DefaultConnectionSettings: magic 0x46, a counter, flags PROXY_TYPE_PROXY (2),
    // then length-prefixed proxy list, bypass list and PAC URL.
    let proxy = format!("127.0.0.1:{}", squid.port);
    let bypass = "<local>";
    let mut blob: Vec<u8> = Vec::new();
    for v in [0x46u32, 1, 2] {
        blob.extend_from_slice(&v.to_le_bytes());
    }
    for part in [proxy.as_str(), bypass, ""] {
        blob.extend_from_slice(&(part.len() as u32).to_le_bytes());
        blob.extend_from_slice(part.as_bytes());
    }
    let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
    let mut reg = prefix.wine_env(Command::new("wine"));
    reg.args([
        "reg",
        "add",
        r"HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
        "/v",
        "DefaultConnectionSettings",
        "/t",
        "REG_BINARY",
        "/d",
        &hex,
        "/f",
    ])
    .stdin(Stdio::null());
    let out = run_bounded(reg, BOOT_LIMIT, "wine reg add").unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", text(&out));

    let out = agent.run(&["check"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        squid.cache_log()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "through http://{proxy} (from the Windows proxy settings)"
        )),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("through the Windows proxy"),
        "{}",
        text(&out)
    );
    assert!(
        squid
            .access_log()
            .contains(&format!("CONNECT {name}:{}", d.imaps_port())),
        "{}",
        squid.access_log()
    );
}

/// A proxy that wants NTLM (checked for real by Samba's `ntlm_auth` behind Squid), the domain
/// user and password in `HTTPS_PROXY`: Windows' own SSPI answers it (Wine's NTLM runs Samba's
/// `ntlm_auth` too), on the connection it authenticates, and the check passes through the
/// tunnel.
#[test]
fn a_proxy_that_wants_ntlm_is_answered_by_windows_sign_in() {
    windows_sign_in_through_squid(false);
}

/// The same proxy offering only Negotiate, as in a Windows domain: SSPI's Negotiate package
/// answers (Samba's SPNEGO check behind Squid).
#[test]
fn a_proxy_that_wants_negotiate_is_answered_by_windows_sign_in() {
    windows_sign_in_through_squid(true);
}

fn windows_sign_in_through_squid(negotiate: bool) {
    if skip_unless_ready() {
        return;
    }
    let agent = Agent::new();
    let (_d, squid) = behind_squid(
        &agent,
        "through NTLM",
        proxies::SquidOptions {
            ntlm: Some(("CORP".into(), "pat".into(), "proxy-pw".into())),
            negotiate,
            ..proxies::SquidOptions::default()
        },
    );
    // `mailpulse.exe check` with the domain user and `password` in HTTPS_PROXY.
    let check_with = |password: &str| {
        let mut cmd = agent.command(&["check"]);
        cmd.env(
            "HTTPS_PROXY",
            format!("http://CORP%5Cpat:{password}@127.0.0.1:{}", squid.port),
        );
        run_bounded(cmd, RUN_LIMIT, "mailpulse.exe check through NTLM")
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let out = check_with("proxy-pw");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        squid.access_log()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("through NTLM"),
        "{}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("NTLM by mailpulse instead"),
        "SSPI, not mailpulse's own NTLM, answered:\n{}",
        text(&out)
    );
    let log = squid.access_log();
    assert!(
        log.lines()
            .any(|l| l.contains("TCP_TUNNEL/200") && l.contains("pat")),
        "{log}"
    );

    // A wrong password: SSPI's answer is refused, and the error names the user.
    let out = check_with("wrong");
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains(&format!(
                "refused the {} sign-in of the user \"CORP\\\\pat\" (407",
                if negotiate { "Negotiate" } else { "NTLM" }
            )),
        "{}",
        text(&out)
    );
}
