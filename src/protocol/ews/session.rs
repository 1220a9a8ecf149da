//! An open EWS folder: the keep-alive `FindItem`, the catch-up pages, and `wait` on the
//! stream task's messages (or a pull subscription, or plain polling).

use super::*;

/// What the stream task reports.
#[derive(Debug)]
pub(super) enum Msg {
    /// An envelope arrived (heartbeat or the stream (re)opened: `fresh`).
    Alive {
        at: Instant,
        fresh: bool,
    },
    /// New mail (or the subscription was renewed: catch up).
    Changed,
    Failed(ProtoError),
}

pub(super) struct EwsSession {
    pub(super) http: Http,
    pub(super) folder: &'static str,
    pub(super) rx: Option<mpsc::UnboundedReceiver<Msg>>,
    pub(super) task: Option<JoinHandle<()>>,
    /// A pull subscription (id, watermark) when the server does not stream.
    pub(super) pull: Option<(String, String)>,
    pub(super) last_alive: Instant,
    pub(super) last_beat: Option<Instant>,
    /// The observed heartbeat period.
    pub(super) period: Option<Duration>,
}

impl Drop for EwsSession {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl EwsSession {
    pub(super) async fn find(
        &mut self,
        max: u32,
        offset: u32,
    ) -> Result<(Vec<MailItem>, bool), ProtoError> {
        let m = self
            .http
            .call_p(
                "querying the newest item",
                &xml::find_items(self.folder, max, offset),
            )
            .await?;
        let root = m.child("RootFolder");
        let last = root
            .and_then(|r| r.attr("IncludesLastItemInRange"))
            .is_none_or(|v| v == "true");
        let items = root
            .and_then(|r| r.child("Items"))
            .map(xml::items)
            .unwrap_or_default();
        let mut map = self
            .http
            .shared
            .uids
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok((map.assign(items), last))
    }

    /// Pull mode: `GetEvents` every [`PULL_EVERY`] until new mail, `max`, or `stop`.
    pub(super) async fn pull_wait(
        &mut self,
        max: Duration,
        stop: &CancellationToken,
    ) -> Result<Wake, ProtoError> {
        let until = Instant::now() + max;
        loop {
            let step = PULL_EVERY.min(until.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = sleep(step) => {}
                _ = stop.cancelled() => return Ok(Wake::Interrupted),
            }
            if Instant::now() >= until {
                // The engine's keep-alive query follows at once; no GetEvents needed.
                return Ok(Wake::Timeout);
            }
            if self.get_events().await? {
                return Ok(Wake::Changed);
            }
        }
    }

    /// One round of `GetEvents` (more while the server says MoreEvents); whether new mail came.
    pub(super) async fn get_events(&mut self) -> Result<bool, ProtoError> {
        let mut changed = false;
        for _ in 0..10 {
            let Some((sub, watermark)) = self.pull.clone() else {
                return Ok(changed);
            };
            let m = match self
                .http
                .call("asking for events", &xml::get_events(&sub, &watermark))
                .await
            {
                Ok(m) => m,
                Err(CallError::Ews(e)) if e.is_subscription_lost() => {
                    tracing::info!(
                        "{}: pull subscription lost ({}); subscribing again",
                        self.http.shared.endpoint(),
                        e.code
                    );
                    self.pull = match self.http.subscribe_pull(self.folder).await {
                        Ok(p) => Some(p),
                        Err(CallError::Proto(e)) => return Err(e),
                        Err(CallError::Ews(e)) => {
                            return Err(self.http.shared.ews_error(&e, "subscribing again"));
                        }
                    };
                    // Catch up with FindItem; the old watermark is not reused.
                    return Ok(true);
                }
                Err(CallError::Ews(e)) => {
                    return Err(self.http.shared.ews_error(&e, "asking for events"));
                }
                Err(CallError::Proto(e)) => return Err(e),
            };
            let Some(n) = m.child("Notification") else {
                return Ok(changed);
            };
            let mut last = watermark;
            for event in &n.children {
                if let Some(w) = event.child_text("Watermark") {
                    last = w.trim().to_owned();
                }
                changed |= event.name == "NewMailEvent" || event.name == "CreatedEvent";
            }
            self.pull = Some((sub, last));
            if n.child_text("MoreEvents").map(str::trim) != Some("true") {
                break;
            }
        }
        Ok(changed)
    }

    /// How long without any envelope means the stream is dead: twice the heartbeat period or
    /// the keep-alive interval, whichever is shorter, plus the response timeout — but never less
    /// than one and a half periods, so that a server whose heartbeats are rarer than the
    /// keep-alive interval is not declared dead between two of them.
    pub(super) fn dead_after(&self) -> Duration {
        let ka = &self.http.shared.keepalive;
        let base = match self.period {
            Some(p) => (p * 2).min(ka.interval()).max(p * 3 / 2),
            None => ka.interval(),
        };
        base + ka.response_timeout()
    }

    pub(super) fn alive(&mut self, at: Instant, fresh: bool) {
        if !fresh && let Some(prev) = self.last_beat {
            let gap = at.saturating_duration_since(prev);
            if gap > Duration::from_millis(100) {
                self.period = Some(gap);
            }
        }
        self.last_beat = Some(at);
        self.last_alive = self.last_alive.max(at);
    }
}

#[async_trait]
impl Session for EwsSession {
    async fn last_item(&mut self) -> Result<Option<MailItem>, ProtoError> {
        // Four entries, so that all items received in the newest second get their slots together.
        let (items, _) = self.find(4, 0).await?;
        Ok(items.into_iter().max_by_key(|i| i.uid))
    }

    async fn newest_uid(&mut self) -> Result<Option<u32>, ProtoError> {
        let (items, _) = self.find(1, 0).await?;
        Ok(items.iter().map(|i| i.uid).max())
    }

    async fn items_after(&mut self, uid: u32) -> Result<Vec<MailItem>, ProtoError> {
        let mut all = Vec::new();
        let floor_secs = (uid.saturating_sub(1) / 4) as i64 + UID_EPOCH;
        for page in 0..MAX_PAGES {
            let (items, last) = self.find(PAGE, page * PAGE).await?;
            let n = items.len();
            let older = items
                .iter()
                .any(|i| i.date.is_none_or(|d| d.timestamp() < floor_secs));
            all.extend(items);
            if last || older || n < PAGE as usize {
                break;
            }
        }
        all.retain(|i| i.uid > uid);
        all.sort_by_key(|i| i.uid);
        all.dedup_by_key(|i| i.uid);
        Ok(all)
    }

    async fn count_after(&mut self, uid: u32) -> Result<u32, ProtoError> {
        Ok(self.items_after(uid).await?.len() as u32)
    }

    async fn wait(&mut self, max: Duration, stop: &CancellationToken) -> Result<Wake, ProtoError> {
        let endpoint = self.http.shared.endpoint();
        if self.rx.is_none() && self.pull.is_some() {
            return self.pull_wait(max, stop).await;
        }
        let Some(mut rx) = self.rx.take() else {
            // No push: just wait (the engine polls on Timeout).
            tokio::select! {
                _ = crate::platform::sleep(max) => return Ok(Wake::Timeout),
                _ = stop.cancelled() => return Ok(Wake::Interrupted),
            }
        };
        let until = Instant::now() + max;
        let result = loop {
            let dead_at = self.last_alive + self.dead_after();
            tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    Some(Msg::Alive { at, fresh }) => self.alive(at, fresh),
                    Some(Msg::Changed) => {
                        self.last_alive = Instant::now();
                        break Ok(Wake::Changed);
                    }
                    Some(Msg::Failed(e)) => break Err(e),
                    None => break Err(ProtoError::new(
                        ErrorKind::Disconnected,
                        format!("{endpoint}: the notification stream ended"),
                    )),
                },
                _ = sleep_until(dead_at) => break Err(ProtoError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{endpoint}: no heartbeat on the notification stream for {} s: the connection is dead",
                        self.dead_after().as_secs()
                    ),
                )),
                _ = stop.cancelled() => break Ok(Wake::Interrupted),
                _ = crate::platform::sleep_until(until) => break Ok(Wake::Timeout),
            }
        };
        self.rx = Some(rx);
        result
    }

    async fn close(mut self: Box<Self>) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        // The caller bounds this by the response timeout; an unanswered Unsubscribe stays held
        // and the next open of this folder ends it.
        self.http.unsubscribe_held(self.folder).await;
    }
}
