//! NTLM (NTLMv2 responses) for on-premises Exchange, with `ntlmclient` for the messages.
//!
//! NTLM authenticates the TCP connection, not a request: the type 1 → 401 with type 2 → type 3
//! exchange runs on the connection that then carries the requests (and the long streaming
//! request), which is why EWS runs on our own HTTP client (see `http.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::secret::Secret;

/// `DOMAIN\user` → (user, DOMAIN); `user@domain` and plain names go as they are, domain empty
/// (Windows resolves a UPN itself).
pub fn split_user(username: &str) -> (String, String) {
    match username.split_once('\\') {
        Some((domain, user)) => (user.to_owned(), domain.to_owned()),
        None => (username.to_owned(), String::new()),
    }
}

fn workstation() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 15)
        .unwrap_or_else(|| "MAILPULSE".into())
        .to_uppercase()
}

/// The type 1 (negotiate) message, base64.
pub fn negotiate() -> String {
    let flags = ntlmclient::Flags::NEGOTIATE_UNICODE
        | ntlmclient::Flags::REQUEST_TARGET
        | ntlmclient::Flags::NEGOTIATE_NTLM
        | ntlmclient::Flags::NEGOTIATE_ALWAYS_SIGN
        | ntlmclient::Flags::NEGOTIATE_NTLM2_KEY;
    let msg = ntlmclient::Message::Negotiate(ntlmclient::NegotiateMessage {
        flags,
        supplied_domain: String::new(),
        supplied_workstation: String::new(),
        os_version: Default::default(),
    });
    STANDARD.encode(msg.to_bytes().expect("a negotiate message always encodes"))
}

/// The type 3 (authenticate) message answering the server's type 2 `challenge` (base64).
pub fn authenticate(challenge: &str, username: &str, password: &Secret) -> Result<String, String> {
    let bytes = STANDARD
        .decode(challenge.trim())
        .map_err(|_| "the NTLM challenge is not base64".to_owned())?;
    let challenge = match ntlmclient::Message::try_from(bytes.as_slice()) {
        Ok(ntlmclient::Message::Challenge(c)) => c,
        Ok(_) => return Err("the server sent another NTLM message than a challenge".into()),
        Err(e) => return Err(format!("the NTLM challenge is malformed ({e:?})")),
    };
    let target_info: Vec<u8> = challenge
        .target_information
        .iter()
        .flat_map(|e| e.to_bytes())
        .collect();
    let (user, domain) = split_user(username);
    let creds = ntlmclient::Credentials {
        username: user,
        password: password.expose().to_owned(),
        domain,
    };
    let response = ntlmclient::respond_challenge_ntlm_v2(
        challenge.challenge,
        &target_info,
        ntlmclient::get_ntlm_time(),
        &creds,
    );
    let flags = ntlmclient::Flags::NEGOTIATE_UNICODE | ntlmclient::Flags::NEGOTIATE_NTLM;
    let msg = response.to_message(&creds, &workstation(), flags);
    let bytes = msg
        .to_bytes()
        .map_err(|e| format!("cannot encode the NTLM answer ({e:?})"))?;
    Ok(STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_domains() {
        assert_eq!(split_user("CORP\\alice"), ("alice".into(), "CORP".into()));
        assert_eq!(
            split_user("alice@corp.example"),
            ("alice@corp.example".into(), String::new())
        );
    }

    #[test]
    fn garbage_challenges_are_errors() {
        let pw = Secret::new("x".into());
        assert!(authenticate("%%%", "a", &pw).is_err());
        assert!(authenticate(&STANDARD.encode(b"NTLMSSP\0\x02\0\0\0"), "a", &pw).is_err());
        assert!(authenticate(&negotiate(), "a", &pw).is_err());
    }
}
