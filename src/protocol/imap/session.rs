//! An open, read-only folder: the last-item query (the keep-alive), catch-up fetches, and IDLE
//! ended with DONE.

use super::*;
use crate::protocol::dead;

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
    /// The newest UID as asked at the start of the catch-up in progress.
    pub(super) catching_up_to: Option<u32>,
    /// The server said `BYE` (its text): async-imap passes it on as an unsolicited response
    /// and ends the command's answer as if complete.
    pub(super) bye: Option<String>,
    /// IDLE begun by the pipelined keep-alive cycle (its tag): the next `wait` goes on idling,
    /// any other command ends it first.
    pub(super) idling: Option<Tag>,
    /// The newest UID the pipelined cycle's query answered, for the `newest_uid` that follows.
    pub(super) prefetched: Option<Option<u32>>,
    /// Shared by the connector's sessions: the server refused a pipelined cycle.
    pub(super) no_pipelining: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// UIDs per catch-up batch: 200 envelopes are some 100 KB, seconds on a slow link.
pub(crate) const BATCH: u32 = 200;

impl Imap {
    pub(super) fn session(&mut self) -> Result<&mut ImapSession, ProtoError> {
        self.session.as_mut().ok_or_else(|| {
            ProtoError::new(
                ErrorKind::Disconnected,
                format!("{}: the session was lost", self.endpoint),
            )
        })
    }

    /// The session, ready for a command: an IDLE the pipelined cycle began is ended first.
    pub(super) async fn ready(&mut self) -> Result<&mut ImapSession, ProtoError> {
        if let Some(tag) = self.idling.take() {
            let (rt, endpoint) = (self.response_timeout, self.endpoint.clone());
            let mut seen = Untagged::default();
            let session = self.session()?;
            match timeout(rt, end_idle(session, &tag, &endpoint, &mut seen)).await {
                Ok(r) => r?,
                Err(_) => return Err(dead(&endpoint, rt, "ending IDLE")),
            }
            self.note(&seen);
            self.grew |= seen.changed;
            self.drain();
        }
        self.session()
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
        let session = self.ready().await?;
        let r = noop(session).await;
        r.map_err(|e| self.err(e, "sending NOOP"))?;
        self.drain();
        self.check_bye("sending NOOP")?;
        Ok(self.exists == 0)
    }

    /// A `BYE` that arrived with an answer: the session is over, whatever the answer looked like.
    pub(super) fn check_bye(&mut self, what: &str) -> Result<(), ProtoError> {
        match self.bye.take() {
            Some(text) => {
                self.session = None;
                Err(ProtoError::new(
                    ErrorKind::Disconnected,
                    format!(
                        "{}: the server ended the session while {what}: {text}",
                        self.endpoint
                    ),
                ))
            }
            None => Ok(()),
        }
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
                UnsolicitedResponse::Other(data) => {
                    if let Response::Data {
                        status: Status::Bye,
                        outcome,
                    } = data.parsed()
                    {
                        self.bye = Some(
                            outcome
                                .information
                                .as_deref()
                                .map_or_else(|| "BYE".to_owned(), clip),
                        );
                    }
                }
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
        let session = self.ready().await?;
        let result = async {
            let stream = session.uid_fetch(set, items).await?;
            stream.try_collect::<Vec<Fetch>>().await
        }
        .await;
        let fetches = result.map_err(|e| self.err(e, "fetching"))?;
        self.drain();
        self.check_bye("fetching")?;
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
        // Asked and answered by the keep-alive cycle that just ended the wait.
        if let Some(newest) = self.prefetched.take() {
            return Ok(newest);
        }
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

    /// UID ranges of [`BATCH`]: `UID FETCH n:n+199`, up to the newest UID asked for at the
    /// start, then `n:*` for the rest. A range of 200 UIDs holds at most 200 messages, so each
    /// answer is bounded whatever the backlog; sparse UIDs cost a round trip per empty range.
    async fn items_batch(&mut self, uid: u32) -> Result<crate::protocol::Batch, ProtoError> {
        let newest = match self.catching_up_to {
            Some(n) => n,
            None => {
                let Some(n) = self.newest_uid().await? else {
                    return Ok(crate::protocol::Batch {
                        items: Vec::new(),
                        covered: None,
                    });
                };
                self.catching_up_to = Some(n);
                n
            }
        };
        let from = uid.saturating_add(1);
        let to = from.saturating_add(BATCH - 1);
        if to >= newest {
            self.catching_up_to = None;
            return Ok(crate::protocol::Batch {
                items: self.items_after(uid).await?,
                covered: None,
            });
        }
        self.grew = false;
        let mut items = self.fetch(&format!("{from}:{to}"), FETCH_ITEMS).await?;
        items.retain(|i| i.uid > uid && i.uid <= to);
        items.sort_by_key(|i| i.uid);
        Ok(crate::protocol::Batch {
            items,
            covered: Some(to),
        })
    }

    /// By sequence numbers, which grow with UIDs: a binary search for the first message above
    /// `uid`, one `FETCH n (UID)` per step (17 for 100 000 messages), each answer a line.
    /// `UID SEARCH` would answer with every UID in one line, unbounded.
    async fn count_after(&mut self, uid: u32) -> Result<u32, ProtoError> {
        let (mut lo, mut hi) = (1u32, self.exists);
        // The answer is `lo` once lo > hi: messages lo..=exists are above `uid`.
        for _ in 0..40 {
            if lo > hi {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            let session = self.ready().await?;
            let r = async {
                let stream = session.fetch(mid.to_string(), "(UID)").await?;
                stream.try_collect::<Vec<Fetch>>().await
            }
            .await;
            let fetched = r.map_err(|e| self.err(e, "counting new messages"))?;
            self.drain();
            self.check_bye("counting new messages")?;
            let Some(at) = fetched
                .iter()
                .find(|f| f.message == mid)
                .and_then(|f| f.uid)
            else {
                // Expunged meanwhile: the count is for the next session to make.
                return Err(ProtoError::new(
                    ErrorKind::Protocol,
                    format!("{}: message {mid} vanished while counting", self.endpoint),
                ));
            };
            if at > uid {
                hi = mid - 1;
            } else {
                lo = mid + 1;
            }
        }
        Ok(self.exists.saturating_add(1).saturating_sub(lo))
    }

    /// IDLE, written on async-imap's plain command/response calls rather than its IDLE
    /// extension: that one panics on a tagged `BAD` without text in reply to `IDLE`, and while
    /// idling takes any tagged answer for an unrelated unilateral response and keeps waiting,
    /// so a server that ended IDLE looked idle until the keep-alive timed out. Here the IDLE's
    /// own tagged answer, whenever it comes, is an error at once.
    ///
    /// A keep-alive cycle (the wait ended by its timer or "Check now") is one write when the folder is not
    /// empty: `DONE`, the query and the next `IDLE` pipelined (RFC 3501 lets a client send
    /// commands without waiting; after `DONE` the server processes them in order). Its answers
    /// must all arrive within the response timeout, so a dead connection is found as before.
    async fn wait(&mut self, max: Duration, stop: &CancellationToken) -> Result<Wake, ProtoError> {
        self.prefetched = None;
        if std::mem::take(&mut self.grew) {
            return Ok(Wake::Changed);
        }
        let rt = self.response_timeout;
        let endpoint = self.endpoint.clone();
        // Held outside `self` while idling: an error drops it, closing the connection.
        let mut session = self.session.take().ok_or_else(|| {
            ProtoError::new(
                ErrorKind::Disconnected,
                format!("{endpoint}: the session was lost"),
            )
        })?;
        let mut seen = Untagged::default();
        let tag = match self.idling.take() {
            Some(tag) => tag,
            None => match timeout(rt, start_idle(&mut session, &endpoint, &mut seen)).await {
                Ok(r) => r?,
                Err(_) => return Err(dead(&endpoint, rt, "starting IDLE")),
            },
        };
        self.note(&seen);
        let wake = if seen.changed {
            Wake::Changed
        } else {
            // One wake-up when the keep-alive is due (the platform's timer, not tokio's wheel).
            let deadline = crate::platform::sleep(max);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = session.read_response() => {
                        let resp = read(r, &endpoint, "in IDLE")?;
                        let mut seen = Untagged::default();
                        idle_response(resp.parsed(), &tag, &endpoint, &mut seen)?;
                        self.note(&seen);
                        if seen.changed {
                            break Wake::Changed;
                        }
                    }
                    _ = &mut deadline => break Wake::Timeout,
                    _ = stop.cancelled() => break Wake::Interrupted,
                }
            }
        };
        let pipelining = !self
            .no_pipelining
            .load(std::sync::atomic::Ordering::Relaxed);
        // The timer, or "Check now" (and the rarer stop or settings change, which cost one
        // query's bytes more): the query follows the wait, so it goes out with DONE.
        if wake != Wake::Changed && pipelining {
            let mut seen = Untagged::default();
            let empty = self.exists == 0;
            let cycle = pipelined_cycle(&mut session, &tag, &endpoint, &mut seen, empty);
            let (newest, idle) = match timeout(rt, cycle).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    if e.kind == ErrorKind::Protocol {
                        // Refused, perhaps, because pipelined: one command at a time hereafter.
                        self.no_pipelining
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Err(e);
                }
                Err(_) => return Err(dead(&endpoint, rt, "the keep-alive query")),
            };
            self.note(&seen);
            self.grew |= seen.changed;
            // An empty folder was asked with NOOP: its answer says "still empty" only if no
            // message arrived meanwhile; otherwise the newest UID is asked as usual.
            if !empty || self.exists == 0 {
                self.prefetched = Some(newest);
            }
            self.idling = Some(idle);
            self.session = Some(session);
            self.drain();
            return Ok(wake);
        }
        let mut seen = Untagged::default();
        match timeout(rt, end_idle(&mut session, &tag, &endpoint, &mut seen)).await {
            Ok(r) => r?,
            Err(_) => return Err(dead(&endpoint, rt, "ending IDLE")),
        }
        self.note(&seen);
        // What arrived while ending IDLE is reported by the next wait.
        if wake != Wake::Changed {
            self.grew |= seen.changed;
        }
        self.session = Some(session);
        self.drain();
        Ok(wake)
    }

    async fn close(mut self: Box<Self>) {
        let _ = self.ready().await;
        if let Some(mut session) = self.session.take() {
            let _ = session.logout().await;
        }
    }
}

impl Imap {
    /// Apply what the server reported during IDLE to the message count.
    fn note(&mut self, seen: &Untagged) {
        if let Some(n) = seen.exists {
            self.exists = n;
        }
        self.exists = self.exists.saturating_sub(seen.expunged);
    }
}

/// What untagged responses said while idling.
#[derive(Debug, Default)]
pub(super) struct Untagged {
    /// The last `EXISTS`.
    pub(super) exists: Option<u32>,
    pub(super) expunged: u32,
    /// Anything but the server's keep-alive (`* OK …`): a change to report.
    pub(super) changed: bool,
}

type Tag = async_imap::imap_proto::RequestId;

/// One response from the connection, or the error that ended it.
fn read<T>(r: std::io::Result<Option<T>>, endpoint: &str, what: &str) -> Result<T, ProtoError> {
    match r {
        Ok(Some(resp)) => Ok(resp),
        Ok(None) => Err(ProtoError::new(
            ErrorKind::Disconnected,
            format!("{endpoint}: the server closed the connection {what}"),
        )),
        Err(e) => Err(imap_error(endpoint, async_imap::error::Error::Io(e), what)),
    }
}

/// The server's words in a status response, or that it gave none.
fn status_words(status: &Status, outcome: &async_imap::imap_proto::Outcome<'_>) -> String {
    let word = match status {
        Status::Ok => "OK",
        Status::No => "NO",
        Status::Bad => "BAD",
        Status::PreAuth => "PREAUTH",
        Status::Bye => "BYE",
    };
    match outcome.information.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => format!("{word} ({})", clip(text)),
        _ => format!("{word} without a reason"),
    }
}

/// A response while idling (or starting or ending IDLE). `Ok(true)` = the IDLE's own tagged
/// answer (`OK` after `DONE`); the server ending IDLE by itself (`NO`, `BAD`) or the session
/// (`BYE`) is an error.
fn idle_response(
    resp: &Response<'_>,
    tag: &Tag,
    endpoint: &str,
    seen: &mut Untagged,
) -> Result<bool, ProtoError> {
    match resp {
        Response::Done {
            tag: t,
            status,
            outcome,
        } if t == tag => match status {
            Status::Ok => Ok(true),
            _ => Err(ProtoError::new(
                ErrorKind::Protocol,
                format!(
                    "{endpoint}: the server answered IDLE with {}",
                    status_words(status, outcome)
                ),
            )),
        },
        // A stray answer to no command of ours, or a continuation: nothing to do.
        Response::Done { .. } | Response::Continue(_) => Ok(false),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(ProtoError::new(
            ErrorKind::Disconnected,
            format!(
                "{endpoint}: the server ended the session: {}",
                outcome.information.as_deref().unwrap_or("BYE")
            ),
        )),
        // The server's keep-alive ("* OK Still here").
        Response::Data { .. } => Ok(false),
        Response::MailboxData(MailboxDatum::Exists(n)) => {
            seen.exists = Some(*n);
            seen.changed = true;
            Ok(false)
        }
        Response::Expunge(_) => {
            seen.expunged += 1;
            seen.changed = true;
            Ok(false)
        }
        _ => {
            seen.changed = true;
            Ok(false)
        }
    }
}

/// Send `IDLE` and wait for the server's continuation; returns the command's tag.
pub(super) async fn start_idle(
    session: &mut ImapSession,
    endpoint: &str,
    seen: &mut Untagged,
) -> Result<Tag, ProtoError> {
    let tag = session
        .run_command("IDLE")
        .await
        .map_err(|e| imap_error(endpoint, e, "starting IDLE"))?;
    loop {
        let resp = read(session.read_response().await, endpoint, "starting IDLE")?;
        if matches!(resp.parsed(), Response::Continue(_)) {
            return Ok(tag);
        }
        if idle_response(resp.parsed(), &tag, endpoint, seen)? {
            return Err(ProtoError::new(
                ErrorKind::Protocol,
                format!("{endpoint}: the server answered IDLE with OK before it began"),
            ));
        }
    }
}

/// The keep-alive cycle in one write: `DONE` (ending the IDLE tagged `idle`), `UID FETCH *
/// (UID)` and the next `IDLE`; then their answers, in order: the IDLE's `OK`, the query's data
/// and `OK`, the new IDLE's continuation. Returns the newest UID and the new IDLE's tag.
/// An `empty` folder is asked with `NOOP` instead (`UID FETCH *` of an empty folder is an
/// error); its newest UID is then `None`, and an `EXISTS` in the answers says otherwise.
async fn pipelined_cycle(
    session: &mut ImapSession,
    idle: &Tag,
    endpoint: &str,
    seen: &mut Untagged,
    empty: bool,
) -> Result<(Option<u32>, Tag), ProtoError> {
    use async_imap::imap_proto::AttributeValue;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Tags of our own, apart from async-imap's (`A1`, `A2`, …).
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (query, next) = (format!("K{n}Q"), format!("K{n}I"));
    let command = if empty {
        "NOOP".to_owned()
    } else {
        format!("UID FETCH * {KEEPALIVE_ITEMS}")
    };
    session
        .run_command_untagged(format!("DONE\r\n{query} {command}\r\n{next} IDLE"))
        .await
        .map_err(|e| imap_error(endpoint, e, "sending the keep-alive query"))?;
    let (query, next) = (
        async_imap::imap_proto::RequestId(query),
        async_imap::imap_proto::RequestId(next),
    );
    let mut answered = false;
    let mut newest = None;
    // Bounded: a server sending endless unrelated responses is cut off by the caller's timeout.
    loop {
        let resp = read(
            session.read_response().await,
            endpoint,
            "during the keep-alive query",
        )?;
        match resp.parsed() {
            Response::Continue(_) if answered => return Ok((newest, next)),
            Response::Done {
                tag,
                status,
                outcome,
            } if *tag == query => {
                if *status != Status::Ok {
                    return Err(ProtoError::new(
                        ErrorKind::Protocol,
                        format!(
                            "{endpoint}: the server answered the keep-alive query with {}",
                            status_words(status, outcome)
                        ),
                    ));
                }
                answered = true;
            }
            Response::Done {
                tag,
                status,
                outcome,
            } if *tag == next => {
                return Err(ProtoError::new(
                    ErrorKind::Protocol,
                    format!(
                        "{endpoint}: the server answered IDLE with {}",
                        status_words(status, outcome)
                    ),
                ));
            }
            Response::Fetch(_, attributes) if !answered && !empty => {
                for a in attributes {
                    if let AttributeValue::Uid(uid) = a {
                        newest = newest.max(Some(*uid));
                    }
                }
            }
            other => {
                idle_response(other, idle, endpoint, seen)?;
            }
        }
    }
}

/// Send `DONE` and read up to the IDLE's tagged `OK`.
pub(super) async fn end_idle(
    session: &mut ImapSession,
    tag: &Tag,
    endpoint: &str,
    seen: &mut Untagged,
) -> Result<(), ProtoError> {
    session
        .run_command_untagged("DONE")
        .await
        .map_err(|e| imap_error(endpoint, e, "ending IDLE"))?;
    loop {
        let resp = read(session.read_response().await, endpoint, "ending IDLE")?;
        if idle_response(resp.parsed(), tag, endpoint, seen)? {
            return Ok(());
        }
    }
}

/// `NOOP`, answered by its tagged OK. async-imap's own `Session::noop` takes the end of the
/// stream for an answer (its loop stops at the stream's end and returns `Ok`), so a connection
/// that a proxy or a server closed while it was idle (FIN, not RST) would pass for alive: the
/// keep-alive of an empty folder and the adaptive probe would never see it dead. This waits for
/// the command's tagged answer, checks its status, and calls the end of the stream lost.
pub(super) async fn noop(session: &mut ImapSession) -> async_imap::error::Result<()> {
    session.run_command_and_check_ok("NOOP").await
}
