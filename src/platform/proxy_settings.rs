//! The OS's proxy settings as text, read the same way on every host (and tested on every host):
//! WinHTTP's proxy lists (`host:port`, `https=host:port;socks=host:port`) and bypass lists
//! (`<local>;*.corp`), a PAC script's answer (`PROXY host:port; SOCKS5 host:port; DIRECT`), and
//! GNOME's `gsettings list-recursively org.gnome.system.proxy`. Each room asks its OS and
//! hands the text here.
// Each room uses its part; the tests use all of it on every host.
#![allow(dead_code)]

/// What the system says about one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SystemProxy {
    /// No proxy.
    Direct,
    /// This proxy (`http://host:port` or `socks5://host:port`), and where the setting came from.
    Proxy { url: String, source: String },
    /// A setting mailpulse cannot follow here (a PAC script on Linux): direct, with this note.
    Unsupported(String),
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
pub(crate) fn from_gsettings(listing: &str, scheme: &str, host: &str, port: u16) -> SystemProxy {
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
            return SystemProxy::Unsupported(format!(
                "the desktop's proxy settings name a PAC script{}, which mailpulse does not run \
                 on Linux; set [network] proxy in the config",
                if url.is_empty() {
                    String::new()
                } else {
                    format!(" ({url})")
                }
            ));
        }
        _ => return SystemProxy::Direct,
    }
    // ['localhost', '127.0.0.0/8', '::1'] → NO_PROXY's form.
    let ignore = get(base, "ignore-hosts")
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .replace('\'', "");
    if no_proxy_matches(&ignore, host, port) {
        return SystemProxy::Direct;
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
        return SystemProxy::Proxy {
            url: format!("http://{s}"),
            source,
        };
    }
    if let Some(s) = server(&format!("{base}.socks")) {
        return SystemProxy::Proxy {
            url: format!("socks5://{s}"),
            source,
        };
    }
    SystemProxy::Direct
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
            SystemProxy::Proxy {
                url: "http://proxy.corp:3128".into(),
                source: "the desktop's proxy settings (GNOME)".into()
            }
        );
        assert_eq!(
            from_gsettings(listing, "https", "nas.lan", 993),
            SystemProxy::Direct
        );
        assert_eq!(
            from_gsettings(listing, "http", "a.b", 80),
            SystemProxy::Direct
        );
        let auto = listing.replace("'manual'", "'auto'");
        assert!(matches!(
            from_gsettings(&auto, "https", "a.b", 1),
            SystemProxy::Unsupported(_)
        ));
        let none = listing.replace("'manual'", "'none'");
        assert_eq!(
            from_gsettings(&none, "https", "a.b", 1),
            SystemProxy::Direct
        );
    }
}
