//! Configuration: the TOML file, its validation and its atomic saving.
//!
//! Every error names the file, the line and column, and the key (`accounts[0].port`), so that a
//! user can find and fix it; a config that does not validate is never applied (the caller keeps
//! the last good one).

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fs::write_atomic;

// Editing the file in place serves the settings window and the tray only.
#[cfg_attr(not(feature = "desktop"), allow(dead_code))]
mod edit;
mod locate;
mod proxy;
#[cfg(test)]
mod tests;
mod validate;

use locate::{invalid, key_at, span_of};
pub use proxy::{ProxyKind, ProxySetting, ProxyUrl};
pub use validate::distinguished_folder;

/// The shortest keep-alive interval the patent (and every sane server) allows.
pub const MIN_INTERVAL_SECS: u64 = 30;
/// RFC 2177: a client must re-issue IDLE at least every 29 minutes.
pub const MAX_INTERVAL_SECS: u64 = 29 * 60;

/// The commented example shipped in `config/mailpulse.toml`.
#[cfg_attr(not(feature = "desktop"), allow(dead_code))] // used by the desktop shell
pub const EXAMPLE: &str = include_str!("../../config/mailpulse.toml");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub keepalive: KeepAlive,
    pub logging: Logging,
    pub notifications: Notifications,
    pub desktop: Desktop,
    pub network: Network,
    pub accounts: Vec<Account>,
}

/// `[network]`: how connections leave this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// "system" (the default: the OS's proxy settings and the usual environment variables),
    /// "none", or a proxy URL (`http://host:port`, `socks5://host:port`); an account's own
    /// `proxy` overrides it.
    pub proxy: ProxySetting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Desktop {
    /// Start the tray at login (switched on when the first account is added).
    pub start_at_login: bool,
}

impl Default for Desktop {
    fn default() -> Self {
        Desktop {
            start_at_login: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepAlive {
    /// The patent's "Enable Firewall Keep-Alive".
    pub enabled: bool,
    /// Seconds between keep-alive queries (30 ..= 1740).
    pub interval_secs: u64,
    /// A keep-alive (or any) answer later than this means the connection is dead.
    pub response_timeout_secs: u64,
    /// Check every connection at once when the network changes or the machine resumes
    /// (read at start).
    pub check_on_wake: bool,
    /// Learn how long this network keeps idle connections (on a second, idle probe
    /// connection) and run the keep-alive just below that; `interval_secs` is then the floor.
    pub adaptive: bool,
    /// The longest idle time the adaptive search tries (default and at most 29 minutes, at
    /// least `interval_secs`). Mainly for tests and `mailpulse probe --max`.
    #[serde(skip_serializing_if = "is_default_adaptive_max")]
    pub adaptive_max_secs: u64,
}

fn is_default_adaptive_max(v: &u64) -> bool {
    *v == MAX_INTERVAL_SECS
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            enabled: true,
            interval_secs: 60,
            response_timeout_secs: 20,
            check_on_wake: true,
            adaptive: false,
            adaptive_max_secs: MAX_INTERVAL_SECS,
        }
    }
}

impl KeepAlive {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs)
    }
    /// The longest idle time the adaptive search tries.
    pub fn adaptive_max(&self) -> Duration {
        Duration::from_secs(self.adaptive_max_secs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// Write a rolling log file in the platform's log directory.
    pub enabled: bool,
    pub level: LogLevel,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            enabled: false,
            level: LogLevel::Info,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    /// Show connection errors as notifications (after `error_grace_secs`).
    pub show_errors: bool,
    /// Most drops heal in seconds: only failures lasting longer than this are shown.
    pub error_grace_secs: u64,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            show_errors: true,
            error_grace_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Imap,
    Ews,
    /// Microsoft Graph (Microsoft 365): REST over HTTPS with an OAuth2 bearer token.
    Graph,
}

/// Microsoft Graph's global endpoint (national clouds and test servers set `url`).
pub const GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS (port 993).
    #[default]
    Tls,
    /// Plaintext connection upgraded with STARTTLS before login (port 143).
    Starttls,
    /// No encryption at all. Only when written out explicitly.
    Plain,
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Tls => "tls",
            Security::Starttls => "starttls",
            Security::Plain => "plain",
        })
    }
}

/// How an account authenticates to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// IMAP `LOGIN` with a password.
    #[default]
    Password,
    /// SASL XOAUTH2 (Google's and Microsoft's) with an OAuth2 access token.
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628) with an OAuth2 access token.
    Oauthbearer,
    /// EWS only: HTTP Basic with the password (`"password"` picks Basic or NTLM from what the
    /// server offers in `WWW-Authenticate`).
    Basic,
    /// EWS only: NTLM with the password (on-premises Exchange).
    Ntlm,
    /// EWS only: `Authorization: Bearer` with an OAuth2 access token (Exchange Online), from
    /// `password_command` or the built-in sign-in.
    Bearer,
}

impl AuthMethod {
    /// Authenticates with an OAuth2 access token (not a password).
    pub fn is_oauth(self) -> bool {
        matches!(
            self,
            AuthMethod::Xoauth2 | AuthMethod::Oauthbearer | AuthMethod::Bearer
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Xoauth2 => "xoauth2",
            AuthMethod::Oauthbearer => "oauthbearer",
            AuthMethod::Basic => "basic",
            AuthMethod::Ntlm => "ntlm",
            AuthMethod::Bearer => "bearer",
        }
    }
}

/// Whose OAuth2 endpoints and scopes to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OAuthProvider {
    /// Gmail / Google Workspace.
    #[default]
    Google,
    /// Microsoft 365 / Outlook.com (Microsoft identity platform v2).
    Microsoft,
    /// Any other provider: `authorization_url`, `token_url` and `scopes` are required.
    Generic,
}

/// `[accounts.oauth]`: the built-in sign-in (`mailpulse signin`). Never holds a secret: the
/// client secret (where a provider wants one) comes from `client_secret_command`, the refresh
/// token lives in the OS keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OAuth {
    #[serde(default)]
    pub provider: OAuthProvider,
    /// The client (application) id registered with the provider.
    pub client_id: String,
    /// A command printing the client secret (Google's desktop clients have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_command: Option<String>,
    /// Microsoft only: the tenant ("common", "organizations", "consumers", or a tenant id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Overrides the preset's authorization endpoint (required for "generic").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// Overrides the preset's token endpoint (required for "generic").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// Overrides the preset's scopes (required for "generic").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Only here to refuse it: secrets never live in the file.
    #[serde(default, skip_serializing)]
    client_secret: Option<Refused>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub name: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// The server's name. For EWS it may be left out when `url` is given, for Graph always (it
    /// is then taken from the URL, and names the account's keyring entry).
    #[serde(default)]
    pub host: String,
    /// EWS: the endpoint, by default `https://{host}/EWS/Exchange.asmx`; Graph: the service
    /// root, by default `https://graph.microsoft.com/v1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: Security,
    pub username: String,
    /// "password" (LOGIN), "xoauth2" or "oauthbearer" (SASL with an OAuth2 access token).
    #[serde(default, skip_serializing_if = "is_password")]
    pub auth: AuthMethod,
    /// The built-in OAuth2 sign-in; with `auth = "xoauth2"`/`"oauthbearer"` and no
    /// `password_command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuth>,
    /// A command whose standard output (trimmed) is the password (or, with an OAuth2 `auth`,
    /// an access token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_command: Option<String>,
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    /// An extra trust anchor (PEM), added to the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A command run for every new message, with MAILPULSE_* variables in its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_new_mail: Option<String>,
    /// The mail client to open on a click on the tray icon or a toast (e.g. "thunderbird").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_command: Option<String>,
    /// Or the webmail to open in the browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webmail_url: Option<String>,
    /// This account's way out, if not `[network] proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySetting>,
    /// `[network] proxy`, copied here when the file is read: what applies without `proxy`.
    #[serde(skip)]
    pub(crate) network_proxy: ProxySetting,
    /// Only here to refuse it with a helpful message: passwords never live in the file.
    #[serde(default, skip_serializing)]
    password: Option<Refused>,
}

/// Accepts any value, only to be refused by validation (the value itself is never kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refused;

impl<'de> Deserialize<'de> for Refused {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Refused)
    }
}

fn is_password(a: &AuthMethod) -> bool {
    *a == AuthMethod::Password
}

fn default_folders() -> Vec<String> {
    vec!["INBOX".to_owned()]
}

impl Account {
    /// A minimal IMAP account (the rest at its defaults), for code that builds configs.
    pub fn new(name: &str, host: &str, username: &str) -> Account {
        Account {
            name: name.to_owned(),
            protocol: Protocol::Imap,
            host: host.to_owned(),
            url: None,
            port: None,
            security: Security::Tls,
            username: username.to_owned(),
            auth: AuthMethod::Password,
            oauth: None,
            password_command: None,
            folders: default_folders(),
            ca_file: None,
            on_new_mail: None,
            open_command: None,
            webmail_url: None,
            proxy: None,
            network_proxy: ProxySetting::System,
            password: None,
        }
    }

    /// The proxy setting that applies to this account: its own, or `[network] proxy`.
    pub fn proxy_setting(&self) -> &ProxySetting {
        self.proxy.as_ref().unwrap_or(&self.network_proxy)
    }

    /// Take `[network]`'s proxy as the one that applies without an own `proxy` (done when a
    /// file is read; code that builds accounts in memory calls it too).
    pub fn inherit(&mut self, network: &Network) {
        self.network_proxy = network.proxy.clone();
    }

    /// The port to connect to: the configured one, or the default for the security mode.
    pub fn effective_port(&self) -> u16 {
        if matches!(self.protocol, Protocol::Ews | Protocol::Graph) {
            return self
                .port
                .or_else(|| {
                    url::Url::parse(&self.http_url())
                        .ok()
                        .and_then(|u| u.port_or_known_default())
                })
                .unwrap_or(443);
        }
        self.port.unwrap_or(match self.security {
            Security::Tls => 993,
            Security::Starttls | Security::Plain => 143,
        })
    }
}

impl Account {
    /// EWS: the endpoint to POST to (`url`, or `https://{host}[:port]/EWS/Exchange.asmx`).
    pub fn ews_url(&self) -> String {
        if let Some(u) = &self.url {
            return u.clone();
        }
        match self.port {
            Some(p) => format!("https://{}:{p}/EWS/Exchange.asmx", self.host),
            None => format!("https://{}/EWS/Exchange.asmx", self.host),
        }
    }

    /// Graph: the service root (`url`, or Microsoft's global endpoint).
    pub fn graph_url(&self) -> String {
        self.url.clone().unwrap_or_else(|| GRAPH_URL.to_owned())
    }

    /// The URL of an HTTP-based account (EWS or Graph).
    pub fn http_url(&self) -> String {
        match self.protocol {
            Protocol::Graph => self.graph_url(),
            _ => self.ews_url(),
        }
    }

    /// EWS, Graph: fill `host` from `url` (Graph: or the default endpoint) when it is not given.
    pub(crate) fn derive_host(&mut self) {
        let url = match self.protocol {
            Protocol::Ews => self.url.clone(),
            Protocol::Graph => Some(self.graph_url()),
            Protocol::Imap => None,
        };
        if self.host.is_empty()
            && let Some(h) = url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_owned))
        {
            self.host = h.trim_start_matches('[').trim_end_matches(']').to_owned();
        }
    }
}

/// A configuration error that says where: file, line, column and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    #[cfg_attr(not(feature = "desktop"), allow(dead_code))] // used by the desktop shell
    Write { path: PathBuf, source: io::Error },
    #[error("{}", format_invalid(.path, *.line, *.column, .key, .message))]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        /// Dotted path of the offending key, e.g. `accounts[0].port`; empty for syntax errors.
        key: String,
        message: String,
    },
}

fn format_invalid(path: &Path, line: usize, column: usize, key: &str, message: &str) -> String {
    if key.is_empty() {
        format!("{}:{line}:{column}: {message}", path.display())
    } else {
        format!("{}:{line}:{column}: {key}: {message}", path.display())
    }
}

impl Config {
    /// Read and validate a config file. Relative `ca_file` paths are taken relative to the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for account in &mut config.accounts {
            if let Some(ca) = &account.ca_file
                && ca.is_relative()
            {
                account.ca_file = Some(base.join(ca));
            }
        }
        config.check_files(&text, path)?;
        Ok(config)
    }

    /// Parse and validate TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let doc = toml_edit::Document::parse(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            invalid(
                path,
                text,
                span,
                String::new(),
                e.message().trim().to_owned(),
            )
        })?;
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = key_at(&doc, span.start).unwrap_or_default();
            invalid(path, text, span, key, e.message().trim().to_owned())
        })?;
        if let Err((key, message)) = config.validate() {
            let span = span_of(&doc, &key).unwrap_or(0..0);
            return Err(invalid(path, text, span, key, message));
        }
        for a in &mut config.accounts {
            a.derive_host();
            a.inherit(&config.network);
        }
        Ok(config)
    }

    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// Serialise to TOML.
    #[cfg_attr(not(feature = "desktop"), allow(dead_code))] // used by the desktop shell
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serialises")
    }

    /// [`validate`](Self::validate) as a [`ConfigError`] about `path` (for in-memory configs
    /// about to be saved there: no line to point at).
    #[cfg_attr(not(feature = "desktop"), allow(dead_code))] // used by the desktop shell
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_owned(),
                line: 0,
                column: 0,
                key,
                message,
            })
    }
}
