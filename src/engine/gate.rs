//! The login gate of one account: after the server rejected the credentials, no login to that
//! account for [`AUTH_BLOCK`], whatever asks for one ("Check now", a network change or resume,
//! a supervisor's retry, another folder of the same account, the adaptive keep-alive's probe
//! connections). A wrong password retried by every trigger gets the account locked.
//!
//! Every login of an account goes through its [`Gated`] connector. Until a login has succeeded
//! (at start, after a reload or a lifted block), logins of the account run one at a time, so
//! that three folders starting together with a wrong password cost one rejected login, not
//! three. The block ends early only when the user changed something that could fix it: the
//! account's configuration (a reload starts the account afresh, with a new gate), or the stored
//! credential (the keyring password or OAuth2 refresh token) differs from the one that was
//! rejected when the engine looks again ("Check now", the tray after Settings closed).

use async_trait::async_trait;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Account;
use crate::error::{ErrorKind, ProtoError};
use crate::protocol::{Connector, FolderInfo, Probe, Session};

/// The user's "Check now" may try a rejected password again this long after the rejection.
pub const USER_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// No login for this long after the server rejected the credentials.
pub const AUTH_BLOCK: std::time::Duration = super::backoff::AUTH_MIN;

/// A fingerprint of the account's stored credential (never the credential itself), or `None`
/// when there is nothing to compare (a `password_command`, whose output is not looked at
/// outside a login). Called on the blocking pool: it may read the OS keyring.
pub type CredentialFingerprint = Arc<dyn Fn(&Account) -> Option<u64> + Send + Sync>;

struct Block {
    /// When the server rejected the credentials.
    since: Instant,
    until: Instant,
    error: ProtoError,
    /// The credential that was rejected.
    credential: Option<u64>,
}

#[derive(Default)]
struct State {
    block: Option<Block>,
    /// A login with the current credentials has succeeded.
    proven: bool,
}

pub(crate) struct Gate {
    account: Account,
    fingerprint: CredentialFingerprint,
    state: Mutex<State>,
    /// Held by the one login in flight while the credentials are not proven.
    serial: tokio::sync::Mutex<()>,
    /// Bumped when a block is lifted early, so that waiting supervisors try at once.
    lifted: watch::Sender<u64>,
}

impl Gate {
    pub fn new(account: Account, fingerprint: CredentialFingerprint) -> Arc<Gate> {
        Arc::new(Gate {
            account,
            fingerprint,
            state: Mutex::new(State::default()),
            serial: tokio::sync::Mutex::new(()),
            lifted: watch::channel(0).0,
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Until when logins are blocked, if they are.
    pub fn blocked_until(&self) -> Option<Instant> {
        self.with(|s| {
            s.block
                .as_ref()
                .map(|b| b.until)
                .filter(|until| *until > Instant::now())
        })
    }

    /// Tells when a block was lifted early.
    pub fn lifted(&self) -> watch::Receiver<u64> {
        self.lifted.subscribe()
    }

    /// The rejection that blocks logins now, as the error a refused attempt returns.
    fn refusal(&self) -> Option<ProtoError> {
        self.with(|s| {
            s.block
                .as_ref()
                .filter(|b| b.until > Instant::now())
                .map(|b| b.error.clone())
        })
    }

    async fn credential(&self) -> Option<u64> {
        let (f, account) = (self.fingerprint.clone(), self.account.clone());
        tokio::task::spawn_blocking(move || f(&account))
            .await
            .ok()
            .flatten()
    }

    /// Run one login (`attempt`) unless logins are blocked; a rejection blocks them.
    pub async fn login<T>(
        &self,
        attempt: impl Future<Output = Result<T, ProtoError>>,
    ) -> Result<T, ProtoError> {
        if let Some(e) = self.refusal() {
            return Err(e);
        }
        let _serial = if self.with(|s| s.proven) {
            None
        } else {
            let guard = self.serial.lock().await;
            // The login we waited for may have been rejected meanwhile.
            if let Some(e) = self.refusal() {
                return Err(e);
            }
            Some(guard)
        };
        let result = attempt.await;
        match &result {
            Ok(_) => self.with(|s| {
                s.proven = true;
                s.block = None;
            }),
            Err(e) if e.kind == ErrorKind::Auth => self.rejected(e).await,
            Err(_) => {}
        }
        result
    }

    /// The server rejected the credentials (at login, or later in a session, as EWS asks for
    /// them on every request): block logins.
    pub async fn rejected(&self, e: &ProtoError) {
        let credential = self.credential().await;
        tracing::info!(
            account = %self.account.name,
            "the server rejected the credentials: no new login for {} minutes, unless the \
             password or the account's settings change",
            AUTH_BLOCK.as_secs() / 60
        );
        self.with(|s| {
            s.proven = false;
            s.block = Some(Block {
                since: Instant::now(),
                until: Instant::now() + AUTH_BLOCK,
                error: e.clone(),
                credential,
            });
        });
    }

    /// The user's "Check now": one more login may try, when the rejection is at least
    /// [`USER_RETRY`] old (a second rejection blocks again, from then). Returns whether it may.
    pub fn user_retry(&self) -> bool {
        let now = Instant::now();
        let lift = self.with(|s| match &s.block {
            Some(b) if b.until > now && now >= b.since + USER_RETRY => {
                s.block = None;
                true
            }
            _ => false,
        });
        if lift {
            tracing::info!(
                account = %self.account.name,
                "Check now: trying the rejected credentials once more"
            );
            self.lifted.send_modify(|n| *n += 1);
        }
        lift
    }

    /// Look at the stored credential again: lift the block when it is not the one that was
    /// rejected (the user set a new password or signed in again).
    pub async fn recheck(&self) {
        if self.blocked_until().is_none() {
            return;
        }
        let now = self.credential().await;
        let lift = self.with(|s| match &s.block {
            Some(b) if now.is_some() && now != b.credential => {
                s.block = None;
                true
            }
            _ => false,
        });
        if lift {
            tracing::info!(
                account = %self.account.name,
                "the stored credential changed: logging in again"
            );
            self.lifted.send_modify(|n| *n += 1);
        }
    }
}

/// An account's connector with every login going through its [`Gate`].
pub(crate) struct Gated {
    pub inner: Arc<dyn Connector>,
    pub gate: Arc<Gate>,
}

#[async_trait]
impl Connector for Gated {
    async fn open(&self, folder: &str) -> Result<(Box<dyn Session>, FolderInfo), ProtoError> {
        self.gate.login(self.inner.open(folder)).await
    }

    async fn open_probe(&self) -> Result<Box<dyn Probe>, ProtoError> {
        self.gate.login(self.inner.open_probe()).await
    }

    async fn open_idle_probe(&self, folder: &str) -> Result<Box<dyn Probe>, ProtoError> {
        self.gate.login(self.inner.open_idle_probe(folder)).await
    }
}

/// The default fingerprint: a keyed hash of the keyring entries the account logs in with (its
/// password, or its OAuth2 refresh token; and the password of its proxy, which can reject
/// credentials too); `None` when there is none (a `password_command`, no proxy user).
pub fn keyring_fingerprint(account: &Account) -> Option<u64> {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::OnceLock;
    // A random key per process: the value is no stable hash of the password.
    static KEY: OnceLock<RandomState> = OnceLock::new();
    let own = if account.password_command.is_some() {
        None
    } else if account.auth.is_oauth() {
        crate::credentials::get_refresh_token(&account.username, &account.host)
            .ok()
            .flatten()
    } else {
        crate::credentials::get_password(&account.username, &account.host)
            .ok()
            .flatten()
    };
    let proxy = match account.proxy_setting() {
        crate::config::ProxySetting::Manual(url) => url.username.as_ref().and_then(|user| {
            crate::credentials::get_password(user, &url.keyring_host())
                .ok()
                .flatten()
        }),
        _ => None,
    };
    if own.is_none() && proxy.is_none() {
        return None;
    }
    Some(
        KEY.get_or_init(RandomState::new)
            .hash_one((own.as_deref(), proxy.as_deref())),
    )
}
