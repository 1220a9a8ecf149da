//! The adaptive keep-alive's probe connections: one held silent (no IDLE, no TCP keep-alive),
//! one waiting in IDLE like the main session.

use super::*;

/// A probe connection waiting in IDLE; what the server sends meanwhile stays unread in the
/// socket (the kernel acknowledges it, which is all the path needs to see).
pub(super) struct ImapIdleProbe {
    pub(super) session: ImapSession,
    /// The IDLE command's tag while idling.
    pub(super) idle: Option<async_imap::imap_proto::RequestId>,
    pub(super) endpoint: String,
}

#[async_trait]
impl Probe for ImapIdleProbe {
    /// `DONE`, answered by the tagged OK of the IDLE. Fails as well when the server sent
    /// anything but keep-alives (`* OK …`) meanwhile: a new message's `EXISTS` also refreshes
    /// the mapping, and must not pass for the server's keep-alives.
    async fn ping(&mut self) -> Result<(), ProtoError> {
        let Some(tag) = self.idle.take() else {
            return Ok(());
        };
        let mut seen = session::Untagged::default();
        session::end_idle(&mut self.session, &tag, &self.endpoint, &mut seen)
            .await
            .map_err(|mut e| {
                e.message.push_str(" (on the probe connection)");
                e
            })?;
        if seen.changed {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{}: the folder changed during the measurement in IDLE; not counted",
                    self.endpoint
                ),
            ));
        }
        Ok(())
    }

    async fn close(mut self: Box<Self>) {
        if self.idle.is_none() {
            let _ = self.session.logout().await;
        }
    }
}

/// A logged-in connection held silent (no IDLE, no TCP keep-alive) by the adaptive search.
/// Nothing is selected: the server has nothing to push on it.
pub(super) struct ImapProbe {
    pub(super) session: ImapSession,
    pub(super) endpoint: String,
}

#[async_trait]
impl Probe for ImapProbe {
    async fn ping(&mut self) -> Result<(), ProtoError> {
        let r = session::noop(&mut self.session).await;
        r.map_err(|e| imap_error(&self.endpoint, e, "sending NOOP on the probe connection"))
    }

    async fn close(mut self: Box<Self>) {
        let _ = self.session.logout().await;
    }
}
