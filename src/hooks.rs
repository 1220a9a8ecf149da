//! `on_new_mail`: a user command run for every new message (e.g. `mbsync work`). The message's
//! details go into its environment, never into its command line, so a hostile subject cannot
//! inject shell syntax: `sh -c` expands `"$MAILPULSE_SUBJECT"` as data, and on Windows the
//! command runs without cmd.exe, which would paste `%MAILPULSE_SUBJECT%` into its command text.
//!
//! Both shells (`watch` and the tray) run hooks through one [`Hooks`]: at most [`MAX_RUNNING`]
//! at a time and [`MAX_WAITING`] waiting; beyond that a run is skipped, and one warning says how
//! many were (a catch-up of 200 messages must not start 200 processes at once). A hook that runs
//! longer than [`HOOK_TIMEOUT`] is killed with everything it started (on Unix it leads a
//! process group of its own, see `platform::kill_hook_group`).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use crate::config::Config;
use crate::event::{Event, MailItem};
use crate::platform::{hook_std, kill_hook_group};

/// A hook that runs longer than this is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// Hooks running at the same time.
pub const MAX_RUNNING: usize = 4;
/// Hooks waiting for one of the running ones to end; more are skipped.
pub const MAX_WAITING: usize = 64;

struct Job {
    command_line: String,
    account: String,
    folder: String,
    item: MailItem,
}

/// The hook runner of a shell. Create it on the tokio runtime; [`Hooks::on_new_mail`] may be
/// called from any thread.
pub struct Hooks {
    jobs: mpsc::Sender<Job>,
    skipped: Arc<AtomicUsize>,
}

impl Hooks {
    /// A runner with the default limits, on the current tokio runtime.
    pub fn spawn() -> Hooks {
        Hooks::with_limits(MAX_RUNNING, MAX_WAITING, HOOK_TIMEOUT)
    }

    /// A runner with these limits, on the current tokio runtime.
    pub fn with_limits(running: usize, waiting: usize, timeout: Duration) -> Hooks {
        let (jobs, mut queue) = mpsc::channel::<Job>(waiting.max(1));
        let skipped = Arc::new(AtomicUsize::new(0));
        let skips = skipped.clone();
        let slots = Arc::new(Semaphore::new(running.max(1)));
        tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                // The queue has drained: say once how many runs a burst cost.
                if queue.is_empty() {
                    let n = skips.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        tracing::warn!(
                            "on_new_mail: skipped {n} run(s): {running} were running and \
                             {waiting} waiting"
                        );
                    }
                }
                tokio::spawn(async move {
                    run(job, timeout).await;
                    drop(slot);
                });
            }
        });
        Hooks { jobs, skipped }
    }

    /// What both shells do with every event: a `NewMail` runs its account's `on_new_mail`.
    pub fn on_event(&self, config: &Config, event: &Event) {
        if let Event::NewMail {
            account,
            folder,
            item,
            ..
        } = event
            && let Some(cmd) = config
                .account(account)
                .and_then(|a| a.on_new_mail.as_deref())
        {
            self.on_new_mail(cmd, account, folder, item);
        }
    }

    /// Run the account's hook for a new message, when a place is free; `false` when it was
    /// skipped (too many waiting).
    pub fn on_new_mail(
        &self,
        command_line: &str,
        account: &str,
        folder: &str,
        item: &MailItem,
    ) -> bool {
        let job = Job {
            command_line: command_line.to_owned(),
            account: account.to_owned(),
            folder: folder.to_owned(),
            item: item.clone(),
        };
        match self.jobs.try_send(job) {
            Ok(()) => true,
            Err(_) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Kills the hook's process group when the hook is abandoned (timeout, or the runtime shutting
/// down), not when it ended by itself: what it started on purpose may stay.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            kill_hook_group(pid);
        }
    }
}

/// Start the command and wait for it (at most `timeout`); failures are logged, never fatal.
async fn run(job: Job, timeout: Duration) {
    let Job {
        command_line,
        account,
        folder,
        item,
    } = job;
    let mut command = tokio::process::Command::from(hook_std(&command_line));
    command
        .env("MAILPULSE_ACCOUNT", &account)
        .env("MAILPULSE_FOLDER", &folder)
        .env("MAILPULSE_UID", item.uid.to_string())
        .env("MAILPULSE_FROM", &item.from)
        .env("MAILPULSE_SUBJECT", &item.subject)
        .env(
            "MAILPULSE_DATE",
            item.date.map(|d| d.to_rfc3339()).unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(account = %account, "on_new_mail could not be started: {e}");
            return;
        }
    };
    let mut group = GroupGuard(child.id());
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(result) => {
            group.0 = None;
            match result {
                Ok(status) if status.success() => {}
                Ok(status) => {
                    tracing::warn!(account = %account, "on_new_mail exited with {status}")
                }
                Err(e) => tracing::warn!(account = %account, "on_new_mail failed: {e}"),
            }
        }
        Err(_) => {
            drop(group); // the whole group, before the hook is reaped
            let _ = child.kill().await;
            tracing::warn!(
                account = %account,
                "on_new_mail killed after {} s",
                timeout.as_secs()
            );
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant;

    fn item(uid: u32) -> MailItem {
        MailItem {
            uid,
            from: "Bob <bob@example.org>".into(),
            subject: "hello".into(),
            date: None,
            seen: false,
        }
    }

    fn files(dir: &Path, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names
    }

    /// A catch-up of thousands used to start thousands of processes. Now at most 4 run at
    /// once (each hook counts the others' marker files while it runs) and the rest beyond the
    /// queue are skipped.
    #[tokio::test]
    async fn at_most_four_hooks_run_at_once_and_a_flood_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // Each hook marks itself running, records how many are running, and waits a little so
        // that they overlap when not limited.
        let hook = format!(
            "touch '{d}/running.'$MAILPULSE_UID; ls '{d}' | grep -c '^running' > '{d}/seen.'$MAILPULSE_UID; \
             sleep 0.3; rm '{d}/running.'$MAILPULSE_UID; touch '{d}/done.'$MAILPULSE_UID"
        );
        let hooks = Hooks::with_limits(4, 10, Duration::from_secs(30));
        let queued = (1..=40)
            .filter(|uid| hooks.on_new_mail(&hook, "work", "INBOX", &item(*uid)))
            .count();
        assert_eq!(queued, 10, "the queue holds 10; the other 30 are skipped");
        let deadline = Instant::now() + Duration::from_secs(30);
        while files(dir.path(), "done.").len() < queued && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(files(dir.path(), "done.").len(), queued);
        let most = files(dir.path(), "seen.")
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
                text.trim().parse::<usize>().unwrap()
            })
            .max()
            .unwrap();
        assert!((1..=4).contains(&most), "{most} ran at once");
        // The runner takes new work after the flood.
        assert!(hooks.on_new_mail(&hook, "work", "INBOX", &item(99)));
    }

    fn alive(pid: &str) -> bool {
        // A zombie (state Z) is dead already; it only waits for its parent.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
            Err(_) => std::process::Command::new("kill")
                .args(["-0", pid])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    /// The timeout killed `sh` and left what it started running. Now the hook's whole process
    /// group goes: the `sleep 300` it started in the background is gone too.
    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("sleep.pid");
        let hook = format!("sleep 300 & echo $! > '{}'; wait", pidfile.display());
        let hooks = Hooks::with_limits(4, 10, Duration::from_secs(1));
        assert!(hooks.on_new_mail(&hook, "work", "INBOX", &item(1)));
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Ok(text) = std::fs::read_to_string(&pidfile)
                && !text.trim().is_empty()
            {
                break text.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "the hook did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(alive(&pid), "the background sleep runs");
        let deadline = Instant::now() + Duration::from_secs(15);
        while alive(&pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let survived = alive(&pid);
        if survived {
            // Don't leave it behind.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
        }
        assert!(!survived, "the hook's child {pid} survived the timeout");
    }
}
