//! Getting an account's password without ever writing it down: `password_command` (stdout,
//! trimmed). The [`Secret`] type keeps it out of `Debug` output, logs and panics.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::config::Account;
use crate::error::{ErrorKind, ProtoError};

/// How long a password command may take (it may prompt for a GPG passphrase).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A password or token. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The account's password: from its `password_command` when it has one, else from the OS
/// keyring (entry "user@host" of service "mailpulse", see [`crate::credentials`]).
pub async fn password(account: &Account) -> Result<Secret, ProtoError> {
    let Some(command_line) = account.password_command.as_deref() else {
        return from_keyring(account).await;
    };
    command_secret(&account.name, "password_command", command_line).await
}

/// Run a secret-printing command (`key` of account `account` in messages) and return what it
/// printed on standard output, trimmed.
pub async fn command_secret(
    account: &str,
    key: &str,
    command_line: &str,
) -> Result<Secret, ProtoError> {
    let fail = |what: String| {
        ProtoError::new(
            ErrorKind::Secret,
            format!("{key} of account {account:?} {what}"),
        )
    };
    let mut child = crate::platform::shell(command_line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("could not be started: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        r1.and(r2)?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
        Err(_) => {
            return Err(fail(format!(
                "did not finish within {} s",
                COMMAND_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) => return Err(fail(format!("failed: {e}"))),
        Ok(Ok(r)) => r,
    };
    if !status.success() {
        // Its stderr is about the failure (e.g. "not in the password store"), not the secret.
        let err = String::from_utf8_lossy(&err);
        let err = err.trim();
        let detail = if err.is_empty() {
            String::new()
        } else {
            format!(": {}", truncate(err, 300))
        };
        return Err(fail(format!("exited with {status}{detail}")));
    }
    let value =
        String::from_utf8(out).map_err(|_| fail("printed something that is not UTF-8".into()))?;
    let value = value.trim_end_matches(['\r', '\n']).trim();
    if value.is_empty() {
        return Err(fail("printed nothing".into()));
    }
    Ok(Secret(value.to_owned()))
}

async fn from_keyring(account: &Account) -> Result<Secret, ProtoError> {
    let (user, host) = (account.username.clone(), account.host.clone());
    // The keyring speaks D-Bus (or the platform API) synchronously and may wait for an unlock.
    let found = tokio::task::spawn_blocking(move || crate::credentials::get_password(&user, &host))
        .await
        .map_err(|e| ProtoError::new(ErrorKind::Secret, format!("keyring lookup failed: {e}")))?;
    match found {
        Ok(Some(password)) => Ok(Secret(password)),
        Ok(None) => Err(ProtoError::new(
            ErrorKind::Secret,
            format!(
                "no password for account {:?}: store it with `mailpulse password set --account {}` \
                 (or in Settings), or set password_command in the config",
                account.name, account.name
            ),
        )),
        Err(e) => Err(ProtoError::new(
            ErrorKind::Secret,
            format!(
                "cannot read the password of account {:?} from the keyring: {e}",
                account.name
            ),
        )),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn account(cmd: Option<&str>) -> Account {
        let mut a = Account::new("work", "h", "u");
        a.password_command = cmd.map(str::to_owned);
        a
    }

    #[tokio::test]
    async fn command_output_is_trimmed() {
        let s = password(&account(Some("printf '  s3cret pw \\n'")))
            .await
            .unwrap();
        assert_eq!(s.expose(), "s3cret pw");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }

    #[tokio::test]
    async fn failures_say_what_to_do_and_never_echo_stdout() {
        let e = password(&account(Some(
            "echo hunter2; echo 'no such entry' >&2; exit 3",
        )))
        .await
        .unwrap_err();
        assert!(
            e.message
                .contains("exited with exit status: 3: no such entry"),
            "{e}"
        );
        assert!(!e.message.contains("hunter2"), "{e}");
        let e = password(&account(Some("true"))).await.unwrap_err();
        assert!(e.message.contains("printed nothing"), "{e}");
    }
}
