//! NTLM (NTLMv2 responses) for on-premises Exchange and for proxies that want it, with
//! `ntlmclient` for the messages.
//!
//! NTLM authenticates the TCP connection, not a request: the type 1 → 401 (or 407) with type 2
//! → type 3 exchange runs on the connection that then carries the requests (and the long
//! streaming request), which is why EWS runs on our own HTTP client (see `http.rs`), and why a
//! proxy's tunnel is asked for three times on one connection (see `tunnel.rs`).

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
    let (server_challenge, target_info): ([u8; 8], Vec<u8>) =
        match ntlmclient::Message::try_from(bytes.as_slice()) {
            Ok(ntlmclient::Message::Challenge(c)) => (
                c.challenge,
                c.target_information
                    .iter()
                    .flat_map(|e| e.to_bytes())
                    .collect(),
            ),
            Ok(_) => return Err("the server sent another NTLM message than a challenge".into()),
            // The minimal type 2 message — signature, type, target name, flags, challenge: 32
            // bytes, as older servers and proxies send it and curl takes it — has no target
            // information, which ntlmclient insists on.
            Err(_) if minimal_challenge(&bytes) => {
                let mut c = [0u8; 8];
                c.copy_from_slice(&bytes[24..32]);
                (c, Vec::new())
            }
            Err(e) => return Err(format!("the NTLM challenge is malformed ({e:?})")),
        };
    let (user, domain) = split_user(username);
    let creds = ntlmclient::Credentials {
        username: user,
        password: password.expose().to_owned(),
        domain,
    };
    let response = ntlmclient::respond_challenge_ntlm_v2(
        server_challenge,
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

/// A type 2 message of at least the 32 bytes every NTLM version has.
fn minimal_challenge(bytes: &[u8]) -> bool {
    bytes.len() >= 32 && bytes.starts_with(b"NTLMSSP\0") && bytes[8..12] == [2, 0, 0, 0]
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
    fn a_minimal_challenge_without_target_information_is_answered() {
        // Squid's ntlm_fake_auth sends this one (its target name's offset is garbage).
        let squid = "TlRMTVNTUAACAAAACQAJAK6qqqoGgggAPc51b0HtcqQAAAAAAAA6AFdPUktHUk9VUA==";
        let answer = authenticate(squid, "CORP\\pat", &Secret::new("pw".into())).unwrap();
        let bytes = STANDARD.decode(answer).unwrap();
        match ntlmclient::Message::try_from(bytes.as_slice()) {
            Ok(ntlmclient::Message::Authenticate(a)) => {
                assert_eq!(a.user_name, "pat");
                assert_eq!(a.domain_name, "CORP");
            }
            other => panic!("{other:?}"),
        }
        let short = STANDARD.encode(&STANDARD.decode(squid).unwrap()[..31]);
        assert!(authenticate(&short, "pat", &Secret::new("pw".into())).is_err());
    }

    #[test]
    fn garbage_challenges_are_errors() {
        let pw = Secret::new("x".into());
        assert!(authenticate("%%%", "a", &pw).is_err());
        assert!(authenticate(&STANDARD.encode(b"NTLMSSP\0\x02\0\0\0"), "a", &pw).is_err());
        assert!(authenticate(&negotiate(), "a", &pw).is_err());
    }
}
