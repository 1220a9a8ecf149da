//! `on_new_mail`: a user command run for every new message (e.g. `mbsync work`). The message's
//! details go into its environment, never into its command line, so a hostile subject cannot
//! inject shell syntax: `sh -c` expands `"$MAILPULSE_SUBJECT"` as data, and on Windows the
//! command runs without cmd.exe, which would paste `%MAILPULSE_SUBJECT%` into its command text.

use std::process::Stdio;
use std::time::Duration;

use crate::event::MailItem;
use crate::platform::hook_std;

/// A hook that runs longer than this is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// Start the command in the background; failures are logged, never fatal.
pub fn on_new_mail(command_line: &str, account: &str, folder: &str, item: &MailItem) {
    let mut command = tokio::process::Command::from(hook_std(command_line));
    command
        .env("MAILPULSE_ACCOUNT", account)
        .env("MAILPULSE_FOLDER", folder)
        .env("MAILPULSE_UID", item.uid.to_string())
        .env("MAILPULSE_FROM", &item.from)
        .env("MAILPULSE_SUBJECT", &item.subject)
        .env(
            "MAILPULSE_DATE",
            item.date.map(|d| d.to_rfc3339()).unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let account = account.to_owned();
    match command.spawn() {
        Err(e) => tracing::warn!(account = %account, "on_new_mail could not be started: {e}"),
        Ok(mut child) => {
            tokio::spawn(async move {
                match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
                    Ok(Ok(status)) if status.success() => {}
                    Ok(Ok(status)) => {
                        tracing::warn!(account = %account, "on_new_mail exited with {status}")
                    }
                    Ok(Err(e)) => tracing::warn!(account = %account, "on_new_mail failed: {e}"),
                    Err(_) => {
                        let _ = child.kill().await;
                        tracing::warn!(account = %account, "on_new_mail killed after {} s", HOOK_TIMEOUT.as_secs());
                    }
                }
            });
        }
    }
}
