//! Configuration: the TOML file, its validation and its atomic saving.
//!
//! Every error names the file, the line and column, and the key (`accounts[0].port`), so that a
//! user can find and fix it; a config that does not validate is never applied (the caller keeps
//! the last good one).

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shortest keep-alive interval the patent (and every sane server) allows.
pub const MIN_INTERVAL_SECS: u64 = 30;
/// RFC 2177: a client must re-issue IDLE at least every 29 minutes.
pub const MAX_INTERVAL_SECS: u64 = 29 * 60;

/// The commented example shipped in `config/mailpulse.toml`.
pub const EXAMPLE: &str = include_str!("../config/mailpulse.toml");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub keepalive: KeepAlive,
    pub logging: Logging,
    pub notifications: Notifications,
    pub desktop: Desktop,
    pub accounts: Vec<Account>,
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
}

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
    /// The server's name. For EWS it may be left out when `url` is given (it is then taken
    /// from the URL, and names the account's keyring entry).
    #[serde(default)]
    pub host: String,
    /// EWS only: the endpoint, by default `https://{host}/EWS/Exchange.asmx`.
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
            password: None,
        }
    }

    /// The port to connect to: the configured one, or the default for the security mode.
    pub fn effective_port(&self) -> u16 {
        if self.protocol == Protocol::Ews {
            return self
                .port
                .or_else(|| {
                    url::Url::parse(&self.ews_url())
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

    /// EWS: fill `host` from `url` when only the URL was given.
    pub(crate) fn derive_host(&mut self) {
        if self.protocol == Protocol::Ews
            && self.host.is_empty()
            && let Some(h) = self
                .url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_owned))
        {
            self.host = h.trim_start_matches('[').trim_end_matches(']').to_owned();
        }
    }
}

/// The EWS-specific checks of one account (before the common ones).
fn validate_ews(a: &Account, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
    if a.protocol != Protocol::Ews {
        if a.url.is_some() {
            return Err((
                key("url"),
                "only used with protocol = \"ews\"; IMAP accounts name their server with host"
                    .into(),
            ));
        }
        if matches!(
            a.auth,
            AuthMethod::Basic | AuthMethod::Ntlm | AuthMethod::Bearer
        ) {
            return Err((
                key("auth"),
                format!(
                    "auth = \"{}\" is for protocol = \"ews\"; IMAP uses \"password\", \"xoauth2\" or \"oauthbearer\"",
                    a.auth.as_str()
                ),
            ));
        }
        return Ok(());
    }
    if matches!(a.auth, AuthMethod::Xoauth2 | AuthMethod::Oauthbearer) {
        return Err((
            key("auth"),
            format!(
                "auth = \"{}\" is an IMAP login; EWS takes \"password\" (Basic or NTLM, as the server offers), \"basic\", \"ntlm\" or \"bearer\"",
                a.auth.as_str()
            ),
        ));
    }
    if a.security != Security::Tls {
        return Err((
            key("security"),
            "EWS always runs over HTTPS: remove this line (the URL says where)".into(),
        ));
    }
    match &a.url {
        None if a.host.trim().is_empty() => {
            return Err((
                key("url"),
                "an EWS account needs url (e.g. \"https://mail.example.com/EWS/Exchange.asmx\") or host".into(),
            ));
        }
        None => {}
        Some(u) => {
            let parsed = url::Url::parse(u)
                .map_err(|e| (key("url"), format!("{u:?} is not a URL ({e})")))?;
            let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            match parsed.scheme() {
                "https" => {}
                "http" if loopback => {}
                _ => {
                    return Err((
                        key("url"),
                        format!(
                            "must start with https:// (EWS sends the password with every request): {u}"
                        ),
                    ));
                }
            }
            let Some(h) = parsed.host_str() else {
                return Err((key("url"), format!("{u:?} names no server")));
            };
            let h = h.trim_start_matches('[').trim_end_matches(']');
            if !a.host.is_empty() && !a.host.eq_ignore_ascii_case(h) {
                return Err((
                    key("host"),
                    format!("names {:?} but url names {h:?}: keep only url", a.host),
                ));
            }
            if a.port.is_some() {
                return Err((key("port"), "put the port into url instead".into()));
            }
        }
    }
    for f in &a.folders {
        if crate::protocol::ews::distinguished_folder(f).is_none() {
            return Err((
                key("folders"),
                format!(
                    "{f:?} is not an Exchange well-known folder; EWS accounts watch \"INBOX\" (or another well-known folder such as \"junkemail\")"
                ),
            ));
        }
    }
    Ok(())
}

/// The `auth` and `[accounts.oauth]` checks of one account.
fn validate_auth(a: &Account, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
    let Some(o) = &a.oauth else {
        if a.auth.is_oauth() && a.password_command.is_none() {
            return Err((
                key("auth"),
                format!(
                    "auth = \"{}\" needs a token source: either an [accounts.oauth] table \
                     (provider and client_id, then `mailpulse signin --account {}`), or a \
                     password_command that prints an access token",
                    a.auth.as_str(),
                    a.name
                ),
            ));
        }
        return Ok(());
    };
    if !a.auth.is_oauth() {
        return Err((
            key("oauth"),
            "OAuth2 settings need auth = \"xoauth2\" or auth = \"oauthbearer\" (\"bearer\" for \
             EWS); this account logs in with a password"
                .into(),
        ));
    }
    if o.client_secret.is_some() {
        return Err((
            key("oauth.client_secret"),
            "secrets are never stored in the config file: remove this line and set \
             client_secret_command (e.g. client_secret_command = \"pass show mail/client-secret\")"
                .into(),
        ));
    }
    if o.client_id.trim().is_empty() {
        return Err((
            key("oauth.client_id"),
            "must not be empty: register an application with your provider (see the README) and \
             put its client id here"
                .into(),
        ));
    }
    if let Some(cmd) = &o.client_secret_command
        && cmd.trim().is_empty()
    {
        return Err((
            key("oauth.client_secret_command"),
            "must not be empty".into(),
        ));
    }
    if let Some(t) = &o.tenant {
        if o.provider != OAuthProvider::Microsoft {
            return Err((
                key("oauth.tenant"),
                "only used with provider = \"microsoft\"".into(),
            ));
        }
        if t.is_empty()
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
        {
            return Err((
                key("oauth.tenant"),
                format!("{t:?} is not a tenant name or id"),
            ));
        }
    }
    for (name, url) in [
        ("authorization_url", &o.authorization_url),
        ("token_url", &o.token_url),
    ] {
        match url {
            None if o.provider == OAuthProvider::Generic => {
                return Err((
                    key(&format!("oauth.{name}")),
                    "is required with provider = \"generic\"".into(),
                ));
            }
            None => {}
            Some(u) => {
                if let Err(m) = check_endpoint(u) {
                    return Err((key(&format!("oauth.{name}")), m));
                }
            }
        }
    }
    match &o.scopes {
        None if o.provider == OAuthProvider::Generic => {
            return Err((
                key("oauth.scopes"),
                "is required with provider = \"generic\" (e.g. [\"imap\", \"offline_access\"])"
                    .into(),
            ));
        }
        Some(s) if s.is_empty() || s.iter().any(|x| x.is_empty() || x.contains(' ')) => {
            return Err((
                key("oauth.scopes"),
                "name at least one scope, each without spaces".into(),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// An OAuth2 endpoint must be https, except on this machine (RFC 8252 loopback, tests).
fn check_endpoint(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL ({e})"))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "must start with https:// (plain http only for 127.0.0.1 or localhost): {u}"
        )),
    }
}

/// A configuration error that says where: file, line, column and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
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
        }
        Ok(config)
    }

    /// Semantic checks; returns the key path and a message for the first problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let ka = &self.keepalive;
        if ka.interval_secs < MIN_INTERVAL_SECS || ka.interval_secs > MAX_INTERVAL_SECS {
            return Err((
                "keepalive.interval_secs".into(),
                format!(
                    "must be between {MIN_INTERVAL_SECS} and {MAX_INTERVAL_SECS} seconds (got {}); \
                     servers drop IDLE sessions after 30 minutes",
                    ka.interval_secs
                ),
            ));
        }
        if ka.adaptive_max_secs < ka.interval_secs || ka.adaptive_max_secs > MAX_INTERVAL_SECS {
            return Err((
                "keepalive.adaptive_max_secs".into(),
                format!(
                    "must be between interval_secs ({}) and {MAX_INTERVAL_SECS} seconds (got {})",
                    ka.interval_secs, ka.adaptive_max_secs
                ),
            ));
        }
        if ka.response_timeout_secs == 0 || ka.response_timeout_secs > 300 {
            return Err((
                "keepalive.response_timeout_secs".into(),
                format!(
                    "must be between 1 and 300 seconds (got {})",
                    ka.response_timeout_secs
                ),
            ));
        }
        if self.notifications.error_grace_secs > 86_400 {
            return Err((
                "notifications.error_grace_secs".into(),
                "must be at most 86400 seconds (one day)".into(),
            ));
        }
        let mut names = HashSet::new();
        for (i, a) in self.accounts.iter().enumerate() {
            let key = |k: &str| format!("accounts[{i}].{k}");
            if a.password.is_some() {
                return Err((
                    key("password"),
                    "passwords are never stored in the config file: remove this line and set \
                     password_command (e.g. password_command = \"pass show mail/work\"), or store \
                     the password with `mailpulse password set --account NAME`"
                        .into(),
                ));
            }
            if a.name.trim().is_empty() {
                return Err((key("name"), "must not be empty".into()));
            }
            if !names.insert(a.name.as_str()) {
                return Err((
                    key("name"),
                    format!("another account is already called {:?}", a.name),
                ));
            }
            validate_ews(a, &key)?;
            let url_only = a.protocol == Protocol::Ews && a.url.is_some() && a.host.is_empty();
            if !url_only && (a.host.trim().is_empty() || a.host.chars().any(char::is_whitespace)) {
                return Err((key("host"), format!("{:?} is not a host name", a.host)));
            }
            if a.port == Some(0) {
                return Err((key("port"), "must be between 1 and 65535".into()));
            }
            if a.username.is_empty() {
                return Err((key("username"), "must not be empty".into()));
            }
            if let Some(cmd) = &a.password_command
                && cmd.trim().is_empty()
            {
                return Err((key("password_command"), "must not be empty".into()));
            }
            validate_auth(a, &key)?;
            if a.folders.is_empty() {
                return Err((
                    key("folders"),
                    "name at least one folder, e.g. [\"INBOX\"]".into(),
                ));
            }
            if let Some(url) = &a.webmail_url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err((
                    key("webmail_url"),
                    "must start with https:// or http://".into(),
                ));
            }
            if a.folders.iter().any(|f| f.trim().is_empty()) {
                return Err((key("folders"), "folder names must not be empty".into()));
            }
        }
        Ok(())
    }

    /// Checks that need the file system (done on load, not on in-memory edits).
    fn check_files(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        for (i, a) in self.accounts.iter().enumerate() {
            if let Some(ca) = &a.ca_file
                && !ca.is_file()
            {
                let key = format!("accounts[{i}].ca_file");
                let span = toml_edit::Document::parse(text)
                    .ok()
                    .and_then(|doc| span_of(&doc, &key))
                    .unwrap_or(0..0);
                return Err(invalid(
                    path,
                    text,
                    span,
                    key,
                    format!("{} does not exist or is not a file", ca.display()),
                ));
            }
        }
        Ok(())
    }

    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// Serialise to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serialises")
    }

    /// [`validate`](Self::validate) as a [`ConfigError`] about `path` (for in-memory configs
    /// about to be saved there: no line to point at).
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

    /// Validate, then write atomically (temp file, fsync, rename) with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        self.check(path)?;
        write_atomic(path, self.to_toml().as_bytes()).map_err(|source| ConfigError::Write {
            path: path.to_owned(),
            source,
        })
    }
}

impl Config {
    /// Change the file in place, keeping its comments and layout: parse it, apply `edit`,
    /// validate the result, then write it atomically. The file is unchanged on any error.
    pub fn edit_file(
        path: &Path,
        edit: impl FnOnce(&mut toml_edit::DocumentMut),
    ) -> Result<Config, ConfigError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            let span = e.span().unwrap_or(0..0);
            invalid(
                path,
                &text,
                span,
                String::new(),
                e.message().trim().to_owned(),
            )
        })?;
        edit(&mut doc);
        let new_text = doc.to_string();
        let config = Config::parse(&new_text, path)?;
        write_atomic(path, new_text.as_bytes()).map_err(|source| ConfigError::Write {
            path: path.to_owned(),
            source,
        })?;
        Ok(config)
    }

    /// Save this config over `path`, keeping the comments of the settings that stay (the
    /// accounts are rewritten as a whole). Validated first; atomic; mode 0600.
    pub fn save_merged(&self, path: &Path) -> Result<(), ConfigError> {
        self.check(path)?;
        let fresh: toml_edit::DocumentMut = self.to_toml().parse().expect("our own TOML parses");
        Config::edit_file(path, |doc| {
            for (key, item) in fresh.iter() {
                match (item, doc.get_mut(key)) {
                    (toml_edit::Item::Table(new), Some(toml_edit::Item::Table(old))) => {
                        let stale: Vec<String> = old
                            .iter()
                            .map(|(k, _)| k.to_owned())
                            .filter(|k| !new.contains_key(k))
                            .collect();
                        for k in stale {
                            old.remove(&k);
                        }
                        for (k, v) in new.iter() {
                            match old.get_mut(k) {
                                Some(slot) if slot.is_value() && v.is_value() => {
                                    // Keep the comment after the value, if any.
                                    let suffix =
                                        slot.as_value().and_then(|x| x.decor().suffix().cloned());
                                    *slot = v.clone();
                                    if let (Some(suffix), Some(value)) =
                                        (suffix, slot.as_value_mut())
                                    {
                                        value.decor_mut().set_suffix(suffix);
                                    }
                                }
                                _ => {
                                    old.insert(k, v.clone());
                                }
                            }
                        }
                    }
                    _ => {
                        doc.insert(key, item.clone());
                    }
                }
            }
            let gone: Vec<String> = doc
                .iter()
                .map(|(k, _)| k.to_owned())
                .filter(|k| !fresh.contains_key(k))
                .collect();
            for k in gone {
                doc.remove(&k);
            }
        })
        .map(|_| ())
    }
}

/// Write `contents` to `path` so that a reader sees either the old or the new file, never a
/// torn one: a temp file in the same directory, fsync, rename over, fsync the directory.
/// The file is created with mode 0600 (owner only) on Unix.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn invalid(
    path: &Path,
    text: &str,
    span: Range<usize>,
    key: String,
    message: String,
) -> ConfigError {
    let (line, column) = line_col(text, span.start);
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        column,
        key,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted key path whose key or value contains `offset` (the deepest one).
fn key_at(doc: &toml_edit::Document<&str>, offset: usize) -> Option<String> {
    fn walk(table: &toml_edit::Table, prefix: &str, offset: usize) -> Option<String> {
        for (k, item) in table.iter() {
            let (key, _) = table.get_key_value(k)?;
            let path = if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            };
            match item {
                toml_edit::Item::Table(t) => {
                    if let Some(p) = walk(t, &path, offset) {
                        return Some(p);
                    }
                    if key.span().is_some_and(|s| s.contains(&offset)) {
                        return Some(path);
                    }
                }
                toml_edit::Item::ArrayOfTables(arr) => {
                    for (i, t) in arr.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        if let Some(found) = walk(t, &p, offset) {
                            return Some(found);
                        }
                        if t.span().is_some_and(|s| s.contains(&offset)) {
                            return Some(p);
                        }
                    }
                }
                other => {
                    let in_key = key.span().is_some_and(|s| s.contains(&offset));
                    let in_value = other.span().is_some_and(|s| s.contains(&offset));
                    if in_key || in_value {
                        return Some(path);
                    }
                }
            }
        }
        None
    }
    walk(doc.as_table(), "", offset)
}

/// The span of the value at a dotted key path like `accounts[1].port` (or of the nearest
/// enclosing key or table that exists).
fn span_of(doc: &toml_edit::Document<&str>, path: &str) -> Option<Range<usize>> {
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut best = None;
    let parts: Vec<&str> = path.split('.').collect();
    for (n, part) in parts.iter().enumerate() {
        let last = n + 1 == parts.len();
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let Some((key, item)) = table.get_key_value(name) else {
            return best;
        };
        best = key.span().or(best);
        if let Some(i) = index {
            let Some(t) = item.as_array_of_tables().and_then(|a| a.get(i)) else {
                return best;
            };
            best = t.span().or(best);
            table = t;
            continue;
        }
        if last {
            return item.span().or(best);
        }
        match item.as_table_like() {
            Some(t) => table = t,
            None => return best,
        }
    }
    best
}

/// Where mailpulse keeps its files on this platform.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config_file: PathBuf,
    /// Last-seen UIDs and other state.
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Dirs {
    /// The platform's directories (`~/.config/mailpulse/config.toml` etc. on Linux, honouring
    /// the XDG variables), or `None` when there is no home directory.
    pub fn platform() -> Option<Dirs> {
        let p = directories::ProjectDirs::from("org", "mailpulse", "mailpulse")?;
        let state_dir = p
            .state_dir()
            .unwrap_or_else(|| p.data_local_dir())
            .to_owned();
        Some(Dirs {
            config_file: p.config_dir().join("config.toml"),
            log_dir: state_dir.join("logs"),
            state_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/x/config.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const ACCOUNT: &str =
        "[[accounts]]\nname = \"work\"\nhost = \"imap.example.com\"\nusername = \"alice\"\n";

    #[test]
    fn example_config_is_valid_and_documented() {
        let c = parse(EXAMPLE).expect("the shipped example parses");
        assert!(c.keepalive.enabled);
        assert_eq!(c.keepalive.interval_secs, 60);
        assert_eq!(c.accounts.len(), 1);
        assert_eq!(c.accounts[0].effective_port(), 993);
        // Every key of the contract appears in the example, so users can discover it.
        for key in [
            "enabled",
            "interval_secs",
            "response_timeout_secs",
            "adaptive",
            "level",
            "show_errors",
            "name",
            "protocol",
            "host",
            "port",
            "security",
            "username",
            "password_command",
            "folders",
            "ca_file",
            "on_new_mail",
            "auth",
            "[accounts.oauth]",
            "provider",
            "client_id",
            "client_secret_command",
            "tenant",
            "authorization_url",
            "token_url",
            "scopes",
            "url",
            "\"ews\"",
            "\"ntlm\"",
            "\"bearer\"",
        ] {
            assert!(EXAMPLE.contains(key), "example lacks {key}");
        }
    }

    #[test]
    fn adaptive_defaults_off_and_its_max_is_validated() {
        let c = parse(ACCOUNT).unwrap();
        assert!(!c.keepalive.adaptive);
        assert_eq!(c.keepalive.adaptive_max_secs, MAX_INTERVAL_SECS);
        let c = parse("[keepalive]\nadaptive = true\ninterval_secs = 30\nadaptive_max_secs = 90\n")
            .unwrap();
        assert!(c.keepalive.adaptive);
        assert_eq!(c.keepalive.adaptive_max(), Duration::from_secs(90));
        let e = err("[keepalive]\ninterval_secs = 60\nadaptive_max_secs = 40\n");
        assert!(
            e.contains("keepalive.adaptive_max_secs: must be between interval_secs (60) and 1740"),
            "{e}"
        );
        let e = err("[keepalive]\nadaptive_max_secs = 1800\n");
        assert!(e.contains("keepalive.adaptive_max_secs"), "{e}");
        // The hidden key stays out of saved files while it has its default.
        let text = toml::to_string(&parse(ACCOUNT).unwrap()).unwrap();
        assert!(
            text.contains("adaptive = false") && !text.contains("adaptive_max_secs"),
            "{text}"
        );
    }

    #[test]
    fn defaults_apply() {
        let c = parse(ACCOUNT).unwrap();
        assert_eq!(c.keepalive, KeepAlive::default());
        assert_eq!(c.accounts[0].folders, vec!["INBOX"]);
        assert_eq!(c.accounts[0].security, Security::Tls);
        let mut a = c.accounts[0].clone();
        a.security = Security::Starttls;
        assert_eq!(a.effective_port(), 143);
    }

    #[test]
    fn interval_below_minimum_names_line_and_key() {
        let e = err("[keepalive]\nenabled = true\ninterval_secs = 10\n");
        assert_eq!(
            e,
            "/etc/x/config.toml:3:17: keepalive.interval_secs: must be between 30 and 1740 seconds \
             (got 10); servers drop IDLE sessions after 30 minutes"
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err("[keepalive]\ninterval_secs = 60\nintervall = 3\n");
        assert!(
            e.starts_with("/etc/x/config.toml:3:1: keepalive.intervall: unknown field `intervall`"),
            "{e}"
        );
    }

    #[test]
    fn port_zero_and_unknown_security_name_their_account() {
        let e = err(&format!(
            "{ACCOUNT}\n[[accounts]]\nname = \"b\"\nhost = \"h\"\nusername = \"u\"\nport = 0\n"
        ));
        assert!(
            e.starts_with("/etc/x/config.toml:10:8: accounts[1].port: must be between 1 and 65535"),
            "{e}"
        );
        let e = err(&format!("{ACCOUNT}security = \"ssl\"\n"));
        assert!(
            e.starts_with("/etc/x/config.toml:5:12: accounts[0].security: unknown variant `ssl`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_key() {
        let e = err("[keepalive]\ninterval_secs = \"sixty\"\n");
        assert!(
            e.starts_with("/etc/x/config.toml:2:17: keepalive.interval_secs: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let e = err("[keepalive\ninterval_secs = 60\n");
        assert!(e.starts_with("/etc/x/config.toml:1:"), "{e}");
    }

    #[test]
    fn plaintext_password_is_refused_with_advice() {
        let e = err(&format!("{ACCOUNT}password = \"hunter2\"\n"));
        assert!(
            e.contains("accounts[0].password: passwords are never stored"),
            "{e}"
        );
        assert!(e.contains("password_command"), "{e}");
        assert!(
            !e.contains("hunter2"),
            "the secret itself must not be echoed: {e}"
        );
    }

    #[test]
    fn duplicate_names_and_empty_folders_are_refused() {
        let e = err(&format!("{ACCOUNT}{ACCOUNT}"));
        assert!(e.contains("accounts[1].name: another account"), "{e}");
        let e = err(&format!("{ACCOUNT}folders = []\n"));
        assert!(
            e.contains("accounts[0].folders: name at least one folder"),
            "{e}"
        );
    }

    #[test]
    fn save_is_atomic_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        let mut c = parse(ACCOUNT).unwrap();
        c.keepalive.interval_secs = 45;
        c.accounts[0].password_command = Some("pass show x".into());
        c.save(&path).unwrap();
        let back = Config::load(&path).unwrap();
        assert_eq!(back, c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // An invalid config is not written.
        c.keepalive.interval_secs = 5;
        assert!(c.save(&path).is_err());
        assert_eq!(Config::load(&path).unwrap().keepalive.interval_secs, 45);
    }

    #[test]
    fn edits_keep_comments_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, EXAMPLE).unwrap();
        let c = Config::edit_file(&path, |doc| {
            doc["keepalive"]["enabled"] = toml_edit::value(false)
        })
        .unwrap();
        assert!(!c.keepalive.enabled);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# The \"Enable Firewall Keep-Alive\" switch."),
            "comments kept"
        );
        assert!(text.contains("enabled = false"));
        // An edit that does not validate leaves the file alone.
        let err = Config::edit_file(&path, |doc| {
            doc["keepalive"]["interval_secs"] = toml_edit::value(5)
        })
        .unwrap_err();
        assert!(err.to_string().contains("keepalive.interval_secs"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text);

        let mut c = Config::load(&path).unwrap();
        c.keepalive.interval_secs = 45;
        c.accounts[0].host = "mail.example.net".into();
        c.accounts
            .push(Account::new("home", "imap.home.example", "bob"));
        c.save_merged(&path).unwrap();
        let back = Config::load(&path).unwrap();
        assert_eq!(back, c);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# Seconds between keep-alive queries"),
            "comments of kept keys survive:\n{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn oauth_accounts_parse_and_round_trip() {
        let c = parse(&format!(
            "{ACCOUNT}auth = \"xoauth2\"\n[accounts.oauth]\nprovider = \"microsoft\"\n\
             client_id = \"abc\"\ntenant = \"organizations\"\n"
        ))
        .unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.auth, AuthMethod::Xoauth2);
        let o = a.oauth.as_ref().unwrap();
        assert_eq!(o.provider, OAuthProvider::Microsoft);
        assert_eq!(o.client_id, "abc");
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        // A password account writes no auth key at all.
        assert!(!parse(ACCOUNT).unwrap().to_toml().contains("auth"));
        // password_command alone is a token source.
        let c = parse(&format!(
            "{ACCOUNT}auth = \"oauthbearer\"\npassword_command = \"oama access a@b\"\n"
        ))
        .unwrap();
        assert_eq!(c.accounts[0].auth, AuthMethod::Oauthbearer);
        // A generic provider with its endpoints (http only on loopback).
        parse(&format!(
            "{ACCOUNT}auth = \"oauthbearer\"\n[accounts.oauth]\nprovider = \"generic\"\n\
             client_id = \"x\"\nauthorization_url = \"http://127.0.0.1:8080/auth\"\n\
             token_url = \"https://idp.example/token\"\nscopes = [\"imap\"]\n"
        ))
        .unwrap();
    }

    #[test]
    fn the_examples_oauth_block_works_when_uncommented() {
        let mut text = String::new();
        let mut in_oauth = false;
        for line in EXAMPLE.lines() {
            in_oauth |= line == "# [accounts.oauth]";
            let uncomment = line == "# auth = \"password\""
                || (in_oauth
                    && !line.starts_with("# tenant")
                    && (line == "# [accounts.oauth]" || line.contains(" = ")));
            let line = if uncomment { &line[2..] } else { line };
            text += &line.replace("auth = \"password\"", "auth = \"xoauth2\"");
            text.push('\n');
        }
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let o = c.accounts[0].oauth.as_ref().expect("the oauth table");
        assert_eq!(c.accounts[0].auth, AuthMethod::Xoauth2);
        assert_eq!(o.provider, OAuthProvider::Google);
        assert!(o.client_secret_command.is_some() && o.scopes.is_some());
    }

    #[test]
    fn oauth_mistakes_name_line_and_key() {
        let e = err(&format!("{ACCOUNT}auth = \"xoauth2\"\n"));
        assert!(
            e.starts_with(
                "/etc/x/config.toml:5:8: accounts[0].auth: auth = \"xoauth2\" needs a token source"
            ),
            "{e}"
        );
        let e = err(&format!("{ACCOUNT}auth = \"kerberos\"\n"));
        assert!(
            e.contains(":5:8: accounts[0].auth: unknown variant `kerberos`"),
            "{e}"
        );
        let e = err(&format!("{ACCOUNT}[accounts.oauth]\nclient_id = \"x\"\n"));
        assert!(
            e.contains("accounts[0].oauth: OAuth2 settings need auth"),
            "{e}"
        );
        let head = format!("{ACCOUNT}auth = \"xoauth2\"\n[accounts.oauth]\n");
        let e = err(&format!("{head}client_id = \"\"\n"));
        assert!(
            e.contains(":7:13: accounts[0].oauth.client_id: must not be empty"),
            "{e}"
        );
        let e = err(&format!(
            "{head}client_id = \"x\"\nclient_secret = \"GOCSPX-s3cr3t\"\n"
        ));
        assert!(
            e.contains(":8:17: accounts[0].oauth.client_secret: secrets are never stored"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "the secret is not echoed: {e}");
        let e = err(&format!(
            "{head}client_id = \"x\"\nprovider = \"generic\"\n"
        ));
        assert!(
            e.contains(
                "accounts[0].oauth.authorization_url: is required with provider = \"generic\""
            ),
            "{e}"
        );
        let e = err(&format!(
            "{head}client_id = \"x\"\ntoken_url = \"http://idp.example/token\"\n"
        ));
        assert!(
            e.contains(":8:13: accounts[0].oauth.token_url: must start with https://"),
            "{e}"
        );
        let e = err(&format!("{head}client_id = \"x\"\ntenant = \"common\"\n"));
        assert!(
            e.contains("accounts[0].oauth.tenant: only used with provider = \"microsoft\""),
            "{e}"
        );
        let e = err(&format!("{head}client_id = \"x\"\nscopes = []\n"));
        assert!(
            e.contains("accounts[0].oauth.scopes: name at least one scope"),
            "{e}"
        );
        let e = err(&format!("{head}client_id = \"x\"\nprovidr = \"google\"\n"));
        assert!(
            e.contains(":8:1: accounts[0].oauth.providr: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn ews_accounts_take_url_or_host() {
        let c = parse(
            "[[accounts]]\nname = \"x\"\nprotocol = \"ews\"\nusername = \"a@example.com\"\n\
             url = \"https://mail.example.com:8443/EWS/Exchange.asmx\"\n",
        )
        .unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.host, "mail.example.com", "host derived from url");
        assert_eq!(a.effective_port(), 8443);
        assert_eq!(parse(&c.to_toml()).unwrap(), c, "round trip");
        let c = parse(
            "[[accounts]]\nname = \"x\"\nprotocol = \"ews\"\nhost = \"ex.example\"\n\
             username = \"u\"\nauth = \"ntlm\"\n",
        )
        .unwrap();
        assert_eq!(
            c.accounts[0].ews_url(),
            "https://ex.example/EWS/Exchange.asmx"
        );
        assert_eq!(c.accounts[0].effective_port(), 443);
        assert_eq!(c.accounts[0].auth, AuthMethod::Ntlm);
    }

    #[test]
    fn ews_mistakes_name_line_and_key() {
        const EWS: &str = "[[accounts]]\nname = \"x\"\nprotocol = \"ews\"\nusername = \"u\"\n";
        let e = err(EWS);
        assert!(
            e.contains("accounts[0].url: an EWS account needs url"),
            "{e}"
        );
        let e = err(&format!(
            "{EWS}url = \"http://mail.example.com/EWS/Exchange.asmx\"\n"
        ));
        assert!(
            e.contains(":5:7: accounts[0].url: must start with https://"),
            "{e}"
        );
        let e = err(&format!(
            "{EWS}host = \"h\"\nauth = \"xoauth2\"\npassword_command = \"x\"\n"
        ));
        assert!(
            e.contains(":6:8: accounts[0].auth: auth = \"xoauth2\" is an IMAP login"),
            "{e}"
        );
        let e = err(&format!("{EWS}host = \"h\"\nfolders = [\"Projects\"]\n"));
        assert!(
            e.contains("accounts[0].folders: \"Projects\" is not an Exchange well-known folder"),
            "{e}"
        );
        let e = err(&format!("{EWS}host = \"h\"\nauth = \"bearer\"\n"));
        assert!(
            e.contains("accounts[0].auth: auth = \"bearer\" needs a token source"),
            "{e}"
        );
        let e = err(&format!("{ACCOUNT}auth = \"ntlm\"\n"));
        assert!(
            e.contains("accounts[0].auth: auth = \"ntlm\" is for protocol = \"ews\""),
            "{e}"
        );
        let e = err(&format!("{ACCOUNT}url = \"https://x/EWS/Exchange.asmx\"\n"));
        assert!(
            e.contains("accounts[0].url: only used with protocol = \"ews\""),
            "{e}"
        );
    }

    #[test]
    fn missing_ca_file_is_reported_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, format!("{ACCOUNT}ca_file = \"nope.pem\"\n")).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains(":5:11: accounts[0].ca_file:"), "{e}");
        assert!(e.contains("nope.pem does not exist"), "{e}");
    }
}
