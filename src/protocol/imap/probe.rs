//! The adaptive keep-alive's probe connections: one held silent (no IDLE, no TCP keep-alive),
//! one waiting in IDLE like the main session.

use super::*;

/// A probe connection waiting in IDLE; what the server sends meanwhile stays unread in the
/// socket (the kernel acknowledges it, which is all the path needs to see).
pub(super) struct ImapIdleProbe {
    pub(super) handle: Option<async_imap::extensions::idle::Handle<Stream>>,
    pub(super) session: Option<ImapSession>,
    pub(super) endpoint: String,
}

#[async_trait]
impl Probe for ImapIdleProbe {
    /// `DONE`, answered by the tagged OK of the IDLE. Fails as well when the server sent
    /// anything but keep-alives (`* OK …`) meanwhile: a new message's `EXISTS` also refreshes
    /// the mapping, and must not pass for the server's keep-alives.
    async fn ping(&mut self) -> Result<(), ProtoError> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        let session = handle
            .done()
            .await
            .map_err(|e| imap_error(&self.endpoint, e, "ending IDLE on the probe connection"))?;
        let mut other = false;
        while let Ok(u) = session.unsolicited_responses.try_recv() {
            let keepalive = matches!(
                &u,
                UnsolicitedResponse::Other(data)
                    if matches!(data.parsed(), Response::Data { status: Status::Ok, .. })
            );
            other |= !keepalive;
        }
        self.session = Some(session);
        if other {
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
        if let Some(mut session) = self.session.take() {
            let _ = session.logout().await;
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
        let r = self.session.noop().await;
        r.map_err(|e| imap_error(&self.endpoint, e, "sending NOOP on the probe connection"))
    }

    async fn close(mut self: Box<Self>) {
        let _ = self.session.logout().await;
    }
}
