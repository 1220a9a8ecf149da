//! The settings window: a small web page (HTML/CSS/JS under `assets/settings/`, embedded in the
//! binary) in a WebKit view, run as a short-lived child process (`mailpulse settings`) because
//! WebKit's ~300 MB are not given back while a process lives. The tray reloads the config when
//! the process exits. Everything the page sends is validated again here before it is saved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::{Value, json};
use tao::dpi::LogicalSize;
use tao::event::{Event, WindowEvent};
use tao::event_loop::{ControlFlow, EventLoopBuilder};
use tao::window::WindowBuilder;
use wry::WebViewBuilder;

use crate::config::{Account, Config, KeepAlive};
use crate::secret::Secret;

const HTML: &str = include_str!("../../assets/settings/index.html");
const CSS: &str = include_str!("../../assets/settings/settings.css");
const JS: &str = include_str!("../../assets/settings/settings.js");
pub const HOMEPAGE: &str = env!("CARGO_PKG_REPOSITORY");

/// The page with its style and script inlined.
pub fn page() -> String {
    HTML.replace("/*CSS*/", CSS).replace("/*JS*/", JS)
}

/// The address of the settings page: it is loaded from a string, which every platform's web
/// view (WebKitGTK, WebView2, WKWebView) shows as `about:blank`.
const PAGE_URL: &str = "about:blank";

/// Whether `url` is the settings page itself (an in-page `#fragment` included). Only this page
/// may talk to the agent: a message from any other page is ignored, since the page can save
/// `password_command` and `on_new_mail`, i.e. commands the agent runs.
pub fn is_own_page(url: &str) -> bool {
    url == PAGE_URL
        || url
            .strip_prefix(PAGE_URL)
            .is_some_and(|r| r.starts_with('#'))
}

/// What to do when the web view is about to navigate.
#[derive(Debug, PartialEq, Eq)]
pub enum Navigation {
    /// The settings page itself.
    Allow,
    /// A web link: not in this window; the desktop's browser opens it.
    Browser,
    /// Anything else (`file:`, `data:`, custom schemes): refused, the page stays.
    Refuse,
}

/// The navigation policy of the settings window: it never shows another page.
pub fn navigation(url: &str) -> Navigation {
    let lower = url.trim().to_ascii_lowercase();
    if is_own_page(url) {
        Navigation::Allow
    } else if lower.starts_with("https://") || lower.starts_with("http://") {
        Navigation::Browser
    } else {
        Navigation::Refuse
    }
}

/// The navigation handler: the settings page stays; a web link goes to the desktop's browser.
fn on_navigation(url: String) -> bool {
    match navigation(&url) {
        Navigation::Allow => true,
        Navigation::Browser => {
            tracing::info!("the settings window does not navigate; opening {url} in the browser");
            if let Err(e) = crate::platform::open_with_desktop(&url) {
                tracing::warn!("cannot open {url}: {e}");
            }
            false
        }
        Navigation::Refuse => {
            tracing::warn!("the settings window refused to navigate to {url:?}");
            false
        }
    }
}

/// Test automation: a script the page runs once it is ready (`MAILPULSE_SETTINGS_SCRIPT`, a
/// file's path). Only in debug builds (the tests'): a release build runs no JavaScript but its
/// own, whatever the environment says.
#[cfg(debug_assertions)]
fn automation_script() -> Option<String> {
    std::env::var_os("MAILPULSE_SETTINGS_SCRIPT").and_then(|p| std::fs::read_to_string(p).ok())
}

#[cfg(not(debug_assertions))]
fn automation_script() -> Option<String> {
    None
}

enum Reply {
    /// A message for the page's `mailpulse.receive`.
    Message(Value),
    /// JavaScript to run in the page (test automation).
    Script(String),
    Close,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Ready,
    Save {
        config: Value,
        #[serde(default)]
        passwords: BTreeMap<String, String>,
        /// The password typed for the proxy of the Network section (for its user).
        #[serde(default)]
        proxy_password: Option<String>,
        #[serde(default)]
        close: bool,
    },
    /// "Test connection". The account carries the proxy that applies to it (its own, or the
    /// Network section's) in `proxy`; a proxy password typed and not yet saved is stored first,
    /// as Save would, so that the test goes through the proxy as the agent will.
    Test {
        account: Value,
        password: Option<String>,
        keepalive: Option<Value>,
        #[serde(default)]
        proxy_password: Option<String>,
    },
    /// "Sign in with …": the OAuth2 sign-in of this (possibly unsaved) account.
    Signin {
        account: Value,
    },
    /// "Find server": EWS autodiscover for the account's address (its host, if given, is asked
    /// instead of the address's domain).
    Discover {
        account: Value,
        password: Option<String>,
    },
    /// The project link in About: opened with the desktop's browser. Only this one address,
    /// so the page cannot make the agent open anything else.
    OpenHomepage,
    /// "Diagnose network": the adaptive keep-alive's measurement, with progress.
    Diagnose {
        account: Value,
        password: Option<String>,
        keepalive: Option<Value>,
    },
    Cancel,
}

/// Exit code of `mailpulse-settings` when the platform's web view cannot be created.
pub const WEBVIEW_UNAVAILABLE: u8 = 3;

/// The web view could not be created (on Windows: no WebView2 runtime). Say what to install,
/// once on stderr and once as a toast, and open the config file in the user's editor instead.
fn webview_unavailable(
    runtime: &tokio::runtime::Runtime,
    config_path: &std::path::Path,
    error: &str,
) -> ExitCode {
    let opened = crate::platform::open_with_desktop(&config_path.to_string_lossy()).is_ok();
    let message = format!(
        "the settings window cannot be shown ({}): {}. {}",
        error.trim(),
        crate::platform::desktop::WEBVIEW_MISSING_HINT,
        if opened {
            format!(
                "The config file {} is opened instead.",
                config_path.display()
            )
        } else {
            format!("Until then, edit {}.", config_path.display())
        }
    );
    eprintln!("mailpulse: {message}");
    tracing::warn!("{message}");
    let mut toast = notify_rust::Notification::new();
    toast
        .appname("mailpulse")
        .summary("mailpulse: Settings cannot be shown")
        .body(&message);
    if let Err(e) = runtime.block_on(crate::platform::desktop::show_toast(&mut toast, None)) {
        tracing::debug!("no toast for the missing web view: {e}");
    }
    ExitCode::from(WEBVIEW_UNAVAILABLE)
}

/// Run the window until it is closed.
pub fn run(config_path: PathBuf, page_name: Option<String>) -> ExitCode {
    if !crate::platform::desktop::have_display() {
        eprintln!(
            "mailpulse: no graphical session (DISPLAY and WAYLAND_DISPLAY are unset) for the settings window"
        );
        return ExitCode::from(1);
    }
    // Warnings (a refused navigation, a message from another page) go to stderr, or as
    // RUST_LOG says; the agent's log file is the tray's.
    let _log = crate::logging::init(&crate::config::Logging::default(), None);
    let event_loop = EventLoopBuilder::<Reply>::with_user_event().build();
    let proxy = event_loop.create_proxy();
    let window = match WindowBuilder::new()
        .with_title("mailpulse Settings")
        .with_inner_size(LogicalSize::new(820.0, 860.0))
        .with_min_inner_size(LogicalSize::new(560.0, 480.0))
        .build(&event_loop)
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!("mailpulse: cannot open the settings window: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let handle = runtime.handle().clone();
    let automation = automation_script();
    let p = proxy.clone();
    let path = config_path.clone();
    let builder = WebViewBuilder::new()
        .with_html(page())
        .with_navigation_handler(on_navigation)
        .with_new_window_req_handler(|url, _| {
            on_navigation(url);
            wry::NewWindowResponse::Deny
        });
    // What the file held when the page loaded it: Save keeps what others changed since.
    let base: std::sync::Mutex<Option<Config>> = std::sync::Mutex::new(None);
    let builder = builder.with_ipc_handler(move |request: wry::http::Request<String>| {
        let reply = |r: Reply| {
            let _ = p.send_event(r);
        };
        let origin = request.uri().to_string();
        if !is_own_page(&origin) {
            tracing::warn!("ignored a message from {origin:?}, which is not the settings page");
            return;
        }
        match serde_json::from_str::<Request>(request.body()) {
            Ok(Request::Ready) => {
                *base.lock().unwrap_or_else(|p| p.into_inner()) = Config::load(&path).ok();
                reply(Reply::Message(load_message(&path, page_name.as_deref())));
                if let Some(js) = &automation {
                    reply(Reply::Script(js.clone()));
                }
            }
            Ok(Request::Save {
                config,
                passwords,
                proxy_password,
                close,
            }) => {
                let mut base = base.lock().unwrap_or_else(|p| p.into_inner());
                let answer = save(&path, config, &passwords, &mut base);
                let answer = match (answer["op"] == "saved", proxy_password) {
                    (true, Some(pw)) if !pw.is_empty() => {
                        let setting = base
                            .as_ref()
                            .map(|c| c.network.proxy.clone())
                            .unwrap_or_default();
                        match store_proxy_password(&setting, &pw) {
                            Ok(()) => answer,
                            Err(message) => json!({"op": "error", "message": message}),
                        }
                    }
                    _ => answer,
                };
                let saved = answer["op"] == "saved";
                reply(Reply::Message(answer));
                if saved && close {
                    reply(Reply::Close);
                }
            }
            Ok(Request::Test {
                account,
                password,
                keepalive,
                proxy_password,
            }) => {
                let p = p.clone();
                handle.spawn(async move {
                    if let Some(pw) = proxy_password.filter(|p| !p.is_empty())
                        && let Ok(a) = form_account(account.clone())
                        && let Err(message) = store_proxy_password(a.proxy_setting(), &pw)
                    {
                        let _ = p.send_event(Reply::Message(
                            json!({"op": "tested", "ok": false, "text": message}),
                        ));
                        return;
                    }
                    let answer = test_connection(account, password, keepalive).await;
                    let _ = p.send_event(Reply::Message(answer));
                });
            }
            Ok(Request::Signin { account }) => {
                let p = p.clone();
                handle.spawn(async move {
                    let answer = sign_in(account, p.clone()).await;
                    let _ = p.send_event(Reply::Message(answer));
                });
            }
            Ok(Request::Discover { account, password }) => {
                let p = p.clone();
                handle.spawn(async move {
                    let answer = discover(account, password).await;
                    let _ = p.send_event(Reply::Message(answer));
                });
            }
            Ok(Request::Diagnose {
                account,
                password,
                keepalive,
            }) => {
                let p = p.clone();
                handle.spawn(async move {
                    let progress = p.clone();
                    let answer = diagnose(account, password, keepalive, move |text| {
                        let _ = progress
                            .send_event(Reply::Message(json!({"op": "diagnosing", "text": text})));
                    })
                    .await;
                    let _ = p.send_event(Reply::Message(answer));
                });
            }
            Ok(Request::OpenHomepage) => {
                if let Err(e) = crate::platform::open_with_desktop(HOMEPAGE) {
                    tracing::warn!("cannot open {HOMEPAGE}: {e}");
                }
            }
            Ok(Request::Cancel) => reply(Reply::Close),
            Err(e) => tracing::warn!("settings page sent an unknown message: {e}"),
        }
    });
    let webview = crate::platform::desktop::build_webview(builder, &window);
    let webview = match webview {
        Ok(w) => w,
        Err(e) => return webview_unavailable(&runtime, &config_path, &e.to_string()),
    };

    event_loop.run(move |event, _, control_flow| {
        if *control_flow != ControlFlow::Exit {
            *control_flow = ControlFlow::Wait;
        }
        let _keep = (&runtime, &window);
        match event {
            Event::UserEvent(Reply::Message(v)) => {
                let _ = webview.evaluate_script(&format!("mailpulse.receive({v})"));
            }
            Event::UserEvent(Reply::Script(js)) => {
                let _ = webview.evaluate_script(&js);
            }
            Event::UserEvent(Reply::Close)
            | Event::WindowEvent {
                event: WindowEvent::CloseRequested,
                ..
            } => *control_flow = ControlFlow::Exit,
            _ => {}
        }
    })
}

fn load_message(path: &Path, page: Option<&str>) -> Value {
    let (config, error) = match Config::load(path) {
        Ok(c) => (c, None),
        Err(e) if !path.exists() => (
            Config::default(),
            Some(format!("No configuration yet ({e}); add an account.")),
        ),
        Err(e) => (
            Config::default(),
            Some(format!(
                "The configuration file has an error; fix it there first: {e}"
            )),
        ),
    };
    // Where each account's password comes from now, so the page can say so.
    let stored: BTreeMap<String, &str> = config
        .accounts
        .iter()
        .filter_map(|a| {
            if a.password_command.is_some() {
                Some((a.name.clone(), "command"))
            } else if a.auth.is_oauth() {
                crate::credentials::get_refresh_token(&a.username, &a.host)
                    .is_ok_and(|t| t.is_some())
                    .then(|| (a.name.clone(), "signed_in"))
            } else if crate::credentials::get_password(&a.username, &a.host)
                .is_ok_and(|p| p.is_some())
            {
                Some((a.name.clone(), "keyring"))
            } else {
                None
            }
        })
        .collect();
    // What the adaptive keep-alive learned for this network, per account (seconds).
    let learned: BTreeMap<String, u64> = match crate::fs::Dirs::platform() {
        Some(dirs) => {
            let memory = crate::engine::adaptive::Memory::open(&dirs.state_dir);
            let network = crate::platform::network_id();
            config
                .accounts
                .iter()
                .filter_map(|a| {
                    let server = format!("{}@{}:{}", a.username, a.host, a.effective_port());
                    memory
                        .get(&network, &server)
                        .map(|r| (a.name.clone(), r.interval_secs))
                })
                .collect()
        }
        None => BTreeMap::new(),
    };
    json!({
        "op": "load",
        "config": config,
        "stored": stored,
        "learned": learned,
        "error": error,
        "page": page,
        "version": env!("CARGO_PKG_VERSION"),
        "homepage": HOMEPAGE,
        "config_path": path.display().to_string(),
    })
}

/// Validate and save what the page sent; passwords go to the keyring, never into the file.
/// Save the page's settings. `base` is what the file held when the page loaded it (a change
/// another writer made since is kept unless the page changed the same setting); it becomes
/// what was written.
pub fn save(
    path: &Path,
    config: Value,
    passwords: &BTreeMap<String, String>,
    base: &mut Option<Config>,
) -> Value {
    let config: Config = match serde_json::from_value(config) {
        Ok(c) => c,
        Err(e) => {
            return json!({"op": "error", "message": format!("The settings could not be read: {e}")});
        }
    };
    if let Err((key, message)) = config.validate() {
        return json!({"op": "invalid", "key": key, "message": message});
    }
    for (name, password) in passwords {
        let Some(account) = config.account(name) else {
            continue;
        };
        if password.is_empty() {
            continue;
        }
        if let Err(e) = crate::credentials::set_password(&account.username, &account.host, password)
        {
            return json!({"op": "error", "message": format!("The password of {name:?} could not be stored: {e}")});
        }
    }
    let written = match base.as_ref() {
        Some(b) => config.save_merged_since(path, b),
        None => config.save_merged(path).map(|()| config.clone()),
    };
    let config = match written {
        Ok(c) => c,
        Err(e) => return json!({"op": "error", "message": e.to_string()}),
    };
    *base = Some(config.clone());
    // Start at login follows the switch (the tray does the same when it reloads).
    let result = if config.desktop.start_at_login && !config.accounts.is_empty() {
        crate::companion("mailpulse")
            .and_then(|exe| crate::platform::autostart::enable(&exe).map(|_| ()))
    } else if !config.desktop.start_at_login {
        crate::platform::autostart::disable()
    } else {
        Ok(())
    };
    if let Err(e) = result {
        tracing::warn!("cannot change start at login: {e}");
    }
    json!({"op": "saved"})
}

/// Store the proxy's password in the keyring, for the user its URL names.
pub fn store_proxy_password(
    setting: &crate::config::ProxySetting,
    password: &str,
) -> Result<(), String> {
    let crate::config::ProxySetting::Manual(url) = setting else {
        return Err(
            "A proxy password is kept for a proxy entered here (\"This proxy\"), with its user."
                .into(),
        );
    };
    let Some(user) = &url.username else {
        return Err("Enter the proxy's user for its password.".into());
    };
    crate::credentials::set_password(user, &url.keyring_host(), password)
        .map_err(|e| format!("The proxy password could not be stored: {e}"))
}

/// "Sign in with …": the same flow as `mailpulse signin` (the browser opened by the desktop's
/// opener), its address and then its result shown in the page.
async fn sign_in(account: Value, proxy: tao::event_loop::EventLoopProxy<Reply>) -> Value {
    let fail = |name: &str, text: String| json!({"op": "signed_in", "ok": false, "account": name, "text": text});
    let account = match form_account(account) {
        Ok(a) => a,
        Err(text) => return fail("", text),
    };
    if let Err(text) = check_form(&account, &KeepAlive::default()) {
        return fail(&account.name, text);
    }
    let name = account.name.clone();
    let result = crate::oauth::sign_in_account(&account, true, move |url| {
        let _ = proxy.send_event(Reply::Message(json!({"op": "signin_url", "url": url})));
    })
    .await;
    match result {
        Ok(text) => json!({"op": "signed_in", "ok": true, "account": name, "text": text}),
        Err(text) => fail(&name, text),
    }
}

/// The account as the page has it (possibly unsaved), or the sentence saying it is incomplete.
fn form_account(account: Value) -> Result<Account, String> {
    serde_json::from_value(account).map_err(|e| format!("The account is incomplete: {e}"))
}

/// The form's account checked exactly as Save checks it (an `http://` EWS URL, a host that is
/// not the URL's, ... are refused), before anything is sent over the network.
fn check_form(account: &Account, keepalive: &KeepAlive) -> Result<(), String> {
    let check = Config {
        keepalive: keepalive.clone(),
        accounts: vec![account.clone()],
        ..Config::default()
    };
    check.validate().map_err(|(key, message)| {
        let key = key.trim_start_matches("accounts[0].");
        format!("{key}: {message}")
    })
}

/// The form's account for "Test connection" and "Diagnose network": checked as Save checks it,
/// and its host taken from url when only url names the server, so that the password found for
/// it (the keyring's `user@host`) is the one of the server it is sent to.
fn checked_account(account: Value, keepalive: &KeepAlive) -> Result<Account, String> {
    let mut account = form_account(account)?;
    check_form(&account, keepalive)?;
    account.derive_host();
    Ok(account)
}

/// The page's keep-alive settings, the defaults where it sent none.
fn form_keepalive(keepalive: Option<Value>) -> KeepAlive {
    keepalive
        .and_then(|k| serde_json::from_value(k).ok())
        .unwrap_or_default()
}

/// "Find server": the EWS URL from Autodiscover, answered in words.
pub async fn discover(account: Value, password: Option<String>) -> Value {
    let fail = |text: String| json!({"op": "discovered", "ok": false, "text": text});
    let mut account = match form_account(account) {
        Ok(a) => a,
        Err(text) => return fail(text),
    };
    // Checked as Save checks it; an account that names no server yet (what Find server is
    // for) is checked as the server autodiscover asks: the address's domain.
    let mut check = account.clone();
    if check.host.trim().is_empty() && check.url.is_none() {
        check.host = check
            .username
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .trim()
            .to_owned();
    }
    if let Err(text) = check_form(&check, &KeepAlive::default()) {
        return fail(text);
    }
    // A stored password is the one of the account's server (url's host when only url names
    // it): autodiscover asks that server, never another one with it.
    account.derive_host();
    let password = match password.filter(|p| !p.is_empty()) {
        Some(p) => Secret::new(p),
        None => match crate::secret::password(&account).await {
            Ok(p) => p,
            Err(e) => return fail(format!("Enter the password first ({})", e.message)),
        },
    };
    let server = Some(account.host.trim()).filter(|h| !h.is_empty());
    match crate::protocol::ews::autodiscover::discover(
        &account.username,
        &account.username,
        password,
        server,
        account.ca_file.clone(),
        account.proxy_setting(),
        KeepAlive::default().response_timeout(),
        account.auth,
    )
    .await
    {
        Ok(url) => {
            json!({"op": "discovered", "ok": true, "url": url, "text": format!("Found: {url}")})
        }
        Err(e) => fail(e.message),
    }
}

/// "Test connection": the last-item query, answered in words.
pub async fn test_connection(
    account: Value,
    password: Option<String>,
    keepalive: Option<Value>,
) -> Value {
    let fail = |text: String| json!({"op": "tested", "ok": false, "text": text});
    let keepalive = form_keepalive(keepalive);
    let account = match checked_account(account, &keepalive) {
        Ok(a) => a,
        Err(text) => return fail(text),
    };
    let connector = crate::protocol::connector(
        &account,
        &keepalive,
        password.filter(|p| !p.is_empty()).map(Secret::new),
    );
    let folder = account
        .folders
        .first()
        .cloned()
        .unwrap_or_else(|| "INBOX".into());
    let endpoint = format!("{}:{}", account.host, account.effective_port());
    let result = crate::protocol::newest_item(
        connector.as_ref(),
        &folder,
        &endpoint,
        keepalive.response_timeout(),
    )
    .await;
    match result {
        Ok((Some(item), info)) => json!({"op": "tested", "ok": true, "text": format!(
            "Connected. {folder} has {} messages; the newest is from {} — {}.",
            info.exists, item.from, if item.subject.is_empty() { "(no subject)" } else { &item.subject }
        )}),
        Ok((None, _)) => {
            json!({"op": "tested", "ok": true, "text": format!("Connected. {folder} is empty.")})
        }
        Err(e) => fail(format!("Failed: {e}")),
    }
}

/// "Diagnose network": how long this network keeps an idle connection to the account's
/// server, with progress in words; the same measurement as `mailpulse probe`.
pub async fn diagnose(
    account: Value,
    password: Option<String>,
    keepalive: Option<Value>,
    progress: impl Fn(String),
) -> Value {
    use crate::engine::adaptive;
    let fail = |text: String| json!({"op": "diagnosed", "ok": false, "text": text});
    let keepalive = form_keepalive(keepalive);
    let account = match checked_account(account, &keepalive) {
        Ok(a) => a,
        Err(text) => return fail(text),
    };
    let params = adaptive::Params {
        floor: std::time::Duration::from_secs(crate::config::MIN_INTERVAL_SECS),
        max: keepalive.adaptive_max(),
        response_timeout: keepalive.response_timeout(),
    };
    let password = password.filter(|p| !p.is_empty()).map(Secret::new);
    let connector = crate::protocol::connector(&account, &keepalive, password);
    let result = adaptive::measure(connector.as_ref(), params, None, |p| {
        if p.sample.is_some() {
            return;
        }
        progress(format!("{} — {}…", p.clock(), p.describe()));
    })
    .await;
    match result {
        Ok(outcome) => json!({"op": "diagnosed", "ok": true, "text": outcome.sentence()}),
        Err(e) => fail(format!(
            "Could not open a second connection to measure with: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_settings_page_may_send_messages() {
        // As the web views report it: the page loaded from a string.
        let uri: wry::http::Uri = "about:blank".parse().expect("wry's request URI");
        assert!(is_own_page(&uri.to_string()));
        assert!(is_own_page("about:blank#accounts"));
        for other in [
            "https://evil.example/",
            "http://127.0.0.1:8080/settings",
            "file:///tmp/page.html",
            "data:text/html,<script>ipc.postMessage('{}')</script>",
            "about:blankx",
            "about:srcdoc",
            "mailpulse://settings/",
            "",
        ] {
            assert!(!is_own_page(other), "{other}");
        }
    }

    #[test]
    fn the_window_never_navigates_away_and_web_links_go_to_the_browser() {
        assert_eq!(navigation("about:blank"), Navigation::Allow);
        assert_eq!(navigation("about:blank#about"), Navigation::Allow);
        assert_eq!(navigation("https://evil.example/x"), Navigation::Browser);
        assert_eq!(navigation("HTTP://evil.example/x"), Navigation::Browser);
        for refused in [
            "file:///etc/passwd",
            "data:text/html,hi",
            "javascript:alert(1)",
            "blob:null/123",
            "about:srcdoc",
            "ftp://example.org/",
        ] {
            assert_eq!(navigation(refused), Navigation::Refuse, "{refused}");
        }
    }
}
