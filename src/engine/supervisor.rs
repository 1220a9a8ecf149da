//! One supervisor per account and folder: connect → baseline/catch-up → IDLE (or poll) with the
//! keep-alive query on the timer → on any failure reconnect with backoff, forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::gate::Gate;
use super::store::{Seen, Store};
use super::{Out, Settings};
use crate::error::{ErrorKind, ProtoError};
use crate::event::{Connectivity, Event, MailItem};
use crate::protocol::{Connector, FolderInfo, IDLE_REISSUE, Session, Wake};

/// Messages from the engine to one supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctl {
    /// Initiate now: query at once, or reconnect at once if in backoff.
    CheckNow,
    /// The same from a wake source (a network change, a resume): it does not cut short the
    /// slow retry of a folder the server does not have, which no network change can fix.
    Wake,
    /// Log out and end.
    Stop,
}

/// Why a wait ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Nothing,
    CheckNow,
    Settings,
    Stop,
}

pub(crate) struct Supervisor {
    pub generation: u64,
    pub account: String,
    pub folder: String,
    /// `user@host:port`, the identity of the mailbox for the persisted baseline.
    pub server: String,
    pub connector: Arc<dyn Connector>,
    /// The account's login gate (shared by its folders and its probes).
    pub gate: Arc<Gate>,
    lifted: watch::Receiver<u64>,
    pub settings: watch::Receiver<Settings>,
    pub ctl: mpsc::UnboundedReceiver<Ctl>,
    pub out: mpsc::UnboundedSender<Out>,
    pub store: Store,
    pub backoff: Backoff,
    /// Wait this long before the first attempt (a restart after a panic).
    pub start_after: Duration,
    /// The sleep between polls of a folder without push.
    pub timer: super::IdleTimer,
    state: Option<Connectivity>,
    /// The current session got as far as waiting (its failure is a lost connection).
    caught_up: bool,
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        generation: u64,
        account: String,
        folder: String,
        server: String,
        connector: Arc<dyn Connector>,
        gate: Arc<Gate>,
        settings: watch::Receiver<Settings>,
        ctl: mpsc::UnboundedReceiver<Ctl>,
        out: mpsc::UnboundedSender<Out>,
        store: Store,
    ) -> Self {
        Supervisor {
            generation,
            account,
            folder,
            server,
            connector,
            lifted: gate.lifted(),
            gate,
            settings,
            ctl,
            out,
            store,
            backoff: Backoff::new(),
            start_after: Duration::ZERO,
            timer: super::tokio_timer(),
            state: None,
            caught_up: false,
        }
    }

    /// `host:port`, for messages that must say which server did not answer.
    fn endpoint(&self) -> String {
        let server = self.server.as_str();
        server
            .rsplit_once('@')
            .map_or(server, |(_, e)| e)
            .to_owned()
    }

    fn response_timeout(&self) -> Duration {
        self.settings.borrow().response_timeout
    }

    fn emit(&self, event: Event) {
        let _ = self.out.send(Out::Event(self.generation, event));
    }

    fn set_state(&mut self, state: Connectivity) {
        if self.state != Some(state) {
            self.state = Some(state);
            let _ = self.out.send(Out::State(self.generation, state));
        }
    }

    /// Runs until told to stop.
    pub async fn run(mut self) {
        let mut first_session = true;
        if !self.start_after.is_zero() {
            // Restarted after a panic: in error until the delay is over ("Check now" ends it).
            self.set_state(Connectivity::Error);
            if self.pause(self.start_after).await == Why::Stop {
                return;
            }
        }
        loop {
            // The account's credentials were rejected: no login until the block ends or is
            // lifted (new password, changed account, the user's "Check now" a minute on).
            self.lifted.borrow_and_update();
            if let Some(until) = self.gate.blocked_until() {
                self.set_state(Connectivity::Error);
                if self.wait_blocked(until).await == Why::Stop {
                    return;
                }
                continue;
            }
            self.set_state(Connectivity::Connecting);
            let rt = self.response_timeout();
            let connector = self.connector.clone();
            let folder = self.folder.clone();
            // Each protocol step has its own `rt` timeout inside `open`; this is the backstop.
            let open = bounded(
                self.endpoint(),
                rt * 3 + Duration::from_secs(5),
                "connecting",
                async move { connector.open(&folder).await },
            );
            let (opened, check_now) = match attempt(&mut self.ctl, open).await {
                Attempt::Stopped => return,
                Attempt::Restart => {
                    tracing::info!(
                        account = %self.account, folder = %self.folder,
                        "check now: abandoning the connection attempt in progress, starting afresh"
                    );
                    continue;
                }
                Attempt::Finished(r, check_now) => (r, check_now),
            };
            let failure = match opened {
                Err(e) => e,
                Ok((session, info)) => {
                    self.caught_up = false;
                    match self.serve(session, info, &mut first_session).await {
                        None => return,
                        Some(e) => {
                            // Credentials refused in the middle of a session (EWS sends them
                            // with every request): the same block as a refused login.
                            if e.kind == ErrorKind::Auth {
                                self.gate.rejected(&e).await;
                            }
                            // A session lost after it was caught up: the adaptive learner may
                            // have to fall back to the floor.
                            if self.caught_up {
                                let interval = self.settings.borrow().interval;
                                let _ = self.out.send(Out::Lost(self.generation, interval));
                            }
                            e
                        }
                    }
                }
            };
            if failure.kind == ErrorKind::Throttled {
                // The server asked to wait: not an error. The state says so; the next attempt
                // comes when the wait is over (the protocol sends nothing before it anyway).
                let wait = failure.retry_after.unwrap_or(Duration::from_secs(30));
                tracing::warn!(
                    account = %self.account, folder = %self.folder,
                    "{}; asking again in {:.0} s", failure.message, wait.as_secs_f64().ceil()
                );
                self.set_state(Connectivity::Throttled);
                if self.pause_for(wait, false).await == Why::Stop {
                    return;
                }
                continue;
            }
            let mut delay = self.backoff.next_delay(failure.kind);
            let config_error = failure.kind == ErrorKind::Folder;
            if config_error {
                // A folder the server does not have is a configuration error: a reconnect
                // cannot fix it, so retry as slowly as after a rejected password.
                delay = delay.max(super::backoff::AUTH_MIN);
            }
            tracing::info!(
                account = %self.account, folder = %self.folder, kind = %failure.kind,
                "{}; retrying in {:.1} s", failure.message, delay.as_secs_f64()
            );
            self.set_state(Connectivity::Error);
            let _ = self.out.send(Out::Failed(self.generation, failure));
            if self.gate.blocked_until().is_some() {
                continue; // the gate's block is the wait (and ends early when lifted)
            }
            // "Check now" clicked while this attempt was failing: try again at once.
            if !check_now && self.pause_for(delay, config_error).await == Why::Stop {
                return;
            }
        }
    }

    /// Wait while the account's logins are blocked; commands other than stop change nothing.
    async fn wait_blocked(&mut self, until: Instant) -> Why {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Why::Nothing,
                Ok(()) = self.lifted.changed() => return Why::Nothing,
                ctl = self.ctl.recv() => match ctl_reason(ctl) {
                    Why::Stop => return Why::Stop,
                    _ => tracing::info!(
                        account = %self.account, folder = %self.folder,
                        "check now: not logging in again before {:.0} s from now, since the \
                         server rejected the credentials (a new password or sign-in, or changed \
                         account settings, try at once)",
                        until.saturating_duration_since(Instant::now()).as_secs_f64()
                    ),
                },
            }
        }
    }

    /// Sleep for the backoff delay; "Check now" cuts it short.
    async fn pause(&mut self, delay: Duration) -> Why {
        self.pause_for(delay, false).await
    }

    /// [`pause`](Self::pause); after a configuration error (`config_error`) a wake source's
    /// initiation does not cut it short, the user's "Check now" does.
    async fn pause_for(&mut self, delay: Duration, config_error: bool) -> Why {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Why::Nothing,
                ctl = self.ctl.recv() => match ctl {
                    Some(Ctl::Wake) if config_error => tracing::debug!(
                        account = %self.account, folder = %self.folder,
                        "network change or resume: the folder error is one of configuration; \
                         retrying at the slow pace"
                    ),
                    other => return ctl_reason(other),
                },
            }
        }
    }

    /// Use an open session until it fails (`Some(error)`) or the supervisor is stopped (`None`).
    async fn serve(
        &mut self,
        mut session: Box<dyn Session>,
        info: FolderInfo,
        first_session: &mut bool,
    ) -> Option<ProtoError> {
        match self
            .serve_inner(session.as_mut(), info, first_session)
            .await
        {
            Ok(()) => {
                let rt = self.response_timeout();
                let _ = timeout(rt, session.close()).await;
                None
            }
            // Dropping the session closes the socket.
            Err(e) => Some(e),
        }
    }

    async fn serve_inner(
        &mut self,
        session: &mut dyn Session,
        info: FolderInfo,
        first_session: &mut bool,
    ) -> Result<(), ProtoError> {
        use Connectivity::*;
        self.set_state(Working);
        let rt = self.response_timeout();
        let last = bounded(
            self.endpoint(),
            rt,
            "the last-item query",
            session.last_item(),
        )
        .await?;
        // The query answered: the connection works. Say so before the catch-up, so that
        // "connection restored" comes before the mail that arrived during the outage.
        let _ = self.out.send(Out::Opened(self.generation));
        self.emit(Event::Connected {
            account: self.account.clone(),
            folder: self.folder.clone(),
            exists: info.exists,
            uid_validity: info.uid_validity,
        });
        let mut seen = self.baseline(session, info, last, *first_session).await?;
        *first_session = false;
        self.caught_up = true;

        loop {
            let settings = self.settings.borrow_and_update().clone();
            self.set_state(Idle);
            let (wake, why, initiated) = self.wait(session, info.can_push, &settings).await?;
            // The backoff starts afresh only once the session has waited once (IDLE begun
            // and ended): a server that refuses IDLE every time is retried with a growing
            // delay, not once a second.
            self.backoff.reset();
            if why == Why::Stop {
                return Ok(());
            }
            self.set_state(Working);
            let settings = self.settings.borrow().clone();
            let query = match (wake, why) {
                (Wake::Changed, _) => false,
                (Wake::Timeout, _) => settings.keepalive || !info.can_push,
                (Wake::Interrupted, Why::CheckNow) => true,
                (Wake::Interrupted, _) => settings.keepalive,
            };
            if wake == Wake::Changed {
                self.announce_new(session, &mut seen).await?;
            } else if query {
                // The cycle's round trip includes ending IDLE (DONE → OK), not only the query.
                let started = initiated;
                let newest = bounded(
                    self.endpoint(),
                    settings.response_timeout,
                    "the keep-alive query",
                    session.newest_uid(),
                )
                .await?;
                self.emit(Event::KeepAlive {
                    account: self.account.clone(),
                    folder: self.folder.clone(),
                    round_trip: started.elapsed(),
                });
                if newest.is_some_and(|uid| uid > seen.uid) {
                    self.announce_new(session, &mut seen).await?;
                }
            }
        }
    }

    /// Wait for a push, the keep-alive timer, or a command.
    /// Also returns when the cycle was initiated (the timer fired, or the command arrived), so
    /// that a keep-alive's round trip includes ending IDLE.
    async fn wait(
        &mut self,
        session: &mut dyn Session,
        can_push: bool,
        settings: &Settings,
    ) -> Result<(Wake, Why, Instant), ProtoError> {
        let mut why = Why::Nothing;
        if !can_push {
            // No IDLE: poll with the same query every interval (keep-alive on or off).
            let mut tick = (self.timer)(settings.interval);
            tokio::select! {
                _ = &mut tick => return Ok((Wake::Timeout, why, Instant::now())),
                ctl = self.ctl.recv() => why = ctl_reason(ctl),
                Ok(()) = self.settings.changed() => why = Why::Settings,
            }
            return Ok((Wake::Interrupted, why, Instant::now()));
        }
        let max = if settings.keepalive {
            settings.interval
        } else {
            IDLE_REISSUE
        };
        let started = Instant::now();
        let mut initiated = started + max;
        let stop = CancellationToken::new();
        let idle = session.wait(max, &stop);
        tokio::pin!(idle);
        // Backstop: the session must have ended IDLE within a response timeout after `max`.
        // Two seconds of slack, so that the session's own, more precise error (which names the
        // server and the step) wins when IDLE cannot be ended.
        let guard = sleep(max + settings.response_timeout + Duration::from_secs(2));
        tokio::pin!(guard);
        loop {
            tokio::select! {
                r = &mut idle => return r.map(|wake| (wake, why, initiated.min(Instant::now()))),
                _ = &mut guard => return Err(dead(&self.endpoint(), settings.response_timeout, "ending IDLE")),
                ctl = self.ctl.recv(), if why == Why::Nothing => {
                    why = ctl_reason(ctl);
                    initiated = Instant::now();
                    stop.cancel();
                }
                Ok(()) = self.settings.changed(), if why == Why::Nothing => {
                    why = Why::Settings;
                    initiated = Instant::now();
                    stop.cancel();
                }
            }
        }
    }

    /// Reconcile the folder with what was seen before; returns the new baseline.
    async fn baseline(
        &mut self,
        session: &mut dyn Session,
        info: FolderInfo,
        last: Option<MailItem>,
        first_session: bool,
    ) -> Result<Seen, ProtoError> {
        let newest = last.as_ref().map_or(0, |item| item.uid);
        let mut seen = Seen {
            uid_validity: info.uid_validity,
            uid: newest,
        };
        match self.store.get(&self.account, &self.folder, &self.server) {
            Some(before) if before.uid_validity == info.uid_validity => {
                seen.uid = before.uid;
                if newest > before.uid {
                    if first_session {
                        // Arrived while mailpulse was not running: one summary, not a flood.
                        let rt = self.response_timeout();
                        let count = bounded(
                            self.endpoint(),
                            rt,
                            "counting new messages",
                            session.count_after(before.uid),
                        )
                        .await?;
                        if let Some(newest_item) = last {
                            self.emit(Event::MissedMail {
                                account: self.account.clone(),
                                folder: self.folder.clone(),
                                count: count.max(1),
                                newest: newest_item,
                                offline: true,
                            });
                        }
                        seen.uid = newest;
                    } else {
                        self.announce_new(session, &mut seen).await?;
                    }
                }
            }
            Some(before) => tracing::info!(
                account = %self.account, folder = %self.folder,
                "UIDVALIDITY changed from {} to {}: starting from the newest message without announcing old ones",
                before.uid_validity, info.uid_validity
            ),
            None => tracing::debug!(
                account = %self.account, folder = %self.folder,
                "first session for this folder; baseline UID {newest}"
            ),
        }
        self.store
            .set(&self.account, &self.folder, &self.server, seen);
        Ok(seen)
    }

    /// Announce every message above the last seen UID, once, oldest first.
    async fn announce_new(
        &mut self,
        session: &mut dyn Session,
        seen: &mut Seen,
    ) -> Result<(), ProtoError> {
        let rt = self.response_timeout();
        // In batches, each with its own deadline, progress saved after each: a backlog of any
        // size advances on a slow link instead of timing out as a whole and starting over.
        // Each batch moves past at least one UID, so this ends. The first ONE_BY_ONE messages
        // are announced one by one; the rest of a big backlog becomes one summary (a toast and
        // a hook run per message would flood the desktop).
        let mut announced = 0;
        let mut rest: Option<(u32, MailItem)> = None;
        let result = async {
            loop {
                let batch = bounded(
                    self.endpoint(),
                    rt,
                    "fetching new messages",
                    session.items_batch(seen.uid),
                )
                .await?;
                let mut items = batch.items;
                items.retain(|item| item.uid > seen.uid);
                items.sort_by_key(|item| item.uid);
                for item in items {
                    seen.uid = item.uid;
                    if announced < ONE_BY_ONE {
                        announced += 1;
                        self.emit(Event::NewMail {
                            account: self.account.clone(),
                            folder: self.folder.clone(),
                            uid_validity: seen.uid_validity,
                            item,
                        });
                    } else {
                        let count = rest.as_ref().map_or(0, |(n, _)| *n);
                        rest = Some((count + 1, item));
                    }
                }
                match batch.covered {
                    Some(upto) if upto > seen.uid => seen.uid = upto,
                    Some(_) => {}
                    None => return Ok(()),
                }
                self.store
                    .set(&self.account, &self.folder, &self.server, *seen);
            }
        }
        .await;
        if let Some((count, newest)) = rest {
            self.emit(Event::MissedMail {
                account: self.account.clone(),
                folder: self.folder.clone(),
                count,
                newest,
                offline: false,
            });
        }
        result?;
        self.store
            .set(&self.account, &self.folder, &self.server, *seen);
        Ok(())
    }
}

fn ctl_reason(ctl: Option<Ctl>) -> Why {
    match ctl {
        Some(Ctl::CheckNow | Ctl::Wake) => Why::CheckNow,
        Some(Ctl::Stop) | None => Why::Stop,
    }
}

fn dead(endpoint: &str, rt: Duration, what: &str) -> ProtoError {
    ProtoError::new(
        ErrorKind::Timeout,
        format!(
            "{endpoint}: no answer within {} s ({what}): the connection is dead",
            rt.as_secs()
        ),
    )
}

/// Run a protocol step with a deadline; a missed deadline is a dead connection.
async fn bounded<T>(
    endpoint: String,
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, ProtoError>>,
) -> Result<T, ProtoError> {
    match timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(dead(&endpoint, limit, what)),
    }
}

/// Messages of one catch-up announced one by one; beyond, one `MissedMail` summary.
const ONE_BY_ONE: usize = 200;

/// A connection attempt older than this is abandoned when "Check now" (or a network change,
/// or a resume) arrives: it was most likely started on the old network and would only end at
/// its deadline. A younger one is let finish, so that a burst of commands cannot keep
/// restarting it.
const RESTART_AFTER: Duration = Duration::from_secs(1);

enum Attempt<T> {
    /// The attempt ended; `true` when "Check now" arrived meanwhile (retry at once on failure).
    Finished(T, bool),
    Stopped,
    /// "Check now" arrived after [`RESTART_AFTER`]: start a new attempt at once.
    Restart,
}

/// Race a connection attempt against the command channel.
async fn attempt<F: Future>(ctl: &mut mpsc::UnboundedReceiver<Ctl>, fut: F) -> Attempt<F::Output> {
    tokio::pin!(fut);
    let begun = Instant::now();
    let mut check_now = false;
    loop {
        tokio::select! {
            r = &mut fut => return Attempt::Finished(r, check_now),
            c = ctl.recv() => match ctl_reason(c) {
                Why::Stop => return Attempt::Stopped,
                _ if begun.elapsed() >= RESTART_AFTER => return Attempt::Restart,
                _ => check_now = true,
            },
        }
    }
}
