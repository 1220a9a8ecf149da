//! The one trait every mail protocol implements, so the engine never sees a socket.
//!
//! A [`Connector`] opens a [`Session`] on one folder; the session answers the "last inbox item"
//! query (the keep-alive), fetches what arrived after a UID, and waits for the server to push a
//! change. IMAP lives in [`imap`], Exchange Web Services in [`ews`], Microsoft Graph in
//! [`graph`]; the two HTTP backends share [`http`] (the HTTP/1.1 client) and [`uid_map`]. All
//! of them connect through [`crate::net`] (TCP, the proxy tunnel, TLS).

pub mod ews;
pub(crate) mod graph;
pub(crate) mod http;
pub mod imap;
pub(crate) mod uid_map;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::{Account, KeepAlive, Protocol};
use crate::error::{ErrorKind, ProtoError};
use crate::event::MailItem;

/// RFC 2177: re-issue IDLE at least every 29 minutes, even with keep-alive off.
pub const IDLE_REISSUE: Duration = Duration::from_secs(29 * 60);

/// What a freshly opened folder looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderInfo {
    pub uid_validity: u32,
    /// Number of messages in the folder.
    pub exists: u32,
    /// The server can push changes (IMAP IDLE); otherwise the engine polls.
    pub can_push: bool,
}

/// One batch of a catch-up ([`Session::items_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub items: Vec<MailItem>,
    /// `Some(u)`: every message up to UID `u` is covered, more may follow (ask again from `u`);
    /// `None`: the folder is covered up to now.
    pub covered: Option<u32>,
}

/// Why [`Session::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The server reported a change (new message, expunge, flags).
    Changed,
    /// `max` elapsed without a change; the session is usable again.
    Timeout,
    /// The stop token was cancelled; the session is usable again.
    Interrupted,
}

#[async_trait]
pub trait Connector: Send + Sync {
    /// Connect, authenticate and open `folder` read-only.
    async fn open(&self, folder: &str) -> Result<(Box<dyn Session>, FolderInfo), ProtoError>;
    /// Connect and authenticate a second connection that the adaptive keep-alive holds idle to
    /// measure how long the path keeps idle flows. It must send nothing by itself while idle:
    /// no IDLE traffic, no TCP keep-alive probes.
    async fn open_probe(&self) -> Result<Box<dyn Probe>, ProtoError> {
        Err(ProtoError::new(
            ErrorKind::Protocol,
            "this protocol cannot open a probe connection",
        ))
    }
    /// Like [`open_probe`](Self::open_probe), but waiting for pushes on `folder` (IMAP: IDLE)
    /// like the main session does, so that whatever the server sends by itself while idle
    /// (Dovecot's `* OK Still here`) crosses the path too. `ping` ends the wait.
    async fn open_idle_probe(&self, _folder: &str) -> Result<Box<dyn Probe>, ProtoError> {
        Err(ProtoError::new(
            ErrorKind::Protocol,
            "this protocol cannot open an idle probe connection",
        ))
    }
}

/// An authenticated, otherwise unused connection (see [`Connector::open_probe`]).
#[async_trait]
pub trait Probe: Send {
    /// One round trip that needs the path to still know the flow (IMAP: `NOOP`). The caller
    /// bounds it with the response timeout: no answer means the path forgot the flow.
    async fn ping(&mut self) -> Result<(), ProtoError>;
    /// Log out politely (best effort).
    async fn close(self: Box<Self>);
}

#[async_trait]
pub trait Session: Send {
    /// The "last inbox item" query: the newest message, `None` for an empty folder. This is
    /// the keep-alive; it costs the same on a folder of 10 or 100 000 messages.
    async fn last_item(&mut self) -> Result<Option<MailItem>, ProtoError>;
    /// The keep-alive form of the same query: only the newest message's UID (`None` when
    /// empty). Cheaper on the wire; the engine fetches details only when the UID moved.
    async fn newest_uid(&mut self) -> Result<Option<u32>, ProtoError> {
        Ok(self.last_item().await?.map(|item| item.uid))
    }
    /// All messages with a UID above `uid`, oldest first.
    async fn items_after(&mut self, uid: u32) -> Result<Vec<MailItem>, ProtoError>;
    /// The next part of a catch-up: messages with a UID above `uid`, oldest first, in a batch
    /// small enough to arrive within one response timeout on a slow link. The engine calls it
    /// with a deadline each and records progress after each batch, so a backlog of any size
    /// advances instead of timing out as a whole. The default is everything at once.
    async fn items_batch(&mut self, uid: u32) -> Result<Batch, ProtoError> {
        Ok(Batch {
            items: self.items_after(uid).await?,
            covered: None,
        })
    }
    /// How many messages have a UID above `uid` (cheaper than fetching them).
    async fn count_after(&mut self, uid: u32) -> Result<u32, ProtoError>;
    /// Wait until the server pushes a change, `max` elapses, or `stop` is cancelled. Must leave
    /// the session ready for the next command (e.g. IMAP: end IDLE with DONE) before returning.
    async fn wait(&mut self, max: Duration, stop: &CancellationToken) -> Result<Wake, ProtoError>;
    /// Log out politely (best effort).
    async fn close(self: Box<Self>);
}

/// One look at a folder: connect, open `folder`, run the last-item query and log out, for
/// `mailpulse check` and Settings' "Test connection". Opening bounds each of its steps itself;
/// the session's own calls have no deadline (the engine's supervisor bounds them), so each is
/// bounded here by `rt`: a server that stalls in the middle of an answer is an error naming
/// `endpoint` and the step, not a hang. The logout is best effort and bounded too; after a
/// query that got no answer it is not tried (dropping the session closes the socket).
pub async fn newest_item(
    connector: &dyn Connector,
    folder: &str,
    endpoint: &str,
    rt: Duration,
) -> Result<(Option<MailItem>, FolderInfo), ProtoError> {
    use tokio::time::timeout;
    let (mut session, info) = connector.open(folder).await?;
    let Ok(last) = timeout(rt, session.last_item()).await else {
        return Err(ProtoError::new(
            ErrorKind::Timeout,
            format!(
                "{endpoint}: no answer within {} s while asking for the newest message",
                rt.as_secs()
            ),
        ));
    };
    if timeout(rt, session.close()).await.is_err() {
        tracing::debug!(
            "{endpoint}: no answer within {} s while logging out",
            rt.as_secs()
        );
    }
    last.map(|last| (last, info))
}

/// Builds the connector for an account; the engine calls it whenever an account (re)starts, so
/// tests can substitute a scripted server.
pub type ConnectorFactory = Arc<dyn Fn(&Account, &KeepAlive) -> Arc<dyn Connector> + Send + Sync>;

/// No answer within the response timeout `rt` while doing `what`: the connection is dead (a
/// middlebox forgot it, or the server hangs), which every backend reports in the same words.
pub(crate) fn dead(endpoint: &str, rt: Duration, what: &str) -> ProtoError {
    ProtoError::new(
        ErrorKind::Timeout,
        format!(
            "{endpoint}: no answer within {} s while {what}: the connection is dead",
            rt.as_secs()
        ),
    )
}

/// The host and port an HTTP backend (EWS, Graph) connects to: its URL's, or, where the URL did
/// not parse (the error is reported elsewhere), the account's host and 443.
pub(crate) fn url_host_port<E>(url: &Result<url::Url, E>, fallback_host: &str) -> (String, u16) {
    let url = url.as_ref().ok();
    let host = url
        .and_then(|u| u.host_str())
        .unwrap_or(fallback_host)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.and_then(|u| u.port_or_known_default()).unwrap_or(443);
    (host, port)
}

/// The real protocols.
pub fn default_factory() -> ConnectorFactory {
    Arc::new(|account: &Account, keepalive: &KeepAlive| connector(account, keepalive, None))
}

/// The connector for an account's protocol; `password` overrides the account's password source
/// (Settings' "Test connection" before the password is stored).
pub fn connector(
    account: &Account,
    keepalive: &KeepAlive,
    password: Option<crate::secret::Secret>,
) -> Arc<dyn Connector> {
    match account.protocol {
        Protocol::Imap => {
            let mut c = imap::ImapConnector::new(account.clone(), keepalive.clone());
            if let Some(p) = password {
                c = c.with_password(p);
            }
            Arc::new(c)
        }
        Protocol::Ews => {
            let mut c = ews::EwsConnector::new(account.clone(), keepalive.clone());
            if let Some(p) = password {
                c = c.with_password(p);
            }
            Arc::new(c)
        }
        Protocol::Graph => {
            let mut c = graph::GraphConnector::new(account.clone(), keepalive.clone());
            if let Some(p) = password {
                c = c.with_password(p);
            }
            Arc::new(c)
        }
    }
}
