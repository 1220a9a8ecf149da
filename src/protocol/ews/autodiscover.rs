//! Autodiscover (POX, `autodiscover.xml`): the EWS URL of a mailbox from its e-mail address, for a
//! user who does not know it (`mailpulse discover`, and "Find server" in Settings).
//!
//! Tried in order: `https://DOMAIN/autodiscover/autodiscover.xml`, then
//! `https://autodiscover.DOMAIN/autodiscover/autodiscover.xml` (or only the server the user
//! names). The request is authenticated like EWS (Basic or NTLM, as offered). `redirectAddr`
//! (another address) and `redirectUrl` (another server) are followed, at most three times.

use std::time::Duration;

use super::{Http, Shared, xml};
use crate::config::{Account, AuthMethod, KeepAlive, Protocol};
use crate::error::{ErrorKind, ProtoError};
use crate::protocol::net::clip;
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

/// Find the EWS URL of `email`, logging in as `username` with `password`.
pub async fn discover(
    email: &str,
    username: &str,
    password: Secret,
    server: Option<&str>,
    ca_file: Option<std::path::PathBuf>,
    response_timeout: Duration,
) -> Result<String, ProtoError> {
    let mut email = email.trim().to_owned();
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
        account.auth = AuthMethod::Password;
        account.ca_file = ca_file.clone();
        account.derive_host();
        let shared = std::sync::Arc::new(Shared::new(
            account,
            keepalive.clone(),
            Some(password.clone()),
        ));
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
                redirects += 1;
                tried.push(format!("{url}: redirected to {a}"));
                email = a;
                queue = candidates(&email, server);
            }
            Ok(Answer::RedirectUrl(u)) if redirects < 3 && u.starts_with("https://") => {
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
