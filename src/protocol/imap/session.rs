//! An open, read-only folder: the last-item query (the keep-alive), catch-up fetches, and IDLE
//! ended with DONE.

use super::*;

/// An open, read-only folder.
pub(super) struct Imap {
    /// `None` only while IDLE holds it, or after IDLE failed half-way.
    pub(super) session: Option<ImapSession>,
    /// Messages in the folder, tracked from EXISTS/EXPUNGE (decides NOOP vs. FETCH * when empty).
    pub(super) exists: u32,
    /// The folder grew (EXISTS) since the last `items_after`: reported by the next `wait` at
    /// once. An EXISTS that arrives between the keep-alive query and IDLE would otherwise not
    /// be repeated in IDLE, and the message would wait for the next keep-alive.
    pub(super) grew: bool,
    pub(super) endpoint: String,
    pub(super) response_timeout: Duration,
}

impl Imap {
    pub(super) fn session(&mut self) -> Result<&mut ImapSession, ProtoError> {
        self.session.as_mut().ok_or_else(|| {
            ProtoError::new(
                ErrorKind::Disconnected,
                format!("{}: the session was lost", self.endpoint),
            )
        })
    }

    pub(super) fn err(&self, e: async_imap::error::Error, what: &str) -> ProtoError {
        imap_error(&self.endpoint, e, what)
    }

    /// Whether the folder is empty. `UID FETCH *` is an error on an empty folder, so then a
    /// NOOP is the query: the same round trip, and it reports messages that just arrived.
    pub(super) async fn is_empty(&mut self) -> Result<bool, ProtoError> {
        if self.exists > 0 {
            return Ok(false);
        }
        let session = self.session()?;
        let r = session.noop().await;
        r.map_err(|e| self.err(e, "sending NOOP"))?;
        self.drain();
        Ok(self.exists == 0)
    }

    /// Apply the unsolicited EXISTS/EXPUNGE the server sent along with other answers.
    pub(super) fn drain(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while let Ok(u) = session.unsolicited_responses.try_recv() {
            match u {
                UnsolicitedResponse::Exists(n) => {
                    self.grew |= n > self.exists;
                    self.exists = n;
                }
                UnsolicitedResponse::Expunge(_) => self.exists = self.exists.saturating_sub(1),
                _ => {}
            }
        }
    }

    /// `UID FETCH set items`. With `(UID)` only, the items carry just their UID.
    pub(super) async fn fetch(
        &mut self,
        set: &str,
        items: &str,
    ) -> Result<Vec<MailItem>, ProtoError> {
        let session = self.session()?;
        let result = async {
            let stream = session.uid_fetch(set, items).await?;
            stream.try_collect::<Vec<Fetch>>().await
        }
        .await;
        let fetches = result.map_err(|e| self.err(e, "fetching"))?;
        self.drain();
        Ok(fetches.iter().filter_map(mail_item).collect())
    }
}

#[async_trait]
impl Session for Imap {
    async fn last_item(&mut self) -> Result<Option<MailItem>, ProtoError> {
        if self.is_empty().await? {
            return Ok(None);
        }
        let items = self.fetch("*", FETCH_ITEMS).await?;
        Ok(items.into_iter().max_by_key(|i| i.uid))
    }

    async fn newest_uid(&mut self) -> Result<Option<u32>, ProtoError> {
        if self.is_empty().await? {
            return Ok(None);
        }
        let items = self.fetch("*", KEEPALIVE_ITEMS).await?;
        Ok(items.iter().map(|i| i.uid).max())
    }

    async fn items_after(&mut self, uid: u32) -> Result<Vec<MailItem>, ProtoError> {
        // This fetch covers everything up to now; EXISTS arriving with it sets `grew` again.
        self.grew = false;
        if self.exists == 0 {
            return Ok(Vec::new());
        }
        let mut items = self
            .fetch(&format!("{}:*", uid.saturating_add(1)), FETCH_ITEMS)
            .await?;
        // `n:*` also returns the last message when n is above every UID.
        items.retain(|i| i.uid > uid);
        items.sort_by_key(|i| i.uid);
        Ok(items)
    }

    async fn count_after(&mut self, uid: u32) -> Result<u32, ProtoError> {
        if self.exists == 0 {
            return Ok(0);
        }
        let session = self.session()?;
        let r = session
            .uid_search(format!("UID {}:*", uid.saturating_add(1)))
            .await;
        let uids = r.map_err(|e| self.err(e, "searching new messages"))?;
        self.drain();
        Ok(uids.into_iter().filter(|u| *u > uid).count() as u32)
    }

    async fn wait(&mut self, max: Duration, stop: &CancellationToken) -> Result<Wake, ProtoError> {
        if std::mem::take(&mut self.grew) {
            return Ok(Wake::Changed);
        }
        let rt = self.response_timeout;
        let session = self.session.take().ok_or_else(|| {
            ProtoError::new(
                ErrorKind::Disconnected,
                format!("{}: the session was lost", self.endpoint),
            )
        })?;
        let mut handle = session.idle();
        match timeout(rt, handle.init()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.err(e, "starting IDLE")),
            Err(_) => return Err(dead(&self.endpoint, rt, "starting IDLE")),
        }
        let mut ended_by = None;
        let result = {
            // async-imap's own timeout restarts on every "* OK Still here"; ours must not.
            let (idle, interrupt) = handle.wait_with_timeout(max + Duration::from_secs(3600));
            let mut interrupt = Some(interrupt);
            tokio::pin!(idle);
            let deadline = sleep(max);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = &mut idle => break r,
                    _ = &mut deadline, if interrupt.is_some() => {
                        ended_by = Some(Wake::Timeout);
                        interrupt = None;
                    }
                    _ = stop.cancelled(), if interrupt.is_some() => {
                        ended_by = Some(Wake::Interrupted);
                        interrupt = None;
                    }
                }
            }
        };
        use async_imap::extensions::idle::IdleResponse;
        let wake = match result {
            Err(e) => return Err(self.err(e, "in IDLE")),
            Ok(IdleResponse::NewData(data)) => match data.parsed() {
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => {
                    return Err(ProtoError::new(
                        ErrorKind::Disconnected,
                        format!(
                            "{}: the server ended the session: {}",
                            self.endpoint,
                            outcome.information.as_deref().unwrap_or("BYE")
                        ),
                    ));
                }
                Response::MailboxData(MailboxDatum::Exists(n)) => {
                    self.exists = *n;
                    Wake::Changed
                }
                Response::Expunge(_) => {
                    self.exists = self.exists.saturating_sub(1);
                    Wake::Changed
                }
                _ => Wake::Changed,
            },
            Ok(IdleResponse::Timeout) => Wake::Timeout,
            // The stream ended without us interrupting it: the connection is gone.
            Ok(IdleResponse::ManualInterrupt) => match ended_by {
                Some(wake) => wake,
                None => {
                    return Err(ProtoError::new(
                        ErrorKind::Disconnected,
                        format!(
                            "{}: the server closed the connection during IDLE",
                            self.endpoint
                        ),
                    ));
                }
            },
        };
        let session = match timeout(rt, handle.done()).await {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => return Err(self.err(e, "ending IDLE")),
            Err(_) => return Err(dead(&self.endpoint, rt, "ending IDLE")),
        };
        self.session = Some(session);
        self.drain();
        Ok(wake)
    }

    async fn close(mut self: Box<Self>) {
        if let Some(mut session) = self.session.take() {
            let _ = session.logout().await;
        }
    }
}

pub(super) fn dead(endpoint: &str, rt: Duration, what: &str) -> ProtoError {
    ProtoError::new(
        ErrorKind::Timeout,
        format!(
            "{endpoint}: no answer within {} s while {what}: the connection is dead",
            rt.as_secs()
        ),
    )
}
