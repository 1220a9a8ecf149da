//! Autodiscover (POX, `autodiscover.xml`): the EWS URL of a mailbox from its e-mail address, for a
//! user who does not know it (`mailpulse discover`, and "Find server" in Settings).
//!
//! Tried in order: `https://DOMAIN/autodiscover/autodiscover.xml`, then
//! `https://autodiscover.DOMAIN/autodiscover/autodiscover.xml` (or only the server the user
//! names). The request is authenticated like EWS (Basic or NTLM, as offered). `redirectAddr`
//! (another address) and `redirectUrl` (another server) are followed, at most three times, and
//! only where the password may go: over https, to the address's domain (or a host inside it) or
//! to the server the user named. A redirect anywhere else ends the search with an error naming
//! the target: whoever runs `https://DOMAIN/` (often a web host, not the mail provider) must
//! not be able to send the password on to a server of its choice. The password goes with NTLM
//! (or Negotiate); Basic only when the account says `auth = "basic"`.

use std::time::Duration;

use super::{Http, Shared, xml};
use crate::config::{Account, AuthMethod, KeepAlive, Protocol};
use crate::error::{ErrorKind, ProtoError};
use crate::net::clip;
use crate::secret::Secret;

const REQUEST_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
const RESPONSE_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

/// The autodiscover URLs for an address (or for the server the user named).
pub fn candidates(email: &str, server: Option<&str>) -> Vec<String> {
    if let Some(s) = server {
        let s = s.trim_end_matches('/');
        if s.starts_with("https://") || s.starts_with("http://") {
            return vec![format!("{s}/autodiscover/autodiscover.xml")];
        }
        return vec![format!("https://{s}/autodiscover/autodiscover.xml")];
    }
    let domain = email.rsplit_once('@').map_or("", |(_, d)| d).trim();
    if domain.is_empty() {
        return Vec::new();
    }
    vec![
        format!("https://{domain}/autodiscover/autodiscover.xml"),
        format!("https://autodiscover.{domain}/autodiscover/autodiscover.xml"),
    ]
}

fn request(email: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"{REQUEST_SCHEMA}\"><Request>\
         <EMailAddress>{}</EMailAddress><AcceptableResponseSchema>{RESPONSE_SCHEMA}</AcceptableResponseSchema>\
         </Request></Autodiscover>",
        xml::esc(email)
    )
}

/// What one autodiscover answer says.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Url(String),
    RedirectAddr(String),
    RedirectUrl(String),
    Error(String),
}

/// Read an autodiscover answer (errors, never panics, on anything else).
pub fn parse_answer(bytes: &[u8]) -> Answer {
    let root = match xml::parse(bytes) {
        Ok(r) => r,
        Err(e) => return Answer::Error(format!("not an autodiscover answer ({e})")),
    };
    if let Some(err) = root.find("Error") {
        let text = err.child_text("Message").unwrap_or("an error").trim();
        return Answer::Error(clip(text));
    }
    let Some(account) = root.find("Account") else {
        return Answer::Error("the answer names no account".into());
    };
    match account.child_text("Action").map(str::trim) {
        Some("redirectAddr") => {
            if let Some(a) = account.child_text("RedirectAddr") {
                return Answer::RedirectAddr(a.trim().to_owned());
            }
        }
        Some("redirectUrl") => {
            if let Some(u) = account.child_text("RedirectUrl") {
                return Answer::RedirectUrl(u.trim().to_owned());
            }
        }
        _ => {}
    }
    // Inside the organisation first (EXCH), then Outlook Anywhere (EXPR), then any.
    let protocols: Vec<_> = account.children_named("Protocol").collect();
    for kind in ["EXCH", "EXPR", "WEB"] {
        for p in &protocols {
            if p.child_text("Type").map(str::trim) == Some(kind)
                && let Some(url) = p
                    .child_text("EwsUrl")
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
            {
                return Answer::Url(url.to_owned());
            }
        }
    }
    if let Some(url) = protocols.iter().find_map(|p| {
        p.child_text("EwsUrl")
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }) {
        return Answer::Url(url.to_owned());
    }
    Answer::Error("the answer holds no EwsUrl".into())
}

/// The domain of an e-mail address, lower case ("" when it has none).
fn domain_of(email: &str) -> String {
    email
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Whether `host` is `domain` or a host inside it (`mail.example.com` in `example.com`).
fn within(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
}

/// The host of a server the user named (`HOST[:PORT]` or a URL), lower case.
fn named_host(server: &str) -> Option<String> {
    let s = server.trim();
    let url = if s.contains("://") {
        s.to_owned()
    } else {
        format!("https://{s}")
    };
    let parsed = url::Url::parse(&url).ok()?;
    Some(
        parsed
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

/// Whether a `redirectUrl` may be followed, i.e. the password sent there: https, and a host in
/// the address's `domain` or the server the user named. Otherwise the sentence saying why not.
pub fn redirect_allowed(target: &str, domain: &str, server: Option<&str>) -> Result<(), String> {
    let parsed = url::Url::parse(target).map_err(|e| format!("{target:?} is not a URL ({e})"))?;
    if parsed.scheme() != "https" {
        return Err(format!(
            "{} is not https: the password would travel unencrypted",
            clip(target)
        ));
    }
    let host = parsed
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let named = server.and_then(named_host);
    if within(&host, domain) || named.as_deref() == Some(host.as_str()) {
        return Ok(());
    }
    Err(format!(
        "{} is outside {}: the password is not sent there",
        clip(target),
        named.map_or_else(|| domain.to_owned(), |n| format!("{domain} and {n}"))
    ))
}

/// Find the EWS URL of `email`, logging in as `username` with `password`, authenticated as
/// `auth` says: `"basic"` allows Basic authentication (the account says so explicitly), `"ntlm"`
/// insists on NTLM; anything else is NTLM or Negotiate as offered, never Basic.
#[allow(clippy::too_many_arguments)]
pub async fn discover(
    email: &str,
    username: &str,
    password: Secret,
    server: Option<&str>,
    ca_file: Option<std::path::PathBuf>,
    proxy: &crate::config::ProxySetting,
    response_timeout: Duration,
    auth: AuthMethod,
) -> Result<String, ProtoError> {
    let mut email = email.trim().to_owned();
    // Where the password may go: the domain of the address the user gave (a redirect to
    // another address does not widen it), and the server the user named.
    let domain = domain_of(&email);
    let refuse = |from: &str, why: String| {
        ProtoError::new(
            ErrorKind::Auth,
            format!(
                "autodiscover at {from} redirected to {why}; not followed. If that is your organisation's server, name it as the server (host), or enter url yourself"
            ),
        )
    };
    let mut queue = candidates(&email, server);
    if queue.is_empty() {
        return Err(ProtoError::new(
            ErrorKind::Config,
            format!("{email:?} is not an e-mail address; autodiscover needs one (or a server)"),
        ));
    }
    let keepalive = KeepAlive {
        response_timeout_secs: response_timeout.as_secs().max(1),
        ..KeepAlive::default()
    };
    let mut tried = Vec::new();
    let mut redirects = 0;
    while let Some(url) = (!queue.is_empty()).then(|| queue.remove(0)) {
        let mut account = Account::new("autodiscover", "", username);
        account.protocol = Protocol::Ews;
        account.url = Some(url.clone());
        account.auth = match auth {
            AuthMethod::Basic | AuthMethod::Ntlm => auth,
            _ => AuthMethod::Password,
        };
        account.ca_file = ca_file.clone();
        account.proxy = Some(proxy.clone());
        account.derive_host();
        let mut shared = Shared::new(account, keepalive.clone(), Some(password.clone()));
        shared.basic_fallback = false;
        let shared = std::sync::Arc::new(shared);
        let mut http = Http::new(shared);
        let result = async {
            let head = http
                .request("asking autodiscover", &request(&email))
                .await?;
            let body = http.body(&head, "asking autodiscover").await?;
            if head.status != 200 {
                return Err(ProtoError::new(
                    ErrorKind::Protocol,
                    format!("HTTP {} {}", head.status, head.reason),
                ));
            }
            Ok(parse_answer(&body))
        }
        .await;
        match result {
            Ok(Answer::Url(u)) => return Ok(u),
            Ok(Answer::RedirectAddr(a)) if redirects < 3 => {
                // Without a named server, the new address's domain is asked next.
                if server.is_none() && !within(&domain_of(&a), &domain) {
                    return Err(refuse(
                        &url,
                        format!(
                            "the address {}, outside {domain}: the password is not sent to its servers",
                            clip(&a)
                        ),
                    ));
                }
                redirects += 1;
                tried.push(format!("{url}: redirected to {a}"));
                email = a;
                queue = candidates(&email, server);
            }
            Ok(Answer::RedirectUrl(u)) if redirects < 3 => {
                if let Err(why) = redirect_allowed(&u, &domain, server) {
                    return Err(refuse(&url, why));
                }
                redirects += 1;
                tried.push(format!("{url}: redirected to {u}"));
                queue.insert(0, u);
            }
            Ok(Answer::Error(m)) => tried.push(format!("{url}: {m}")),
            Ok(other) => tried.push(format!("{url}: too many redirects ({other:?})")),
            Err(e) if e.kind == ErrorKind::Auth || e.kind == ErrorKind::Tls => {
                return Err(ProtoError::new(
                    e.kind,
                    format!("autodiscover at {url}: {}", e.message),
                ));
            }
            Err(e) => tried.push(format!("{url}: {}", e.message)),
        }
    }
    Err(ProtoError::new(
        ErrorKind::Connect,
        format!(
            "autodiscover found no EWS URL for {email}: {}; enter url yourself (ask your administrator, or look in Outlook: Connection Status)",
            tried.join("; ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_domain_or_the_named_server() {
        assert_eq!(
            candidates("alice@example.com", None),
            [
                "https://example.com/autodiscover/autodiscover.xml",
                "https://autodiscover.example.com/autodiscover/autodiscover.xml"
            ]
        );
        assert_eq!(
            candidates("alice@example.com", Some("localhost:8443")),
            ["https://localhost:8443/autodiscover/autodiscover.xml"]
        );
        assert!(candidates("alice", None).is_empty());
    }

    #[test]
    fn redirects_stay_in_the_domain_or_on_the_named_server_and_on_https() {
        let ok = |t: &str, server: Option<&str>| redirect_allowed(t, "example.com", server);
        assert!(ok("https://example.com/autodiscover/autodiscover.xml", None).is_ok());
        assert!(
            ok(
                "https://mail.EXAMPLE.com/autodiscover/autodiscover.xml",
                None
            )
            .is_ok()
        );
        assert!(ok("https://autodiscover.eu.example.com:8443/a", None).is_ok());
        assert!(ok("https://localhost:8443/a", Some("localhost:8443")).is_ok());
        assert!(
            ok(
                "https://ex.corp.example/a",
                Some("https://ex.corp.example/EWS")
            )
            .is_ok()
        );
        let refused = |t: &str, server: Option<&str>| ok(t, server).unwrap_err();
        assert!(refused("http://mail.example.com/a", None).contains("not https"));
        assert!(refused("https://evil.example/a", None).contains("outside example.com"));
        assert!(refused("https://example.com.evil.example/a", None).contains("outside"));
        assert!(refused("https://notexample.com/a", None).contains("outside"));
        assert!(
            refused("https://127.0.0.1:8443/a", Some("localhost:8443"))
                .contains("outside example.com and localhost")
        );
        assert!(refused("ftp://example.com/a", None).contains("not https"));
        assert!(within("a.b.example.com", "example.com"));
        assert!(!within("example.com", ""));
        assert_eq!(domain_of("Alice@Example.COM."), "example.com");
    }

    #[test]
    fn answers() {
        let settings = br#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"><Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"><User><DisplayName>Alice</DisplayName></User><Account><AccountType>email</AccountType><Action>settings</Action><Protocol><Type>EXPR</Type><EwsUrl>https://mail.example.com/EWS/Exchange.asmx</EwsUrl></Protocol><Protocol><Type>EXCH</Type><EwsUrl>https://ex01.corp.example/EWS/Exchange.asmx</EwsUrl></Protocol></Account></Response></Autodiscover>"#;
        assert_eq!(
            parse_answer(settings),
            Answer::Url("https://ex01.corp.example/EWS/Exchange.asmx".into())
        );
        let redirect = br#"<Autodiscover><Response><Account><Action>redirectAddr</Action><RedirectAddr>a@b.example</RedirectAddr></Account></Response></Autodiscover>"#;
        assert_eq!(
            parse_answer(redirect),
            Answer::RedirectAddr("a@b.example".into())
        );
        let error = br#"<Autodiscover><Response><Error Time="1" Id="2"><ErrorCode>500</ErrorCode><Message>The e-mail address cannot be found.</Message></Error></Response></Autodiscover>"#;
        assert_eq!(
            parse_answer(error),
            Answer::Error("The e-mail address cannot be found.".into())
        );
        assert!(matches!(parse_answer(b"<html>"), Answer::Error(_)));
    }
}
