//! The SOAP calls on an [`Http`] connection: one call with its retries (a kept connection the
//! server had closed, `ErrorServerBusy`), the EWS error codes as [`CallError`], and the two
//! subscriptions.

use super::*;

/// Why a call failed: an EWS error code the caller may act on, or anything else.
#[derive(Debug)]
pub(super) enum CallError {
    Ews(EwsError),
    Proto(ProtoError),
}

impl From<ProtoError> for CallError {
    fn from(e: ProtoError) -> Self {
        CallError::Proto(e)
    }
}

impl Http {
    /// A call with one response message: that message (checked), or why not.
    pub(super) async fn call(&mut self, what: &str, body: &str) -> Result<El, CallError> {
        let busy = *self
            .shared
            .busy_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((until, asked)) = busy
            && until > Instant::now()
        {
            // Honour the hint: nothing is sent before it ran out (the engine retries later).
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{}: the server is busy (ErrorServerBusy) and asked to wait {} s",
                    self.shared.endpoint(),
                    asked.as_secs_f64().ceil()
                ),
            )
            .into());
        }
        let result = self.call_once(what, body).await;
        if let Err(CallError::Ews(e)) = &result
            && e.code == "ErrorServerBusy"
        {
            let asked = e
                .back_off
                .unwrap_or(Duration::from_secs(30))
                .min(MAX_BACK_OFF);
            *self
                .shared
                .busy_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now() + asked, asked));
        }
        result
    }

    pub(super) async fn call_once(&mut self, what: &str, body: &str) -> Result<El, CallError> {
        let head = self.request(what, body).await?;
        let bytes = self.body(&head, what).await?;
        let shared = self.shared.clone();
        let endpoint = shared.endpoint();
        if !(head.status == 200 || head.status == 500) {
            let message = match head.status {
                404 => format!(
                    "{endpoint}: there is no EWS at {} (HTTP 404); check url",
                    shared.account.ews_url()
                ),
                // Exchange Online answers 403 to apps it no longer lets use EWS.
                403 => format!(
                    "{endpoint}: the server refuses EWS to this account (HTTP 403 {}) while {what}. \
                     For Microsoft 365: since October 2026 Exchange Online blocks EWS for apps \
                     not on the tenant's allow list (and switches it off in April 2027): use \
                     protocol = \"graph\", or IMAP with auth = \"xoauth2\"; on premises, ask \
                     the administrator whether EWS is blocked for you",
                    head.reason
                ),
                503 | 429 => format!(
                    "{endpoint}: the server is busy (HTTP {} {}) while {what}",
                    head.status, head.reason
                ),
                s => format!("{endpoint}: HTTP {s} {} while {what}", head.reason),
            };
            return Err(ProtoError::new(ErrorKind::Protocol, message).into());
        }
        let malformed = |m: String| {
            CallError::Proto(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{endpoint}: malformed answer while {what}: {}; is {} an EWS endpoint?",
                    clip(&m),
                    shared.account.ews_url()
                ),
            ))
        };
        let root = xml::parse(&bytes).map_err(malformed)?;
        let op = match xml::body(&root) {
            Ok(op) => op,
            Err(Ok(fault)) => return Err(CallError::Ews(fault)),
            Err(Err(m)) => return Err(malformed(m)),
        };
        let messages = xml::messages(op).map_err(malformed)?;
        let first = messages
            .first()
            .ok_or_else(|| malformed("no response message".into()))?;
        let message = xml::check(first).map_err(CallError::Ews)?;
        Ok(message.clone())
    }

    /// [`call`](Self::call) with EWS errors turned into [`ProtoError`]s.
    pub(super) async fn call_p(&mut self, what: &str, body: &str) -> Result<El, ProtoError> {
        match self.call(what, body).await {
            Ok(m) => Ok(m),
            Err(CallError::Proto(e)) => Err(e),
            Err(CallError::Ews(e)) => Err(self.shared.ews_error(&e, what)),
        }
    }

    /// Remember `id` as the subscription `folder` holds.
    fn hold(&self, folder: &'static str, id: &str) {
        self.shared
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(folder, id.to_owned());
    }

    /// End the subscription `folder` still holds, if any: the one of a session that ended (with
    /// its connection, or closing), before the folder subscribes again. Best effort: one that
    /// expired or that the server lost is gone already, and the answer changes nothing.
    pub(super) async fn unsubscribe_held(&mut self, folder: &'static str) {
        let held = self
            .shared
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(folder)
            .cloned();
        let Some(id) = held else { return };
        let account = self.shared.account.name.clone();
        let ended = match self
            .call("ending the previous subscription", &xml::unsubscribe(&id))
            .await
        {
            Ok(_) => {
                tracing::debug!(%account, "{}: ended the subscription of {folder}", self.shared.endpoint());
                true
            }
            Err(CallError::Ews(e)) => {
                tracing::debug!(%account, "{}: Unsubscribe answered {} (gone already)", self.shared.endpoint(), e.code);
                true
            }
            // Unanswered (as when cancelled): still held, ended by the next open.
            Err(CallError::Proto(e)) => {
                tracing::debug!(%account, "{}: Unsubscribe failed: {e}", self.shared.endpoint());
                false
            }
        };
        if ended {
            let mut held = self
                .shared
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if held.get(folder) == Some(&id) {
                held.remove(folder);
            }
        }
    }

    /// A pull subscription: (id, watermark).
    pub(super) async fn subscribe_pull(
        &mut self,
        folder: &'static str,
    ) -> Result<(String, String), CallError> {
        let m = self
            .call(
                "subscribing to new mail (pull)",
                &xml::subscribe_pull(folder, PULL_TIMEOUT_MINUTES),
            )
            .await?;
        let text = |n: &str| {
            m.child_text(n)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        match (text("SubscriptionId"), text("Watermark")) {
            (Some(id), Some(w)) => {
                self.hold(folder, &id);
                Ok((id, w))
            }
            _ => Err(CallError::Proto(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{}: Subscribe answered without a SubscriptionId and Watermark",
                    self.shared.endpoint()
                ),
            ))),
        }
    }

    /// A streaming subscription: its id.
    pub(super) async fn subscribe(&mut self, folder: &'static str) -> Result<String, CallError> {
        let m = self
            .call("subscribing to new mail", &xml::subscribe_streaming(folder))
            .await?;
        let id = m
            .child_text("SubscriptionId")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                CallError::Proto(ProtoError::new(
                    ErrorKind::Protocol,
                    format!(
                        "{}: Subscribe answered without a SubscriptionId",
                        self.shared.endpoint()
                    ),
                ))
            })?;
        self.hold(folder, &id);
        Ok(id)
    }
}
