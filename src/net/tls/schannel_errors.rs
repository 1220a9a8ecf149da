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

use super::Problem;

/// What the SChannel/CryptoAPI error code in `error_text` (native-tls's message) means;
/// `None` when the text holds no code known here.
pub(super) fn problem(error_text: &str) -> Option<Problem> {
    let code = os_error_code(error_text)?;
    Some(match code {
        // CRYPT_E_REVOKED, CERT_E_REVOKED
        0x8009_2010 | 0x800B_010C => Problem::Revoked,
        // CERT_E_REVOCATION_FAILURE, CRYPT_E_NO_REVOCATION_CHECK, CRYPT_E_REVOCATION_OFFLINE
        0x800B_010E | 0x8009_2012 | 0x8009_2013 => Problem::RevocationUnknown,
        // CERT_E_UNTRUSTEDROOT, SEC_E_UNTRUSTED_ROOT, CERT_E_CHAINING
        0x800B_0109 | 0x8009_0325 | 0x800B_010A => Problem::Untrusted,
        // CERT_E_CN_NO_MATCH, SEC_E_WRONG_PRINCIPAL
        0x800B_010F | 0x8009_0322 => Problem::WrongName,
        // CERT_E_EXPIRED, SEC_E_CERT_EXPIRED
        0x800B_0101 | 0x8009_0328 => Problem::Expired,
        // CERT_E_WRONG_USAGE
        0x800B_0110 => Problem::WrongUsage,
        _ => return None,
    })
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
    fn wine_8_revocation_failure_is_told() {
        let text = "OS Error -2146762482 (FormatMessageW() returned error 317) \
                    (os error -2146762482)";
        assert_eq!(os_error_code(text), Some(0x800B_010E));
        assert_eq!(problem(text), Some(Problem::RevocationUnknown));
    }

    #[test]
    fn revoked_and_untrusted_are_told_apart() {
        assert_eq!(problem("(os error -2146885616)"), Some(Problem::Revoked));
        assert_eq!(
            problem("x (os error -2146762487)"),
            Some(Problem::Untrusted)
        );
    }

    #[test]
    fn other_texts_have_no_advice() {
        assert_eq!(problem("certificate verify failed"), None);
        assert_eq!(problem("(os error 10054)"), None);
        assert_eq!(problem("(os error x)"), None);
    }
}
