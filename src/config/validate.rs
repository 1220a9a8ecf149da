//! Semantic checks of a parsed config: ranges, the EWS and authentication settings, files that
//! must exist. Each returns the dotted key and a message, which `locate` turns into file:line.

use super::*;

/// The Exchange well-known folder a configured folder name stands for (`INBOX` → `inbox`).
pub fn distinguished_folder(name: &str) -> Option<&'static str> {
    const KNOWN: &[&str] = &[
        "inbox",
        "junkemail",
        "deleteditems",
        "sentitems",
        "drafts",
        "outbox",
        "archiveinbox",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name.trim()))
        .copied()
}

/// The Graph-specific checks of one account (before the common ones).
fn validate_graph(a: &Account, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
    if a.auth != AuthMethod::Bearer {
        return Err((
            key("auth"),
            format!(
                "Microsoft Graph takes an OAuth2 access token: set auth = \"bearer\" (with \
                 [accounts.oauth] provider = \"microsoft\", or a password_command that prints a \
                 token), not {:?}",
                a.auth.as_str()
            ),
        ));
    }
    if a.security != Security::Tls {
        return Err((
            key("security"),
            "Microsoft Graph always runs over HTTPS: remove this line (the URL says where)".into(),
        ));
    }
    if a.port.is_some() {
        return Err((key("port"), "put the port into url instead".into()));
    }
    if let Some(u) = &a.url {
        let parsed =
            url::Url::parse(u).map_err(|e| (key("url"), format!("{u:?} is not a URL ({e})")))?;
        let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err((
                    key("url"),
                    format!(
                        "must start with https:// (every request carries the access token): {u}"
                    ),
                ));
            }
        }
        if parsed.host_str().is_none() {
            return Err((key("url"), format!("{u:?} names no server")));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err((
                key("url"),
                format!("the service root takes no query (e.g. \"{GRAPH_URL}\"): {u}"),
            ));
        }
    }
    if !a.host.is_empty() {
        let derived = url::Url::parse(&a.graph_url())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        if !a
            .host
            .eq_ignore_ascii_case(derived.trim_start_matches('[').trim_end_matches(']'))
        {
            return Err((
                key("host"),
                format!(
                    "names {:?} but the Graph endpoint is {derived:?}: leave host out (url says where)",
                    a.host
                ),
            ));
        }
    }
    for f in &a.folders {
        if f.split('/').any(|part| part.trim().is_empty()) {
            return Err((
                key("folders"),
                format!(
                    "{f:?} is not a folder: use a well-known name (\"inbox\", \"archive\") or a path of display names such as \"Inbox/Work\""
                ),
            ));
        }
    }
    Ok(())
}

/// The EWS-specific checks of one account (before the common ones).
fn validate_ews(a: &Account, key: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
    if a.protocol == Protocol::Graph {
        return validate_graph(a, key);
    }
    if a.protocol != Protocol::Ews {
        if a.url.is_some() {
            return Err((
                key("url"),
                "only used with protocol = \"ews\" or \"graph\"; IMAP accounts name their server with host"
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
                    "auth = \"{}\" is for protocol = \"ews\" or \"graph\"; IMAP uses \"password\", \"xoauth2\" or \"oauthbearer\"",
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
        if distinguished_folder(f).is_none() {
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
             EWS and Graph); this account logs in with a password"
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

impl Config {
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
            let url_only = (a.protocol == Protocol::Ews && a.url.is_some() && a.host.is_empty())
                || a.protocol == Protocol::Graph;
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
    pub(super) fn check_files(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
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
}
