//! Which way out one connection takes: straight, or the proxy that `proxy` names — the config's
//! URL, or under `"system"` (the default), in order, the usual environment variables
//! (`https_proxy`, `all_proxy`, … with `no_proxy`) and the OS's own proxy settings
//! (`platform::system_proxy`: WinHTTP with PAC and auto-detection on Windows, System
//! Configuration on macOS, KDE's or GNOME's settings on Linux, each with its PAC script). The tunnel itself is
//! `net::tunnel`'s; the OAuth token requests (ureq, `net::http_agent`) take the same route.

use crate::config::{ProxyKind, ProxySetting, ProxyUrl};
use crate::error::{ErrorKind, ProtoError};
use crate::secret::Secret;

/// What a connection is for: which environment variables apply, and what to advise when a
/// proxy refuses the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// IMAP (implicit TLS or STARTTLS): tunnelled like HTTPS.
    Imap,
    /// An `https://` URL (EWS, Graph, autodiscover, OAuth).
    Https,
    /// An `http://` URL (only where the config allows plain http).
    Http,
}

/// The proxy one connection goes through.
#[derive(Clone)]
pub(crate) struct Hop {
    pub url: ProxyUrl,
    /// Basic / SOCKS5 password: from the keyring (config) or the environment variable's URL.
    pub password: Option<Secret>,
    /// Where the proxy came from, for messages and `mailpulse check`: "the config",
    /// "HTTPS_PROXY", "the Windows proxy settings", ….
    pub source: String,
}

impl std::fmt::Debug for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (from {})", self.url, self.source)
    }
}

impl Hop {
    /// "the proxy proxy.corp:3128" as messages name it.
    pub(crate) fn name(&self) -> String {
        let kind = match self.url.kind {
            ProxyKind::Http => "proxy",
            ProxyKind::Socks5 | ProxyKind::Socks5h => "SOCKS proxy",
        };
        format!("the {kind} {}", self.url.endpoint())
    }
}

/// The route a connection to `host:port` takes under `setting`: `None` = direct. May read the
/// keyring and ask the OS (WinHTTP's auto-detection can take seconds): call it off the runtime's
/// worker threads ([`route_async`]).
pub(crate) fn route(
    setting: &ProxySetting,
    purpose: Purpose,
    host: &str,
    port: u16,
) -> Result<(Option<Hop>, Option<String>), ProtoError> {
    match setting {
        ProxySetting::None => Ok((None, None)),
        ProxySetting::Manual(url) => Ok((
            Some(Hop {
                password: keyring_password(url)?,
                url: url.clone(),
                source: "the config".into(),
            }),
            None,
        )),
        ProxySetting::System => system(purpose, host, port, &|k| std::env::var(k).ok()),
    }
}

/// [`route`] on a blocking thread.
pub(crate) async fn route_async(
    setting: &ProxySetting,
    purpose: Purpose,
    host: &str,
    port: u16,
) -> Result<(Option<Hop>, Option<String>), ProtoError> {
    if *setting == ProxySetting::None {
        return Ok((None, None));
    }
    let (setting, host) = (setting.clone(), host.to_owned());
    tokio::task::spawn_blocking(move || route(&setting, purpose, &host, port))
        .await
        .unwrap_or_else(|e| {
            Err(ProtoError::new(
                ErrorKind::Internal,
                format!("finding the proxy failed: {e}"),
            ))
        })
}

/// One line for `mailpulse check` and the log: how `host:port` is reached.
pub(crate) fn describe(setting: &ProxySetting, purpose: Purpose, host: &str, port: u16) -> String {
    match route(setting, purpose, host, port) {
        Ok((Some(hop), _)) => format!("through {} (from {})", hop.url, hop.source),
        Ok((None, Some(note))) => format!("direct ({note})"),
        Ok((None, None)) => match setting {
            ProxySetting::None => "direct (proxy = \"none\")".into(),
            _ => "direct (no proxy in the system's settings)".into(),
        },
        Err(e) => format!("proxy unusable: {}", e.message),
    }
}

fn keyring_password(url: &ProxyUrl) -> Result<Option<Secret>, ProtoError> {
    let Some(user) = &url.username else {
        return Ok(None);
    };
    match crate::credentials::get_password(user, &url.keyring_host()) {
        Ok(p) => Ok(p.map(Secret::new)),
        Err(e) => Err(ProtoError::new(
            ErrorKind::Secret,
            format!("the password for the proxy {}: {e}", url.endpoint()),
        )),
    }
}

/// `system`: the environment first (what the user set for this session), then the OS.
/// Returns the hop, or `None` with a note when something was found but not used.
fn system(
    purpose: Purpose,
    host: &str,
    port: u16,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<Hop>, Option<String>), ProtoError> {
    if is_loopback(host) {
        // As browsers do: this machine is never reached through a proxy unless one is named.
        return Ok((None, None));
    }
    if let Some((var, value)) = from_env(purpose, env) {
        let no_proxy = env("no_proxy")
            .or_else(|| env("NO_PROXY"))
            .unwrap_or_default();
        if crate::platform::no_proxy_matches(&no_proxy, host, port) {
            return Ok((None, Some(format!("{host} is in NO_PROXY"))));
        }
        let (url, password) = ProxyUrl::parse(&value, false)
            .map_err(|e| ProtoError::new(ErrorKind::Config, format!("{var}: {e}")))?;
        let password = match password {
            Some(p) => Some(Secret::new(p)),
            None => keyring_password(&url)?,
        };
        return Ok((
            Some(Hop {
                url,
                password,
                source: var,
            }),
            None,
        ));
    }
    let scheme = match purpose {
        Purpose::Http => "http",
        Purpose::Https | Purpose::Imap => "https",
    };
    let target = if host.contains(':') {
        format!("{scheme}://[{host}]:{port}/")
    } else {
        format!("{scheme}://{host}:{port}/")
    };
    match crate::platform::system_proxy(&target) {
        Ok(crate::platform::SystemProxy::Direct) => Ok((None, None)),
        Ok(crate::platform::SystemProxy::Unsupported(note)) => Ok((None, Some(note))),
        Ok(crate::platform::SystemProxy::Proxy { url, source }) => {
            let (url, _) = ProxyUrl::parse(&url, true)
                .map_err(|e| ProtoError::new(ErrorKind::Config, format!("{source}: {e}")))?;
            Ok((
                Some(Hop {
                    password: keyring_password(&url)?,
                    url,
                    source,
                }),
                None,
            ))
        }
        Err(e) => Err(ProtoError::new(
            ErrorKind::Config,
            format!(
                "cannot read the system's proxy settings: {e}; set [network] proxy in the \
                 config (\"none\" or a proxy URL)"
            ),
        )),
    }
}

/// The environment variable that names a proxy for `purpose`, lower case first (as curl).
/// IMAP has no variable of its own that anyone sets: `all_proxy`, else the HTTPS proxy — behind
/// a web proxy that is the one way out.
fn from_env(purpose: Purpose, env: &dyn Fn(&str) -> Option<String>) -> Option<(String, String)> {
    let order: &[&str] = match purpose {
        Purpose::Https => &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"],
        Purpose::Http => &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"],
        Purpose::Imap => &["all_proxy", "ALL_PROXY", "https_proxy", "HTTPS_PROXY"],
    };
    order.iter().find_map(|k| {
        env(k)
            .filter(|v| !v.trim().is_empty())
            .map(|v| ((*k).to_owned(), v))
    })
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_environment_names_the_proxy_lower_case_first() {
        let env = env_of(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
            ("all_proxy", "socks5://all:3"),
        ]);
        assert_eq!(from_env(Purpose::Https, &env).unwrap().0, "https_proxy");
        assert_eq!(from_env(Purpose::Imap, &env).unwrap().0, "all_proxy");
        assert_eq!(from_env(Purpose::Http, &env).unwrap().0, "all_proxy");
        let env = env_of(&[("HTTPS_PROXY", "proxy:8080"), ("all_proxy", " ")]);
        assert_eq!(from_env(Purpose::Imap, &env).unwrap().0, "HTTPS_PROXY");
        assert!(from_env(Purpose::Http, &env_of(&[("HTTPS_PROXY", "p:1")])).is_none());
    }

    #[test]
    fn system_takes_the_environment_and_honours_no_proxy() {
        let env = env_of(&[
            ("https_proxy", "http://u:pw@proxy.corp:3128"),
            (
                "no_proxy",
                "intranet.corp, .lan,10.0.0.0/8,[::1],mail.example.com:993",
            ),
        ]);
        let (hop, _) = system(Purpose::Imap, "imap.example.com", 993, &env).unwrap();
        let hop = hop.unwrap();
        assert_eq!(hop.url.to_string(), "http://u@proxy.corp:3128");
        assert_eq!(hop.password.unwrap().expose(), "pw");
        assert_eq!(hop.source, "https_proxy");
        for (host, port) in [
            ("intranet.corp", 443),
            ("mx.intranet.corp", 443),
            ("box.lan", 993),
            ("10.1.2.3", 993),
            ("mail.example.com", 993),
            ("localhost", 993),
            ("127.0.0.1", 993),
        ] {
            let (hop, _) = system(Purpose::Imap, host, port, &env).unwrap();
            assert!(hop.is_none(), "{host}:{port} should be direct");
        }
        let (hop, _) = system(Purpose::Imap, "mail.example.com", 143, &env).unwrap();
        assert!(hop.is_some(), "the port in NO_PROXY must match");
        let (hop, _) = system(Purpose::Imap, "notintranet.corp", 993, &env).unwrap();
        assert!(hop.is_some(), "a suffix matches whole labels only");
        let e = system(
            Purpose::Imap,
            "a.b",
            1,
            &env_of(&[("ALL_PROXY", "ftp://x:1")]),
        )
        .unwrap_err();
        assert!(e.message.starts_with("ALL_PROXY: "), "{e:?}");
    }

    #[test]
    fn no_proxy_star_and_ipv6_ranges() {
        assert!(crate::platform::no_proxy_matches("*", "anything", 1));
        assert!(crate::platform::no_proxy_matches(
            "fd00::/8",
            "[fd12::1]",
            1
        ));
        assert!(!crate::platform::no_proxy_matches("fd00::/8", "fe80::1", 1));
        assert!(!crate::platform::no_proxy_matches("", "a", 1));
        assert!(crate::platform::no_proxy_matches("*.corp", "x.corp", 1));
    }
}
