//! What a Windows certificate-verification error code means for the user.
//!
//! On Windows native-tls verifies the server through SChannel and CryptoAPI, and a failure
//! arrives as a bare `io::Error` from an HRESULT: "OS Error -2146762482 (...) (os error
//! -2146762482)" (under Wine even without the system's text), which says nothing a user can act
//! on and does not contain the word "certificate" the generic advice looks for.
//!
//! The revocation policy itself is the browsers' and needs nothing here: the schannel crate
//! builds the chain with `CERT_CHAIN_REVOCATION_CHECK_CACHE_ONLY` and verifies it with
//! `CERT_CHAIN_POLICY_IGNORE_ALL_REV_UNKNOWN_FLAGS`, so on Windows "revoked" fails and "status
//! unknown / revocation server offline" does not. Wine 8's crypt32 ignores those flags and
//! reports `CERT_E_REVOCATION_FAILURE` instead, hence the advice for that code.

/// A sentence for the SChannel/CryptoAPI error code in `error_text` (native-tls's message),
/// naming `host`; `None` when the text holds no code known here.
pub(crate) fn advice(error_text: &str, host: &str) -> Option<String> {
    let code = os_error_code(error_text)?;
    let text = match code {
        // CRYPT_E_REVOKED, CERT_E_REVOKED
        0x8009_2010 | 0x800B_010C => format!(
            "the certificate of {host} has been revoked by its issuer: do not use this server \
             until its administrator installs a new certificate"
        ),
        // CERT_E_REVOCATION_FAILURE, CRYPT_E_NO_REVOCATION_CHECK, CRYPT_E_REVOCATION_OFFLINE
        0x800B_010E | 0x8009_2012 | 0x8009_2013 => format!(
            "whether the certificate of {host} has been revoked could not be checked (its issuer \
             publishes no revocation list, or it cannot be reached); Windows accepts that for \
             mailpulse, Wine 8 does not: run mailpulse natively or with a newer Wine"
        ),
        // CERT_E_UNTRUSTEDROOT, SEC_E_UNTRUSTED_ROOT, CERT_E_CHAINING
        0x800B_0109 | 0x8009_0325 | 0x800B_010A => format!(
            "the certificate of {host} is not trusted; if the server uses a private certificate \
             authority, set ca_file to its certificate"
        ),
        // CERT_E_CN_NO_MATCH, SEC_E_WRONG_PRINCIPAL
        0x800B_010F | 0x8009_0322 => format!(
            "the certificate of {host} is for another name: use the host name the certificate \
             names in `host`"
        ),
        // CERT_E_EXPIRED, SEC_E_CERT_EXPIRED
        0x800B_0101 | 0x8009_0328 => format!(
            "the certificate of {host} has expired or is not valid yet: check this computer's \
             date and time, else the server's administrator must renew it"
        ),
        // CERT_E_WRONG_USAGE
        0x800B_0110 => {
            format!("the certificate of {host} is not meant for servers (wrong extended key usage)")
        }
        _ => return None,
    };
    Some(text)
}

/// The HRESULT in "... (os error -2146762482)", as the unsigned code Windows documents.
fn os_error_code(text: &str) -> Option<u32> {
    let (_, rest) = text.rsplit_once("os error ")?;
    let digits: &str = rest
        .split(|c: char| c != '-' && !c.is_ascii_digit())
        .next()?;
    digits.parse::<i32>().ok().map(|n| n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wine_8_revocation_failure_gets_a_sentence() {
        let text = "OS Error -2146762482 (FormatMessageW() returned error 317) \
                    (os error -2146762482)";
        assert_eq!(os_error_code(text), Some(0x800B_010E));
        let a = advice(text, "mail.example.org").unwrap();
        assert!(
            a.contains("mail.example.org") && a.contains("revoked"),
            "{a}"
        );
    }

    #[test]
    fn revoked_and_untrusted_are_told_apart() {
        let revoked = advice("(os error -2146885616)", "h").unwrap();
        assert!(revoked.contains("has been revoked"), "{revoked}");
        let untrusted = advice("x (os error -2146762487)", "h").unwrap();
        assert!(untrusted.contains("ca_file"), "{untrusted}");
    }

    #[test]
    fn other_texts_have_no_advice() {
        assert_eq!(advice("certificate verify failed", "h"), None);
        assert_eq!(advice("(os error 10054)", "h"), None);
        assert_eq!(advice("(os error x)", "h"), None);
    }
}
