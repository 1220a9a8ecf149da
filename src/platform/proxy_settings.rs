//! The OS's proxy settings as text, read the same way on every host (and tested on every host):
//! WinHTTP's proxy lists (`host:port`, `https=host:port;socks=host:port`) and bypass lists
//! (`<local>;*.corp`), a PAC script's answer (`PROXY host:port; SOCKS5 host:port; DIRECT`), and
//! GNOME's `gsettings list-recursively org.gnome.system.proxy`, and KDE's `kioslaverc`. Each
//! room asks its OS and hands the text here.
// Each room uses its part; the tests use all of it on every host.
#![allow(dead_code)]

/// What the system says about one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SystemProxy {
    /// No proxy.
    Direct,
    /// This proxy (`http://host:port` or `socks5://host:port`), and where the setting came from.
    Proxy { url: String, source: String },
    /// A setting mailpulse cannot follow (WPAD discovery on Linux, a PAC script that could not
    /// be fetched or run): direct, with this note.
    Unsupported(String),
}

/// What a Linux desktop's settings say: an answer, or a PAC script for the room to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Desktop {
    Is(SystemProxy),
    /// "Automatic": the script at this URL (`http://`, `https://` or `file://`) decides.
    Pac {
        script_url: String,
        source: String,
    },
}

/// `NO_PROXY` as curl reads it: comma- or space-separated names, each matching itself and its
/// subdomains (a leading dot is the same), IP addresses and CIDR ranges, optionally `:port`;
/// `*` alone matches everything.
pub(crate) fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip = host.parse::<std::net::IpAddr>().ok();
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            // `name:port` / `[v6]:port` / `v4:port`; a bare IPv6 address has colons too.
            let (name, want_port) = match entry.rsplit_once(':') {
                Some((n, p))
                    if p.parse::<u16>().is_ok() && (n.ends_with(']') || !n.contains(':')) =>
                {
                    (n.to_owned(), p.parse::<u16>().ok())
                }
                _ => (entry.clone(), None),
            };
            if want_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.trim_start_matches('[').trim_end_matches(']');
            if let Some(ip) = ip {
                if let Some((net, bits)) = name.split_once('/') {
                    return in_cidr(ip, net, bits);
                }
                return name.parse::<std::net::IpAddr>().is_ok_and(|n| n == ip);
            }
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            !name.is_empty() && (host == name || host.ends_with(&format!(".{name}")))
        })
}

fn in_cidr(ip: std::net::IpAddr, net: &str, bits: &str) -> bool {
    use std::net::IpAddr;
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The entry of a WinHTTP/WinINET proxy list for `scheme` ("https" or "http"): a bare
/// `host:port` serves every scheme; `https=…`, `http=…`, `socks=…` name one each.
pub(crate) fn pick_from_list(list: &str, scheme: &str) -> Option<String> {
    let entries: Vec<&str> = list
        .split([';', ' ', '\t'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let named = |key: &str| {
        entries.iter().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.trim().to_owned())
        })
    };
    if let Some(v) = named(scheme) {
        return Some(with_scheme(&v, "http"));
    }
    if let Some(v) = entries.iter().find(|e| !e.contains('=')) {
        return Some(with_scheme(v, "http"));
    }
    named("socks").map(|v| with_scheme(&v, "socks5"))
}

fn with_scheme(v: &str, scheme: &str) -> String {
    if v.contains("://") {
        v.to_owned()
    } else {
        format!("{scheme}://{v}")
    }
}

/// The first usable answer of a PAC script (`FindProxyForURL`): `PROXY h:p` / `HTTPS h:p` →
/// an HTTP proxy, `SOCKS`/`SOCKS5 h:p` → SOCKS5, `DIRECT` → `None` inside `Some`. `None` when
/// nothing in it is understood.
pub(crate) fn pick_from_pac(answer: &str) -> Option<Option<String>> {
    answer.split(';').map(str::trim).find_map(|e| {
        let mut words = e.split_whitespace();
        let kind = words.next()?.to_ascii_uppercase();
        let target = words.next();
        match (kind.as_str(), target) {
            ("DIRECT", _) => Some(None),
            ("PROXY" | "HTTP", Some(t)) => Some(Some(format!("http://{t}"))),
            ("SOCKS" | "SOCKS5", Some(t)) => Some(Some(format!("socks5://{t}"))),
            _ => None,
        }
    })
}

/// A bypass list of patterns with `*` wildcards (Windows' `ProxyOverride`, `;`-separated;
/// macOS' exceptions, one each): `<local>` = host names without a dot.
pub(crate) fn bypass_patterns(list: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    list.split([';', ' ']).map(str::trim).any(|p| {
        if p.eq_ignore_ascii_case("<local>") {
            return !host.contains('.') && !host.contains(':');
        }
        !p.is_empty() && wildcard(&p.to_ascii_lowercase(), &host)
    })
}

/// `*` matches any run of characters (as in `*.corp`, `10.*`).
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// GNOME's proxy settings from `gsettings list-recursively org.gnome.system.proxy`, for
/// `scheme` ("https" or "http") and `host`.
pub(crate) fn from_gsettings(listing: &str, scheme: &str, host: &str, port: u16) -> Desktop {
    let get = |schema: &str, key: &str| {
        listing.lines().find_map(|l| {
            let mut it = l.splitn(3, ' ');
            (it.next()? == schema && it.next()? == key).then(|| {
                it.next()
                    .unwrap_or_default()
                    .trim()
                    .trim_matches('\'')
                    .to_owned()
            })
        })
    };
    let base = "org.gnome.system.proxy";
    match get(base, "mode").as_deref() {
        Some("manual") => {}
        Some("auto") => {
            let url = get(base, "autoconfig-url").unwrap_or_default();
            return pac_or_wpad(url, "the desktop's proxy settings (GNOME)");
        }
        _ => return Desktop::Is(SystemProxy::Direct),
    }
    // ['localhost', '127.0.0.0/8', '::1'] → NO_PROXY's form.
    let ignore = get(base, "ignore-hosts")
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .replace('\'', "");
    if no_proxy_matches(&ignore, host, port) {
        return Desktop::Is(SystemProxy::Direct);
    }
    let server = |schema: &str| {
        let h = get(schema, "host").filter(|h| !h.is_empty())?;
        let p = get(schema, "port")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0)?;
        Some(if h.contains(':') {
            format!("[{h}]:{p}")
        } else {
            format!("{h}:{p}")
        })
    };
    let source = "the desktop's proxy settings (GNOME)".to_owned();
    if let Some(s) = server(&format!("{base}.{scheme}")) {
        return Desktop::Is(SystemProxy::Proxy {
            url: format!("http://{s}"),
            source,
        });
    }
    if let Some(s) = server(&format!("{base}.socks")) {
        return Desktop::Is(SystemProxy::Proxy {
            url: format!("socks5://{s}"),
            source,
        });
    }
    Desktop::Is(SystemProxy::Direct)
}

/// "Automatic" proxy settings: the PAC script they name, or, with none named, discovery (WPAD),
/// which mailpulse does not do on Linux (whoever answers for `wpad` on the local network would
/// choose the proxy).
fn pac_or_wpad(url: String, source: &str) -> Desktop {
    if url.is_empty() {
        return Desktop::Is(SystemProxy::Unsupported(format!(
            "{source} ask for proxy auto-detection (WPAD), which mailpulse does not do on \
             Linux; name the PAC script's URL there, or set [network] proxy in the config"
        )));
    }
    Desktop::Pac {
        script_url: url,
        source: source.to_owned(),
    }
}

/// KDE's proxy settings (System Settings › Network › Proxy) from `kioslaverc`, for `scheme`
/// and `host`. `ProxyType`: 0 none, 1 manual, 2 a PAC script, 3 auto-detection, 4 the
/// environment variables (which mailpulse has read before it asks the desktop). Manual
/// proxies read `http://proxy.corp 3128` (KDE 5.x and later) or `http://proxy.corp:3128`;
/// `NoProxyFor` lists the exceptions (`ReversedException`: the only hosts that use the proxy).
pub(crate) fn from_kioslaverc(text: &str, scheme: &str, host: &str, port: u16) -> Desktop {
    let mut section = String::new();
    let mut values = std::collections::HashMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if section == "Proxy Settings"
            && let Some((k, v)) = line.split_once('=')
        {
            // `key[$e]=…` marks a value with shell expansion; the key is the same.
            let k = k.trim().trim_end_matches("[$e]");
            values.insert(k.to_owned(), v.trim().to_owned());
        }
    }
    let get = |k: &str| values.get(k).map(String::as_str).unwrap_or_default();
    let source = "the desktop's proxy settings (KDE)";
    match get("ProxyType") {
        "1" => {}
        "2" => return pac_or_wpad(get("Proxy Config Script").to_owned(), source),
        "3" => return pac_or_wpad(String::new(), source),
        _ => return Desktop::Is(SystemProxy::Direct),
    }
    let listed = no_proxy_matches(get("NoProxyFor"), host, port);
    if listed != (get("ReversedException") == "true") {
        return Desktop::Is(SystemProxy::Direct);
    }
    let server = |key: &str, scheme: &str| {
        let value = get(key);
        let value = value
            .split_once("://")
            .map_or(value, |(_, rest)| rest)
            .trim();
        let authority = match value.split_once(char::is_whitespace) {
            Some((h, p)) => format!("{}:{}", h.trim_end_matches('/'), p.trim()),
            None => value.trim_end_matches('/').to_owned(),
        };
        (!authority.is_empty() && !authority.ends_with(":0") && authority.contains(':'))
            .then(|| format!("{scheme}://{authority}"))
    };
    let own = if scheme == "http" {
        "httpProxy"
    } else {
        "httpsProxy"
    };
    match server(own, "http").or_else(|| server("socksProxy", "socks5")) {
        Some(url) => Desktop::Is(SystemProxy::Proxy {
            url,
            source: source.to_owned(),
        }),
        None => Desktop::Is(SystemProxy::Direct),
    }
}

/// Where KDE keeps `kioslaverc`: `$XDG_CONFIG_HOME`, else `~/.config`.
pub(crate) fn kioslaverc_path(
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<std::path::PathBuf> {
    let dir = env("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))?;
    Some(dir.join("kioslaverc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winhttp_lists() {
        assert_eq!(
            pick_from_list("proxy:8080", "https").as_deref(),
            Some("http://proxy:8080")
        );
        let list = "http=web:80;https=secure:3128;socks=sock:1080";
        assert_eq!(
            pick_from_list(list, "https").as_deref(),
            Some("http://secure:3128")
        );
        assert_eq!(
            pick_from_list(list, "http").as_deref(),
            Some("http://web:80")
        );
        assert_eq!(
            pick_from_list("socks=sock:1080", "https").as_deref(),
            Some("socks5://sock:1080")
        );
        assert_eq!(pick_from_list("", "https"), None);
    }

    #[test]
    fn pac_answers() {
        assert_eq!(
            pick_from_pac("PROXY p:3128; DIRECT"),
            Some(Some("http://p:3128".into()))
        );
        assert_eq!(pick_from_pac("DIRECT"), Some(None));
        assert_eq!(
            pick_from_pac("SOCKS5 s:1080"),
            Some(Some("socks5://s:1080".into()))
        );
        assert_eq!(pick_from_pac("nonsense"), None);
    }

    #[test]
    fn bypass_patterns_lists() {
        assert!(bypass_patterns("<local>;*.corp", "intranet"));
        assert!(bypass_patterns("<local>;*.corp", "mail.corp"));
        assert!(!bypass_patterns("<local>;*.corp", "mail.example.com"));
        assert!(bypass_patterns("10.*", "10.1.2.3"));
        assert!(!bypass_patterns("", "a"));
    }

    #[test]
    fn gnome_settings() {
        let listing = "org.gnome.system.proxy autoconfig-url ''\n\
            org.gnome.system.proxy ignore-hosts ['localhost', '127.0.0.0/8', '::1', '.lan']\n\
            org.gnome.system.proxy mode 'manual'\n\
            org.gnome.system.proxy.https host 'proxy.corp'\n\
            org.gnome.system.proxy.https port 3128\n\
            org.gnome.system.proxy.socks host ''\n\
            org.gnome.system.proxy.socks port 0\n";
        assert_eq!(
            from_gsettings(listing, "https", "imap.example.com", 993),
            Desktop::Is(SystemProxy::Proxy {
                url: "http://proxy.corp:3128".into(),
                source: "the desktop's proxy settings (GNOME)".into()
            })
        );
        assert_eq!(
            from_gsettings(listing, "https", "nas.lan", 993),
            Desktop::Is(SystemProxy::Direct)
        );
        assert_eq!(
            from_gsettings(listing, "http", "a.b", 80),
            Desktop::Is(SystemProxy::Direct)
        );
        let wpad = listing.replace("'manual'", "'auto'");
        assert!(matches!(
            from_gsettings(&wpad, "https", "a.b", 1),
            Desktop::Is(SystemProxy::Unsupported(note)) if note.contains("WPAD")
        ));
        let pac = wpad.replace(
            "autoconfig-url ''",
            "autoconfig-url 'http://wpad.corp/p.pac'",
        );
        assert_eq!(
            from_gsettings(&pac, "https", "a.b", 1),
            Desktop::Pac {
                script_url: "http://wpad.corp/p.pac".into(),
                source: "the desktop's proxy settings (GNOME)".into()
            }
        );
        let none = listing.replace("'manual'", "'none'");
        assert_eq!(
            from_gsettings(&none, "https", "a.b", 1),
            Desktop::Is(SystemProxy::Direct)
        );
    }

    #[test]
    fn kde_settings() {
        let rc = "[General]\nProxyType=9\n\n[Proxy Settings]\n\
            NoProxyFor=localhost,.lan,10.0.0.0/8\n\
            Proxy Config Script=\n\
            ProxyType=1\n\
            ReversedException=false\n\
            httpProxy=http://web.corp 8080\n\
            httpsProxy=http://proxy.corp 3128\n\
            socksProxy=socks://sock.corp 1080\n";
        let kde = |url: &str| {
            Desktop::Is(SystemProxy::Proxy {
                url: url.into(),
                source: "the desktop's proxy settings (KDE)".into(),
            })
        };
        assert_eq!(
            from_kioslaverc(rc, "https", "imap.example.com", 993),
            kde("http://proxy.corp:3128")
        );
        assert_eq!(
            from_kioslaverc(rc, "http", "a.b", 80),
            kde("http://web.corp:8080")
        );
        assert_eq!(
            from_kioslaverc(rc, "https", "nas.lan", 993),
            Desktop::Is(SystemProxy::Direct)
        );
        assert_eq!(
            from_kioslaverc(rc, "https", "10.1.2.3", 993),
            Desktop::Is(SystemProxy::Direct)
        );
        // Older files: host:port in one; no HTTPS proxy → the SOCKS one.
        let old = rc.replace("http://proxy.corp 3128", "http://proxy.corp:3128/");
        assert_eq!(
            from_kioslaverc(&old, "https", "a.b", 993),
            kde("http://proxy.corp:3128")
        );
        let socks = rc.replace("httpsProxy=http://proxy.corp 3128", "httpsProxy=");
        assert_eq!(
            from_kioslaverc(&socks, "https", "a.b", 993),
            kde("socks5://sock.corp:1080")
        );
        // Reversed: only the listed hosts use the proxy.
        let reversed = rc.replace("ReversedException=false", "ReversedException=true");
        assert_eq!(
            from_kioslaverc(&reversed, "https", "nas.lan", 993),
            kde("http://proxy.corp:3128")
        );
        assert_eq!(
            from_kioslaverc(&reversed, "https", "a.b", 993),
            Desktop::Is(SystemProxy::Direct)
        );
        let pac = rc
            .replace("ProxyType=1", "ProxyType=2")
            .replace("Script=", "Script=file:///etc/proxy.pac");
        assert_eq!(
            from_kioslaverc(&pac, "https", "a.b", 993),
            Desktop::Pac {
                script_url: "file:///etc/proxy.pac".into(),
                source: "the desktop's proxy settings (KDE)".into()
            }
        );
        assert!(matches!(
            from_kioslaverc(
                &rc.replace("ProxyType=1", "ProxyType=3"),
                "https",
                "a.b",
                993
            ),
            Desktop::Is(SystemProxy::Unsupported(_))
        ));
        for off in ["ProxyType=0", "ProxyType=4"] {
            assert_eq!(
                from_kioslaverc(&rc.replace("ProxyType=1", off), "https", "a.b", 993),
                Desktop::Is(SystemProxy::Direct)
            );
        }
        assert_eq!(
            from_kioslaverc("", "https", "a.b", 993),
            Desktop::Is(SystemProxy::Direct)
        );
    }
}
