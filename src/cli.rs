//! The command line: `mailpulse check` and `mailpulse watch` (headless), a contract that scripts
//! and later shells rely on. Exit codes: 0 ok, 2 configuration error, 3 connection/TLS/auth error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::config::{Config, ConfigError, MAX_INTERVAL_SECS, MIN_INTERVAL_SECS};
use crate::engine::{self, Store, adaptive};
use crate::event::{Command, Event, MailItem};
use crate::fs::Dirs;
use crate::platform::Signal;
use crate::protocol;

pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_CONNECT: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "mailpulse",
    version,
    about = "Keeps your mail connection alive through NAT gateways and firewalls, and tells you about new mail",
    long_about = None,
)]
pub struct Cli {
    /// Use this config file instead of the platform default (~/.config/mailpulse/config.toml on Linux).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Connect once, run the "last inbox item" query, print the newest message and exit.
    Check {
        /// Only this account (default: every account).
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Run the keep-alive engine without a GUI and print one line per event (SIGHUP reloads the
    /// config, SIGUSR1 checks every connection now).
    Watch {
        /// One JSON object per line, with a "type" field.
        #[arg(long)]
        json: bool,
    },
    /// Measure how long this network keeps an idle connection to an account's server (the
    /// adaptive keep-alive's measurement, on demand): progress on stderr, the result last.
    Probe {
        /// The account whose server to probe.
        #[arg(long, value_name = "NAME")]
        account: String,
        /// The longest idle time to try, in seconds (default and at most 1740, 29 minutes).
        #[arg(long, value_name = "SECONDS")]
        max: Option<u64>,
    },
    /// Open the settings window (the tray runs it as a child process).
    #[cfg(feature = "desktop")]
    Settings {
        /// Open at this section ("about").
        #[arg(long)]
        page: Option<String>,
    },
    /// Sign in to an OAuth2 account (auth = "xoauth2" or "oauthbearer" with [accounts.oauth]) in
    /// the browser; the sign-in (a refresh token) is kept in the OS keyring.
    Signin {
        #[arg(long, value_name = "NAME")]
        account: String,
        /// Only print the address to open, do not start the browser (e.g. on another machine).
        #[arg(long)]
        no_browser: bool,
    },
    /// Forget an account's OAuth2 sign-in (its refresh token in the OS keyring).
    Signout {
        #[arg(long, value_name = "NAME")]
        account: String,
    },
    /// Find an Exchange mailbox's EWS URL from its e-mail address (Autodiscover) and print the
    /// `url = ...` line for the account. The password is read from the terminal (or one line of
    /// standard input) and used only for this.
    Discover {
        /// The mailbox's e-mail address.
        email: String,
        /// The user name to log in with, if not the address (e.g. CORP\alice).
        #[arg(long, value_name = "NAME")]
        username: Option<String>,
        /// Ask this server (HOST[:PORT]) instead of the address's domain and autodiscover.DOMAIN.
        #[arg(long, value_name = "HOST")]
        server: Option<String>,
        /// An extra certificate authority (PEM) to trust.
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
        /// Send the password with Basic authentication if the server offers nothing else (as
        /// `auth = "basic"` does). Without it, only NTLM or Negotiate carry the password.
        #[arg(long)]
        basic: bool,
    },
    /// Store or remove an account's password in the OS keyring.
    Password {
        #[command(subcommand)]
        action: PasswordAction,
    },
    /// Start mailpulse at login, or not (the entry Settings' "Start at login" writes: an XDG
    /// autostart file, a LaunchAgent, or the `Run` key). `on`/`off` also set `start_at_login`
    /// in the config, so that the tray keeps the choice.
    Autostart {
        #[arg(value_enum, default_value = "status")]
        action: AutostartAction,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AutostartAction {
    On,
    Off,
    Status,
}

#[derive(Debug, Subcommand)]
pub enum PasswordAction {
    /// Read the password from the terminal (without echo; or one line from standard input) and
    /// store it in the keyring.
    Set {
        #[arg(long, value_name = "NAME", required_unless_present = "proxy")]
        account: Option<String>,
        /// The password of the proxy (`[network] proxy`, or the account's own `proxy`), for
        /// the user named in its URL.
        #[arg(long)]
        proxy: bool,
    },
    /// Remove the account's password from the keyring.
    Delete {
        #[arg(long, value_name = "NAME", required_unless_present = "proxy")]
        account: Option<String>,
        #[arg(long)]
        proxy: bool,
    },
}

/// `mailpulse discover EMAIL`.
pub async fn discover(
    config_path: Option<&Path>,
    email: &str,
    username: Option<&str>,
    server: Option<&str>,
    ca_file: Option<&Path>,
    basic: bool,
) -> ExitCode {
    let username = username.unwrap_or(email);
    let password = match crate::credentials::read_password(&format!("Password for {username}: ")) {
        Ok(pw) => crate::secret::Secret::new(pw),
        Err(e) => {
            eprintln!("mailpulse: cannot read the password: {e}");
            return ExitCode::from(1);
        }
    };
    let timeout = crate::config::KeepAlive::default().response_timeout();
    // The way out of this network is the config's, when there is one.
    let proxy = config_path
        .and_then(|p| Config::load(p).ok())
        .map(|c| c.network.proxy)
        .unwrap_or_default();
    let auth = if basic {
        crate::config::AuthMethod::Basic
    } else {
        crate::config::AuthMethod::Password
    };
    match protocol::ews::autodiscover::discover(
        email,
        username,
        password,
        server,
        ca_file.map(Path::to_path_buf),
        &proxy,
        timeout,
        auth,
    )
    .await
    {
        Ok(url) => {
            println!("url = \"{}\"", term(&url));
            eprintln!(
                "mailpulse: put this line into the account (protocol = \"ews\", username = \"{username}\")"
            );
            if exchange_online(&url) {
                eprintln!(
                    "mailpulse: this is Exchange Online, which blocks EWS for apps not on the \
                     tenant's allow list since October 2026 and switches it off in April 2027: \
                     use protocol = \"graph\" (or IMAP with auth = \"xoauth2\") instead"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailpulse: {}", term(e));
            ExitCode::from(EXIT_CONNECT)
        }
    }
}

/// Read a password from the terminal (or a line of standard input) and store it in the keyring
/// as `user@host`; an empty or unreadable one is the exit code.
fn read_and_store(
    prompt: &str,
    user: &str,
    host: &str,
) -> Result<Result<&'static str, crate::credentials::CredentialError>, ExitCode> {
    match crate::credentials::read_password(prompt) {
        Ok(pw) if !pw.is_empty() => {
            Ok(crate::credentials::set_password(user, host, &pw).map(|()| "stored in"))
        }
        Ok(_) => {
            eprintln!("mailpulse: empty password, nothing stored");
            Err(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("mailpulse: cannot read the password: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// `mailpulse password set|delete --proxy [--account NAME]`: the proxy's password in the
/// keyring, for the user its URL names.
fn proxy_password(config_path: Option<&Path>, account: Option<&str>, set: bool) -> ExitCode {
    let (config, setting) = match account {
        Some(name) => match load_account(config_path, name) {
            Ok((config, a)) => {
                let s = a.proxy_setting().clone();
                (config, s)
            }
            Err(code) => return code,
        },
        None => match load(config_path) {
            Ok(config) => {
                let s = config.network.proxy.clone();
                (config, s)
            }
            Err(e) => {
                eprintln!("mailpulse: {}", term(e));
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    drop(config);
    let crate::config::ProxySetting::Manual(url) = setting else {
        eprintln!(
            "mailpulse: the proxy setting is \"{}\": a password is stored for a proxy              named with its user, e.g. [network] proxy = \"http://USER@proxy.example.com:3128\"              (with \"system\", the system's settings or the URL in HTTPS_PROXY carry it)",
            setting
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let Some(user) = url.username.clone() else {
        eprintln!(
            "mailpulse: the proxy {url} names no user: write it into the URL              (\"{}://USER@{}\") first",
            url.kind.scheme(),
            url.endpoint()
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let result = if set {
        match read_and_store(
            &format!("Password for {user} at the proxy {}: ", url.endpoint()),
            &user,
            &url.keyring_host(),
        ) {
            Ok(stored) => stored,
            Err(code) => return code,
        }
    } else {
        crate::credentials::delete_password(&user, &url.keyring_host()).map(|()| "removed from")
    };
    match result {
        Ok(what) => {
            eprintln!(
                "Password of {user} at the proxy {} {what} the keyring.",
                url.endpoint()
            );
            if Dirs::platform()
                .is_some_and(|d| crate::platform::tell_credentials_changed(&d.state_dir))
            {
                eprintln!("The running mailpulse uses it from now on.");
            } else {
                eprintln!("A running `mailpulse watch` uses it within a minute.");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailpulse: {}", term(e));
            ExitCode::from(1)
        }
    }
}

/// Whether an EWS URL is Exchange Online's (Microsoft 365, also its national clouds).
fn exchange_online(url: &str) -> bool {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    [
        "outlook.office365.com",
        "outlook.office.com",
        "outlook.office365.us",
        "partner.outlook.cn",
    ]
    .iter()
    .any(|h| host == *h || host.ends_with(&format!(".{h}")))
}

/// `mailpulse password set|delete`.
pub fn password(config_path: Option<&Path>, action: &PasswordAction) -> ExitCode {
    let (name, proxy) = match action {
        PasswordAction::Set { account, proxy } | PasswordAction::Delete { account, proxy } => {
            (account.as_deref(), *proxy)
        }
    };
    if proxy {
        return proxy_password(
            config_path,
            name,
            matches!(action, PasswordAction::Set { .. }),
        );
    }
    let Some(name) = name else {
        eprintln!("mailpulse: name the account with --account NAME");
        return ExitCode::from(EXIT_CONFIG);
    };
    let account = match load_account(config_path, name) {
        Ok((_, account)) => account,
        Err(code) => return code,
    };
    let result = match action {
        PasswordAction::Set { .. } => {
            let prompt = format!("Password for {} at {}: ", account.username, account.host);
            match read_and_store(&prompt, &account.username, &account.host) {
                Ok(stored) => stored,
                Err(code) => return code,
            }
        }
        PasswordAction::Delete { .. } => {
            crate::credentials::delete_password(&account.username, &account.host)
                .map(|()| "removed from")
        }
    };
    match result {
        Ok(what) => {
            eprintln!("Password of account {:?} {what} the keyring.", account.name);
            if account.password_command.is_some() {
                eprintln!("Note: this account has password_command set, which takes precedence.");
            } else if Dirs::platform()
                .is_some_and(|d| crate::platform::tell_credentials_changed(&d.state_dir))
            {
                eprintln!("The running mailpulse uses it from now on.");
            } else {
                eprintln!("A running `mailpulse watch` uses it within a minute.");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailpulse: {}", term(e));
            ExitCode::from(1)
        }
    }
}

/// `mailpulse signin`.
pub async fn signin(config_path: Option<&Path>, name: &str, no_browser: bool) -> ExitCode {
    let account = match load_account(config_path, name) {
        Ok((_, account)) => account,
        Err(code) => return code,
    };
    let label = account.name.clone();
    match crate::oauth::sign_in_account(&account, !no_browser, move |url| {
        println!(
            "To sign in to account {label:?}, open this address in your browser:\n\n  {url}\n"
        );
        if !no_browser {
            println!("(mailpulse tried to open it in your browser.)");
        }
        let _ = std::io::stdout().flush();
    })
    .await
    {
        Ok(message) => {
            println!("{}", term(message));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("mailpulse: {}", term(message));
            ExitCode::from(EXIT_CONNECT)
        }
    }
}

/// `mailpulse signout`.
pub fn signout(config_path: Option<&Path>, name: &str) -> ExitCode {
    let account = match load_account(config_path, name) {
        Ok((_, account)) => account,
        Err(code) => return code,
    };
    match crate::credentials::delete_refresh_token(&account.username, &account.host) {
        Ok(()) => {
            println!(
                "Signed out: the sign-in of account {:?} is no longer in the keyring. To take \
                 back mailpulse's access at the provider as well, remove it in your account's \
                 security settings.",
                account.name
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailpulse: {}", term(e));
            ExitCode::from(1)
        }
    }
}

/// `mailpulse autostart [on|off|status]`. The config is changed first (a broken one changes
/// nothing), then the OS's login entry.
pub fn autostart(config_path: Option<&Path>, action: AutostartAction) -> ExitCode {
    use crate::platform::autostart;
    let location = autostart::location()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no login entry location on this system".into());
    if action == AutostartAction::Status {
        let state = if autostart::is_enabled() {
            "on"
        } else if autostart::exists() {
            "off (switched off in the desktop's settings)"
        } else {
            "off"
        };
        println!("start at login: {state} ({location})");
        return ExitCode::SUCCESS;
    }
    let on = action == AutostartAction::On;
    if let Some(path) = config_path.filter(|p| p.exists())
        && let Err(e) = Config::edit_file(path, |doc| {
            doc["desktop"]["start_at_login"] = toml_edit::value(on);
        })
    {
        eprintln!("mailpulse: {e}; start at login left as it was");
        return ExitCode::from(EXIT_CONFIG);
    }
    let result = if on {
        crate::companion("mailpulse").and_then(|exe| autostart::enable(&exe).map(drop))
    } else {
        autostart::disable()
    };
    match result {
        Ok(()) => {
            println!(
                "start at login: {} ({location})",
                if on { "on" } else { "off" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailpulse: cannot change start at login ({location}): {e}");
            ExitCode::from(1)
        }
    }
}

pub fn config_path(cli: &Cli) -> Option<PathBuf> {
    cli.config
        .clone()
        .or_else(|| Dirs::platform().map(|d| d.config_file))
}

fn load(path: Option<&Path>) -> Result<Config, String> {
    let Some(path) = path else {
        return Err("cannot find the home directory; pass --config PATH".into());
    };
    Config::load(path).map_err(|e| match e {
        ConfigError::Read { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            format!(
                "no config file at {}; copy the commented example config/mailpulse.toml there \
             and add your account (or pass --config PATH)",
                path.display()
            )
        }
        other => other.to_string(),
    })
}

/// The message for an account name that is not in the config: it names the name, the file and
/// the accounts there are, so that a typo is fixed at once.
/// The named account of the config at `path`, or the exit code after saying what is wrong
/// (the file and line, or the accounts there are).
fn load_account(
    path: Option<&Path>,
    name: &str,
) -> Result<(Config, crate::config::Account), ExitCode> {
    let config = load(path).map_err(|e| {
        eprintln!("mailpulse: {}", term(e));
        ExitCode::from(EXIT_CONFIG)
    })?;
    let Some(account) = config.account(name).cloned() else {
        eprintln!("mailpulse: {}", unknown_account(&config, name, path));
        return Err(ExitCode::from(EXIT_CONFIG));
    };
    Ok((config, account))
}

fn unknown_account(config: &Config, name: &str, path: Option<&Path>) -> String {
    let file = path
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default();
    let known: Vec<String> = config
        .accounts
        .iter()
        .map(|a| format!("{:?}", a.name))
        .collect();
    if known.is_empty() {
        format!(
            "no account named {name:?}{file}: there are no accounts yet; add an [[accounts]] block"
        )
    } else {
        format!(
            "no account named {name:?}{file}; the accounts there are {}",
            known.join(", ")
        )
    }
}

/// `mailpulse check`.
pub async fn check(config_path: Option<&Path>, only: Option<&str>, as_json: bool) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailpulse: {}", term(e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Warnings (plain text on the wire, a Windows sign-in that fell back, …) on stderr; no file.
    let _log = crate::logging::init(&config.logging, None);
    let accounts: Vec<_> = config
        .accounts
        .iter()
        .filter(|a| only.is_none_or(|name| a.name == name))
        .collect();
    if accounts.is_empty() {
        match only {
            Some(name) => eprintln!("mailpulse: {}", unknown_account(&config, name, config_path)),
            None => eprintln!(
                "mailpulse: no accounts in {}; add an [[accounts]] block",
                config_path
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        }
        return ExitCode::from(EXIT_CONFIG);
    }
    let mut ok = true;
    let rt = config.keepalive.response_timeout();
    for account in accounts {
        let connector = protocol::connector(account, &config.keepalive, None);
        let endpoint = format!("{}:{}", account.host, account.effective_port());
        if !as_json {
            // Which way out: straight, or the proxy (and where its setting came from).
            let purpose = match account.protocol {
                crate::config::Protocol::Imap => crate::proxy::Purpose::Imap,
                _ if account.http_url().starts_with("http://") => crate::proxy::Purpose::Http,
                _ => crate::proxy::Purpose::Https,
            };
            let (setting, host, port) = (
                account.proxy_setting().clone(),
                account.host.clone(),
                account.effective_port(),
            );
            let route = tokio::task::spawn_blocking(move || {
                crate::proxy::describe(&setting, purpose, &host, port)
            })
            .await
            .unwrap_or_default();
            eprintln!(
                "{}: {} {}",
                term(&account.name),
                term(&endpoint),
                term(&route)
            );
        }
        for folder in &account.folders {
            let label = if account.folders.len() == 1 {
                account.name.clone()
            } else {
                format!("{}/{folder}", account.name)
            };
            let result = protocol::newest_item(connector.as_ref(), folder, &endpoint, rt).await;
            match result {
                Ok((item, info)) => {
                    if as_json {
                        let mut v = json!({
                            "account": account.name, "folder": folder,
                            "exists": info.exists, "uid_validity": info.uid_validity,
                        });
                        match &item {
                            Some(item) => merge(&mut v, item_json(item)),
                            None => merge(&mut v, json!({"empty": true})),
                        }
                        println!("{v}");
                    } else {
                        match &item {
                            Some(item) => println!("{label}: {}", item_text(item)),
                            None => println!("{label}: empty"),
                        }
                    }
                }
                Err(e) => {
                    ok = false;
                    if as_json {
                        println!(
                            "{}",
                            json!({"account": account.name, "folder": folder, "error": e.message, "kind": e.kind})
                        );
                    }
                    eprintln!("mailpulse: {}: {}", term(&label), term(e));
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CONNECT)
    }
}

/// `mailpulse probe`.
pub async fn probe(config_path: Option<&Path>, name: &str, max: Option<u64>) -> ExitCode {
    let (config, account) = match load_account(config_path, name) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let ka = &config.keepalive;
    let floor = MIN_INTERVAL_SECS;
    let max = max.unwrap_or(ka.adaptive_max_secs);
    if max < floor || max > MAX_INTERVAL_SECS {
        eprintln!("mailpulse: --max must be between {floor} and {MAX_INTERVAL_SECS} seconds");
        return ExitCode::from(EXIT_CONFIG);
    }
    let params = adaptive::Params {
        floor: std::time::Duration::from_secs(floor),
        max: std::time::Duration::from_secs(max),
        response_timeout: ka.response_timeout(),
    };
    let connector = crate::protocol::connector(&account, ka, None);
    eprintln!(
        "Probing {}:{} from this network: idle connections held for {floor} to {max} s, \
         then asked for an answer (each within {} s).",
        account.host,
        account.effective_port(),
        ka.response_timeout_secs
    );
    let result = adaptive::measure(connector.as_ref(), params, None, |p| {
        eprintln!("[{:>5}] {}", p.clock(), p.describe());
    })
    .await;
    match result {
        Ok(outcome) => {
            println!("{}", outcome.sentence());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailpulse: cannot open a connection to probe with: {e}");
            ExitCode::from(EXIT_CONNECT)
        }
    }
}

/// `mailpulse watch`.
pub async fn watch(config_path: Option<&Path>, as_json: bool) -> ExitCode {
    let mut config = match load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailpulse: {}", term(e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if config.accounts.is_empty() {
        eprintln!(
            "mailpulse: no accounts in {}; add an [[accounts]] block",
            config_path
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let dirs = Dirs::platform();
    let _log = crate::logging::init(&config.logging, dirs.as_ref().map(|d| d.log_dir.as_path()));
    let store = match &dirs {
        Some(d) => Store::open(&d.state_dir),
        None => Store::in_memory(),
    };
    let (engine, mut events) = engine::spawn(&config, protocol::default_factory(), store);
    if config.keepalive.check_on_wake {
        crate::wake::spawn(engine.commands());
    }
    let hooks = crate::hooks::Hooks::spawn();
    let mut out = Printer { as_json };
    let mut signals = crate::platform::Signals::new();
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                hooks.on_event(&config, &event);
                out.event(&event);
            }
            signal = signals.next() => match signal {
                Signal::Quit => break,
                Signal::CheckNow => engine.send(Command::CheckNow),
                Signal::Reload => match load(config_path) {
                    Ok(new) => {
                        // Logging first, so that a file log just switched on records the reload.
                        crate::logging::apply(&new.logging);
                        tracing::info!("configuration reloaded");
                        config = new.clone();
                        engine.send(Command::Reload(Box::new(new)));
                        out.line("reloaded", json!({"message": "configuration reloaded"}), "configuration reloaded".into());
                    }
                    Err(e) => out.line(
                        "error",
                        json!({"kind": "config", "message": e}),
                        format!("error (config): {e}; keeping the previous configuration"),
                    ),
                },
            }
        }
    }
    engine.shutdown().await;
    ExitCode::SUCCESS
}

struct Printer {
    as_json: bool,
}

impl Printer {
    fn line(&mut self, kind: &str, mut fields: Value, text: String) {
        let mut stdout = std::io::stdout().lock();
        let _ = if self.as_json {
            let mut v = json!({"type": kind, "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)});
            merge(&mut v, std::mem::take(&mut fields));
            writeln!(stdout, "{v}")
        } else {
            writeln!(stdout, "{}", term(text))
        };
        let _ = stdout.flush();
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::Connectivity { account, state } => self.line(
                "state",
                json!({"account": account, "state": state}),
                format!("state {account}: {state}"),
            ),
            Event::Connected {
                account,
                folder,
                exists,
                uid_validity,
            } => self.line(
                "connected",
                json!({"account": account, "folder": folder, "exists": exists, "uid_validity": uid_validity}),
                format!("connected {account}/{folder}: {exists} messages"),
            ),
            Event::NewMail {
                account,
                folder,
                uid_validity,
                item,
            } => {
                let mut v = json!({"account": account, "folder": folder, "uid_validity": uid_validity});
                merge(&mut v, item_json(item));
                self.line("new_mail", v, format!("new_mail {account}/{folder}: {}", item_text(item)))
            }
            Event::MissedMail {
                account,
                folder,
                count,
                newest,
                offline,
            } => {
                let mut v = json!({"account": account, "folder": folder, "count": count, "offline": offline});
                merge(&mut v, item_json(newest));
                let when = if *offline {
                    "while mailpulse was not running"
                } else {
                    "beyond those announced one by one"
                };
                self.line(
                    "missed_mail",
                    v,
                    format!(
                        "missed_mail {account}/{folder}: {count} new {when}; newest {}",
                        item_text(newest)
                    ),
                )
            }
            Event::KeepAlive {
                account,
                folder,
                round_trip,
            } => self.line(
                "keepalive",
                json!({"account": account, "folder": folder, "round_trip_ms": round_trip.as_secs_f64() * 1000.0}),
                format!("keepalive {account}/{folder}: {} ms", round_trip.as_millis()),
            ),
            Event::Error { account, kind, message } => self.line(
                "error",
                json!({"account": account, "kind": kind, "message": message}),
                format!("error {account} ({kind}): {message}"),
            ),
            Event::Recovered { account } => self.line(
                "recovered",
                json!({"account": account}),
                format!("recovered {account}: connection restored"),
            ),
            Event::Learned {
                account,
                network,
                interval,
                survived,
                failed,
                server_keepalive,
            } => self.line(
                "learned",
                json!({
                    "account": account, "network": network, "interval_secs": interval.as_secs(),
                    "survived_secs": survived.map(|d| d.as_secs()),
                    "failed_secs": failed.map(|d| d.as_secs()),
                    "server_keepalive": server_keepalive,
                }),
                format!(
                    "learned {account}: keep-alive every {} s on {network}",
                    interval.as_secs()
                ),
            ),
            Event::Relearning {
                account,
                network,
                interval,
            } => self.line(
                "relearning",
                json!({"account": account, "network": network, "interval_secs": interval.as_secs()}),
                format!(
                    "relearning {account}: the connection died at the learned interval; keep-alive every {} s while {network} is measured again",
                    interval.as_secs()
                ),
            ),
        }
    }
}

fn item_json(item: &MailItem) -> Value {
    json!({
        "uid": item.uid,
        "from": item.from,
        "subject": item.subject,
        "date": item.date.map(|d| d.to_rfc3339()),
        "seen": item.seen,
    })
}

fn item_text(item: &MailItem) -> String {
    format!(
        "uid={} from={:?} subject={:?} date={}",
        item.uid,
        item.from,
        item.subject,
        item.date
            .map(|d| d.to_rfc3339())
            .unwrap_or_else(|| "-".into())
    )
}

/// Text for a terminal: server answers, mail headers and URLs reach it through errors and
/// event lines, and a control character in them (an escape sequence) could rewrite what the
/// user sees or drive the terminal. Control characters other than line breaks and tabs, and
/// the bidirectional overrides that reorder text on screen, are shown escaped (`\u{1b}`).
pub fn term(text: impl std::fmt::Display) -> String {
    let text = text.to_string();
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return text;
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_online_urls_are_recognised() {
        assert!(exchange_online(
            "https://outlook.office365.com/EWS/Exchange.asmx"
        ));
        assert!(exchange_online(
            "https://OUTLOOK.OFFICE.COM/EWS/Exchange.asmx"
        ));
        assert!(!exchange_online(
            "https://mail.example.com/EWS/Exchange.asmx"
        ));
        assert!(!exchange_online(
            "https://outlook.office365.com.evil.example/EWS"
        ));
        assert!(!exchange_online("not a url"));
    }

    #[test]
    fn terminal_text_is_escaped() {
        assert_eq!(term("plain ünïcode\nline"), "plain ünïcode\nline");
        assert_eq!(term("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(term("x\u{202e}y"), "x\\u{202e}y");
    }
}
