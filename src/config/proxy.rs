//! The `proxy` setting (`[network] proxy`, and an account's own `proxy`): what the user wrote,
//! parsed and checked. Deciding the proxy for one connection (environment, the OS's settings,
//! `NO_PROXY`) and talking to it happen in `protocol::proxy`; this module only knows the words.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How connections leave this machine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProxySetting {
    /// The OS's proxy settings (and the usual environment variables); the default.
    #[default]
    System,
    /// Straight to the server, whatever the system says.
    None,
    /// This proxy.
    Manual(ProxyUrl),
}

/// The kind of proxy: how the tunnel is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// An HTTP proxy, asked with `CONNECT host:port` (the web proxy of most companies).
    Http,
    /// SOCKS5, the mail server's name resolved here (`socks5://`).
    Socks5,
    /// SOCKS5, the name resolved by the proxy (`socks5h://`; for networks whose DNS does not
    /// answer outside names).
    Socks5h,
}

/// One proxy: `http://[user@]host:port` or `socks5[h]://[user@]host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    /// The user for proxy authentication (Basic, or SOCKS5's user name/password); the password
    /// lives in the OS keyring (`mailpulse password set --proxy`).
    pub username: Option<String>,
}

impl ProxyKind {
    pub fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }
}

impl ProxyUrl {
    /// Parse a proxy URL as written in the config or in `HTTPS_PROXY` (a bare `host:port` is
    /// an HTTP proxy, as curl takes it). `in_file` refuses a password in the URL: the file never
    /// holds one (an environment variable may, as curl allows).
    pub fn parse(raw: &str, in_file: bool) -> Result<(ProxyUrl, Option<String>), String> {
        let raw = raw.trim();
        // Messages quote the value without its user part: it may hold a password.
        let shown = redact(raw);
        let text = shown.as_str();
        let with_scheme = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("http://{raw}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| {
            format!(
                "{text:?} is not a proxy URL ({e}); write e.g. \"http://proxy.example.com:3128\""
            )
        })?;
        let kind = match url.scheme() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            "https" => {
                return Err(format!(
                    "{text:?}: a proxy reached over TLS (https://) is not supported; most \
                     proxies take CONNECT over plain http:// (the tunnel itself stays TLS to the \
                     mail server)"
                ));
            }
            other => {
                return Err(format!(
                    "{text:?}: unknown proxy type {other:?}; use http://, socks5:// or socks5h://"
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{text:?} names no proxy host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
            return Err(format!(
                "{text:?}: a proxy is a host and a port, without a path (a PAC script's URL \
                 belongs in the system's proxy settings, with proxy = \"system\")"
            ));
        }
        let port = url.port().unwrap_or(match kind {
            ProxyKind::Http => 80,
            ProxyKind::Socks5 | ProxyKind::Socks5h => 1080,
        });
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let username = Some(url.username()).filter(|u| !u.is_empty()).map(&decode);
        let password = url.password().map(decode);
        if in_file && password.is_some() {
            return Err(
                "the proxy's password never goes into the config file: remove it from the URL \
                 (keep the user, \"http://user@host:port\") and store it with \
                 `mailpulse password set --proxy`"
                    .into(),
            );
        }
        Ok((
            ProxyUrl {
                kind,
                host,
                port,
                username,
            },
            password,
        ))
    }

    /// `host:port` (IPv6 in brackets), as in messages.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The keyring's name for the proxy's password: the entry `{user}@{this}`.
    pub fn keyring_host(&self) -> String {
        format!("proxy {}", self.endpoint())
    }
}

/// `scheme://user:pass@host` → `scheme://…@host`.
fn redact(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    match text[start..].rfind('@') {
        Some(at) => format!("{}…{}", &text[..start], &text[start + at..]),
        None => text.to_owned(),
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = match &self.username {
            Some(u) => format!(
                "{}@",
                url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>()
            ),
            None => String::new(),
        };
        write!(f, "{}://{user}{}", self.kind.scheme(), self.endpoint())
    }
}

impl fmt::Display for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::System => f.write_str("system"),
            ProxySetting::None => f.write_str("none"),
            ProxySetting::Manual(p) => p.fmt(f),
        }
    }
}

impl std::str::FromStr for ProxySetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "system" => Ok(ProxySetting::System),
            "none" | "direct" => Ok(ProxySetting::None),
            "" => Err("write \"system\", \"none\" or a proxy URL such as \"http://proxy.example.com:3128\"".into()),
            other => ProxyUrl::parse(other, true).map(|(p, _)| ProxySetting::Manual(p)),
        }
    }
}

impl Serialize for ProxySetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ProxySetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_their_defaults() {
        assert_eq!(
            "system".parse::<ProxySetting>().unwrap(),
            ProxySetting::System
        );
        assert_eq!("none".parse::<ProxySetting>().unwrap(), ProxySetting::None);
        let ProxySetting::Manual(p) = "http://bob@proxy.corp:3128".parse().unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.kind, p.host.as_str(), p.port, p.username.as_deref()),
            (ProxyKind::Http, "proxy.corp", 3128, Some("bob"))
        );
        assert_eq!(p.to_string(), "http://bob@proxy.corp:3128");
        let ProxySetting::Manual(p) = "socks5h://[::1]".parse().unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::Socks5h, "::1", 1080)
        );
        assert_eq!(p.endpoint(), "[::1]:1080");
        // As the environment writes it: no scheme means HTTP; a password is allowed there.
        let (p, pw) = ProxyUrl::parse("proxy.corp:8080", false).unwrap();
        assert_eq!((p.kind, p.port, pw), (ProxyKind::Http, 8080, None));
        let (p, pw) = ProxyUrl::parse("http://a%40b:s%3Acret@proxy:1", false).unwrap();
        assert_eq!(
            (p.username.as_deref(), pw.as_deref()),
            (Some("a@b"), Some("s:cret"))
        );
    }

    #[test]
    fn bad_values_say_what_to_write() {
        for (bad, says) in [
            ("", "system"),
            ("ftp://proxy:21", "socks5://"),
            ("https://proxy:443", "not supported"),
            ("http://proxy:3128/proxy.pac", "PAC"),
            (
                "http://bob:secret@proxy:3128",
                "mailpulse password set --proxy",
            ),
            ("http://:3128", "proxy"),
            ("ftp://bob:secret@proxy:21", "…@proxy"),
        ] {
            let e = bad.parse::<ProxySetting>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
