//! The desktop shell: a thin adapter over the engine's [`Event`] stream and [`Command`] sender.
//! The GUI event loop (tao) owns the main thread — macOS requires it — and tokio runs the engine
//! and the notifier on a worker thread beside it. Engine → GUI through the event loop proxy,
//! GUI → engine through the engine's command sender.

pub mod notifier;
pub mod settings;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tao::event::{Event as TaoEvent, StartCause};
use tao::event_loop::{ControlFlow, EventLoopBuilder, EventLoopProxy};
use tokio::sync::mpsc::UnboundedSender;
use tray_icon::menu::{CheckMenuItem, Menu, MenuEvent, MenuId, MenuItem, PredefinedMenuItem};
use tray_icon::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};

use crate::config::Config;
use crate::engine::{self, EngineHandle, Store};
use crate::event::{Command, Event};
use crate::fs::Dirs;
use crate::icons::{self, IconState};
use crate::platform::{self, single_instance};
use crate::toasts::{ToastPolicy, ToastSettings};
use crate::tray_model::TrayModel;

/// Icon size handed to the panel (it scales; the drawing is made for it).
const ICON_SIZE: u32 = 32;

#[derive(Debug)]
enum UserEvent {
    Engine(Event),
    Menu(MenuId),
    TrayClicked,
    ToastClicked(Option<String>),
    OpenSettings,
    /// `mailpulse password set` stored or removed a password.
    CheckCredentials,
    SettingsClosed,
    /// The config file changed on disk (Settings' Apply, an editor, `mailpulse settings`).
    ConfigChanged,
    Quit,
}

mod ids {
    pub const KEEPALIVE: &str = "keepalive";
    pub const CHECK: &str = "check-now";
    pub const SETTINGS: &str = "settings";
    pub const LOG: &str = "open-log";
    pub const ABOUT: &str = "about";
    pub const QUIT: &str = "quit";
}

/// The text written on first run: the commented example, its sample account commented out.
pub fn first_run_config() -> String {
    let mut out = String::new();
    let mut in_accounts = false;
    for line in crate::config::EXAMPLE.lines() {
        if line.starts_with("[[accounts]]") {
            in_accounts = true;
            out.push_str("# Add accounts in Settings, or uncomment and edit this block:\n");
        }
        if in_accounts && !line.starts_with('#') && !line.is_empty() {
            out.push_str("# ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Run the tray agent until Quit. Call it from `main` before any other thread exists.
pub fn run(config_path: PathBuf) -> ExitCode {
    platform::desktop::prepare_tray_env();
    if !platform::desktop::have_display() {
        eprintln!(
            "mailpulse: no graphical session (DISPLAY and WAYLAND_DISPLAY are unset), so no tray.\n\
             Run `mailpulse watch` for the headless agent, or `mailpulse check` to test your accounts."
        );
        return ExitCode::from(1);
    }
    let Some(dirs) = Dirs::platform() else {
        eprintln!("mailpulse: cannot find the home directory");
        return ExitCode::from(1);
    };
    let event_loop = EventLoopBuilder::<UserEvent>::with_user_event().build();
    let proxy = event_loop.create_proxy();

    let p = proxy.clone();
    match single_instance::claim(&dirs.state_dir, move |request| {
        let _ = p.send_event(match request {
            single_instance::Request::OpenSettings => UserEvent::OpenSettings,
            single_instance::Request::CheckCredentials => UserEvent::CheckCredentials,
        });
    }) {
        Ok(single_instance::Claim::Forwarded) => {
            eprintln!("mailpulse is already running; asked it to open Settings.");
            return ExitCode::SUCCESS;
        }
        Ok(single_instance::Claim::First) => {}
        // One runs but does not answer: a second tray would double every toast.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("mailpulse: {e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("mailpulse: cannot check for another running instance ({e}); continuing")
        }
    }

    let mut open_settings_now = false;
    if !config_path.exists() {
        if let Err(e) = crate::fs::write_atomic(&config_path, first_run_config().as_bytes()) {
            eprintln!("mailpulse: cannot write {}: {e}", config_path.display());
        }
        open_settings_now = true;
    }
    let (config, config_error) = match Config::load(&config_path) {
        Ok(c) => (c, None),
        Err(e) => (Config::default(), Some(e.to_string())),
    };
    if config.accounts.is_empty() {
        open_settings_now = true;
    }
    let log = crate::logging::init(&config.logging, Some(&dirs.log_dir));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("mailpulse-engine")
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (engine, mut events) = {
        let _enter = runtime.enter();
        engine::spawn(
            &config,
            crate::protocol::default_factory(),
            Store::open(&dirs.state_dir),
        )
    };
    let hooks = {
        let _enter = runtime.enter();
        crate::hooks::Hooks::spawn()
    };
    let commands = engine.commands();
    if config.keepalive.check_on_wake {
        let _enter = runtime.enter();
        crate::wake::spawn(commands.clone());
    }
    let p = proxy.clone();
    runtime.spawn(async move {
        while let Some(event) = events.recv().await {
            if p.send_event(UserEvent::Engine(event)).is_err() {
                break;
            }
        }
    });
    let p = proxy.clone();
    runtime.spawn(async move {
        platform::desktop::termination().await;
        let _ = p.send_event(UserEvent::Quit);
    });
    let watcher = watch_config(&config_path, runtime.handle(), proxy.clone());
    let icon_file = write_app_icon(&dirs.state_dir);
    let p = proxy.clone();
    let notifier = notifier::spawn(runtime.handle(), icon_file, move |account| {
        let _ = p.send_event(UserEvent::ToastClicked(account));
    });
    let p = proxy.clone();
    MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
        let _ = p.send_event(UserEvent::Menu(e.id));
    }));
    let p = proxy.clone();
    TrayIconEvent::set_event_handler(Some(move |e: TrayIconEvent| {
        if let TrayIconEvent::Click {
            button: MouseButton::Left,
            button_state: MouseButtonState::Up,
            ..
        } = e
        {
            let _ = p.send_event(UserEvent::TrayClicked);
        }
    }));

    let mut model = TrayModel::new(
        config.accounts.iter().map(|a| a.name.clone()),
        config.keepalive.enabled,
    );
    model.general_error = config_error.clone();
    let loaded_text = std::fs::read_to_string(&config_path).ok();
    let mut app = App {
        loaded_text,
        _watcher: watcher,
        config_path,
        dirs,
        config,
        model,
        policy: ToastPolicy::new(ToastSettings::default()),
        notifier,
        hooks,
        commands,
        engine: Some(engine),
        runtime: Some(runtime),
        proxy,
        tray: None,
        keepalive_item: None,
        settings_open: false,
        shown_icon: None,
        _log: log,
    };
    app.policy.set_settings(app.toast_settings());
    app.sync_autostart();
    if let Some(e) = config_error {
        app.notify_config_error(&e);
    }

    event_loop.run(move |event, _, control_flow| {
        if *control_flow == ControlFlow::Exit {
            return;
        }
        *control_flow = match app.policy.next_deadline() {
            Some(at) => ControlFlow::WaitUntil(at.into_std()),
            None => ControlFlow::Wait,
        };
        match event {
            TaoEvent::NewEvents(StartCause::Init) => {
                app.build_tray();
                if open_settings_now {
                    app.open_settings(None);
                }
            }
            TaoEvent::NewEvents(StartCause::ResumeTimeReached { .. }) => {
                let actions = app.policy.tick(tokio::time::Instant::now());
                app.notifier.send(actions);
            }
            TaoEvent::UserEvent(e) => {
                let quit = app.handle(e);
                if quit {
                    app.shutdown();
                    *control_flow = ControlFlow::Exit;
                }
            }
            _ => {}
        }
    })
}

struct App {
    /// The file's text when it was last loaded or written by the tray itself: a change event
    /// for the same text (our own save, an editor touching the file) reloads nothing.
    loaded_text: Option<String>,
    _watcher: Option<notify::RecommendedWatcher>,
    config_path: PathBuf,
    dirs: Dirs,
    config: Config,
    model: TrayModel,
    policy: ToastPolicy,
    notifier: notifier::Notifier,
    /// `on_new_mail`, run as `watch` runs it.
    hooks: crate::hooks::Hooks,
    commands: UnboundedSender<Command>,
    engine: Option<EngineHandle>,
    runtime: Option<tokio::runtime::Runtime>,
    proxy: EventLoopProxy<UserEvent>,
    tray: Option<TrayIcon>,
    keepalive_item: Option<CheckMenuItem>,
    settings_open: bool,
    shown_icon: Option<IconState>,
    _log: crate::logging::LogGuard,
}

impl App {
    fn toast_settings(&self) -> ToastSettings {
        ToastSettings {
            show_errors: self.config.notifications.show_errors,
            error_grace: Duration::from_secs(self.config.notifications.error_grace_secs),
            name_accounts: self.config.accounts.len() > 1,
        }
    }

    fn build_tray(&mut self) {
        let keepalive = CheckMenuItem::with_id(
            ids::KEEPALIVE,
            "Keep-alive",
            true,
            self.model.keepalive(),
            None,
        );
        let menu = Menu::new();
        let items: [&dyn tray_icon::menu::IsMenuItem; 9] = [
            &keepalive,
            &MenuItem::with_id(ids::CHECK, "Check now", true, None),
            &PredefinedMenuItem::separator(),
            &MenuItem::with_id(ids::SETTINGS, "Settings…", true, None),
            &MenuItem::with_id(ids::LOG, "Open log", true, None),
            &MenuItem::with_id(ids::ABOUT, "About mailpulse", true, None),
            &PredefinedMenuItem::separator(),
            &MenuItem::with_id(ids::QUIT, "Quit", true, None),
            &PredefinedMenuItem::separator(),
        ];
        if let Err(e) = menu.append_items(&items[..8]) {
            tracing::warn!("cannot build the tray menu: {e}");
        }
        let state = self.model.icon();
        match TrayIconBuilder::new()
            .with_id("mailpulse")
            .with_title("mailpulse")
            .with_tooltip(self.model.tooltip())
            .with_icon(tray_icon_image(state))
            .with_menu(Box::new(menu))
            .build()
        {
            Ok(tray) => {
                self.tray = Some(tray);
                self.shown_icon = Some(state);
            }
            Err(e) => tracing::warn!("cannot show the tray icon: {e}"),
        }
        self.keepalive_item = Some(keepalive);
    }

    fn refresh_tray(&mut self) {
        let Some(tray) = &self.tray else { return };
        let state = self.model.icon();
        if self.shown_icon != Some(state) {
            let _ = tray.set_icon(Some(tray_icon_image(state)));
            self.shown_icon = Some(state);
        }
        let _ = tray.set_tooltip(Some(self.model.tooltip()));
        if let Some(item) = &self.keepalive_item {
            item.set_checked(self.model.keepalive());
        }
    }

    /// Handle one event; `true` means quit.
    fn handle(&mut self, event: UserEvent) -> bool {
        match event {
            UserEvent::Engine(e) => {
                self.hooks.on_event(&self.config, &e);
                self.model.apply(&e, chrono::Local::now());
                let actions = self.policy.on_event(&e, tokio::time::Instant::now());
                self.notifier.send(actions);
                self.refresh_tray();
            }
            UserEvent::Menu(id) => match id.as_ref() {
                ids::KEEPALIVE => self.set_keepalive(!self.model.keepalive()),
                ids::CHECK => {
                    let _ = self.commands.send(Command::CheckNow);
                }
                ids::SETTINGS => self.open_settings(None),
                ids::LOG => {
                    let _ = std::fs::create_dir_all(&self.dirs.log_dir);
                    open_thing(self.dirs.log_dir.as_os_str().to_string_lossy().as_ref());
                }
                ids::ABOUT => self.open_settings(Some("about")),
                ids::QUIT => return true,
                _ => {}
            },
            UserEvent::TrayClicked => self.open_client(None),
            UserEvent::ToastClicked(account) => self.open_client(account),
            UserEvent::OpenSettings => self.open_settings(None),
            UserEvent::CheckCredentials => {
                let _ = self.commands.send(Command::CheckCredentials);
            }
            UserEvent::SettingsClosed => {
                self.settings_open = false;
                // A password saved there goes to the keyring, not into the file: an account
                // whose logins are blocked after a rejected password looks again.
                let _ = self.commands.send(Command::CheckCredentials);
                // Usually reloaded already, when the watcher saw the save.
                self.reload_if_changed("the settings window closed");
            }
            UserEvent::ConfigChanged => self.reload_if_changed("the file changed on disk"),
            UserEvent::Quit => return true,
        }
        false
    }

    fn set_keepalive(&mut self, on: bool) {
        let _ = self.commands.send(Command::SetKeepAlive(on));
        self.model.set_keepalive(on);
        match Config::edit_file(&self.config_path, |doc| {
            doc["keepalive"]["enabled"] = toml_edit::value(on)
        }) {
            Ok(c) => {
                self.config = c;
                self.loaded_text = std::fs::read_to_string(&self.config_path).ok();
            }
            Err(e) => tracing::warn!("cannot save the keep-alive switch: {e}"),
        }
        self.refresh_tray();
    }

    /// Reload when the file's text differs from what was last loaded or written by the tray.
    fn reload_if_changed(&mut self, why: &str) {
        let text = std::fs::read_to_string(&self.config_path).ok();
        if text.is_some() && text != self.loaded_text {
            tracing::info!("{why}; reloading {}", self.config_path.display());
            self.reload();
        }
    }

    fn reload(&mut self) {
        // Remembered even when the text is broken: the error is shown once per version.
        self.loaded_text = std::fs::read_to_string(&self.config_path).ok();
        match Config::load(&self.config_path) {
            Ok(config) => {
                // Logging first, so that the file log (if just switched on) records the reload.
                crate::logging::apply(&config.logging);
                tracing::info!(
                    "configuration reloaded: {} account(s), keep-alive {} every {} s",
                    config.accounts.len(),
                    if config.keepalive.enabled {
                        "on"
                    } else {
                        "off"
                    },
                    config.keepalive.interval_secs
                );
                let _ = self
                    .commands
                    .send(Command::Reload(Box::new(config.clone())));
                self.model
                    .set_accounts(config.accounts.iter().map(|a| a.name.clone()));
                self.model.set_keepalive(config.keepalive.enabled);
                self.model.general_error = None;
                self.config = config;
                self.policy.set_settings(self.toast_settings());
                self.sync_autostart();
            }
            Err(e) => {
                // Keep running on the last good configuration.
                let message = format!("{e} (still using the previous settings)");
                tracing::warn!("{message}");
                self.notify_config_error(&message);
                self.model.general_error = Some(message);
            }
        }
        self.refresh_tray();
    }

    fn notify_config_error(&self, message: &str) {
        self.notifier.send(vec![crate::toasts::Action::Show {
            slot: u64::MAX,
            toast: crate::toasts::Toast {
                kind: crate::toasts::ToastKind::Error,
                summary: "mailpulse: the configuration has an error".into(),
                body: message.to_owned(),
                account: None,
            },
        }]);
    }

    /// Start at login: on once there is an account (unless switched off), off when switched off.
    /// An entry that the desktop's own tool switched off (GNOME's "Startup Applications" writes
    /// `X-GNOME-Autostart-enabled=false`) is the user's choice too, and is left as it is.
    fn sync_autostart(&self) {
        let want = self.config.desktop.start_at_login && !self.config.accounts.is_empty();
        let exists = crate::platform::autostart::exists();
        if want && !exists {
            match crate::companion("mailpulse") {
                Ok(exe) => {
                    if let Err(e) = crate::platform::autostart::enable(&exe) {
                        tracing::warn!("cannot set up start at login: {e}");
                    }
                }
                Err(e) => tracing::warn!("cannot find our own executable: {e}"),
            }
        } else if want && !crate::platform::autostart::is_enabled() {
            tracing::info!(
                "start at login was switched off in the desktop's settings; leaving it off"
            );
        } else if !self.config.desktop.start_at_login
            && exists
            && let Err(e) = crate::platform::autostart::disable()
        {
            tracing::warn!("cannot switch off start at login: {e}");
        }
    }

    /// Settings run as a short-lived child process (WebKit's memory is not given back otherwise).
    fn open_settings(&mut self, page: Option<&str>) {
        if self.settings_open {
            return;
        }
        let Ok(exe) = crate::companion("mailpulse-settings") else {
            return;
        };
        let mut cmd = std::process::Command::new(exe);
        crate::platform::restore_child_env(&mut cmd);
        cmd.arg("--config").arg(&self.config_path).arg("settings");
        if let Some(page) = page {
            cmd.arg("--page").arg(page);
        }
        match cmd.spawn() {
            Ok(mut child) => {
                self.settings_open = true;
                let p = self.proxy.clone();
                std::thread::spawn(move || {
                    let _ = child.wait();
                    let _ = p.send_event(UserEvent::SettingsClosed);
                });
            }
            Err(e) => tracing::warn!(
                "cannot open Settings ({}): {e}; it is installed beside mailpulse-tray",
                cmd.get_program().to_string_lossy()
            ),
        }
    }

    /// Open the account's mail client or webmail; Settings when none is configured.
    fn open_client(&mut self, account: Option<String>) {
        self.model.mark_read();
        self.refresh_tray();
        let candidates: Vec<_> = match &account {
            Some(name) => self.config.account(name).into_iter().collect(),
            None => self.config.accounts.iter().collect(),
        };
        for a in candidates {
            if let Some(cmd) = &a.open_command {
                if let Err(e) = crate::platform::spawn_reaped(crate::platform::shell_std(cmd)) {
                    tracing::warn!(account = %a.name, "cannot run open_command: {e}");
                }
                return;
            }
            if let Some(url) = &a.webmail_url {
                open_thing(url);
                return;
            }
        }
        self.open_settings(None);
    }

    fn shutdown(&mut self) {
        self.tray = None;
        if let (Some(engine), Some(runtime)) = (self.engine.take(), self.runtime.take()) {
            let limit = self.config.keepalive.response_timeout() + Duration::from_secs(2);
            runtime.block_on(async {
                let _ = tokio::time::timeout(limit, engine.shutdown()).await;
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn tray_icon_image(state: IconState) -> tray_icon::Icon {
    tray_icon::Icon::from_rgba(icons::render(state, ICON_SIZE), ICON_SIZE, ICON_SIZE)
        .expect("icon size matches")
}

/// Watch the config file and tell the GUI loop when it changed, 300 ms after the last event of
/// a burst (an atomic save is a create, a write and a rename; an editor may write in pieces).
/// The folder is watched, not the file: an atomic save replaces the file, and a watch on the old
/// one would see nothing after the first save. `None` (with a warning) when the platform
/// refuses a watch; closing the settings window still reloads then.
fn watch_config(
    path: &Path,
    runtime: &tokio::runtime::Handle,
    proxy: EventLoopProxy<UserEvent>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = path.parent()?.to_owned();
    let name = path.file_name()?.to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event.paths.iter().any(|p| p.file_name() == Some(&name))
        {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch the configuration for changes: {e}");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!("cannot watch {} for changes: {e}", dir.display());
        return None;
    }
    runtime.spawn(async move {
        while rx.recv().await.is_some() {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(300)) => break,
                    more = rx.recv() => if more.is_none() { return },
                }
            }
            if proxy.send_event(UserEvent::ConfigChanged).is_err() {
                return;
            }
        }
    });
    Some(watcher)
}

/// The application icon as a PNG file, for notifications (which want a path or a theme name).
fn write_app_icon(dir: &Path) -> Option<String> {
    let path = dir.join("mailpulse.png");
    let png = icons::png(IconState::Connected, 64);
    std::fs::create_dir_all(dir).ok()?;
    std::fs::write(&path, png).ok()?;
    Some(path.to_string_lossy().into_owned())
}

/// Open a folder or URL with the desktop's default handler.
fn open_thing(target: &str) {
    if let Err(e) = crate::platform::open_with_desktop(target) {
        tracing::warn!("cannot open {target}: {e}");
    }
}
