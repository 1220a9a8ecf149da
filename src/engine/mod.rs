//! The engine: protocol-free, clock-injected (every timer is `tokio::time`, so tests run it on a
//! paused clock), one supervisor task per account and folder.
//!
//! ```text
//!  Command ──► engine task ──watch<Settings>──► supervisors ──Out──► engine task ──► Event
//!                 │  (aggregates states: worst wins; dedupes errors per episode)
//! ```

pub mod adaptive;
pub mod backoff;
mod gate;
mod store;
mod supervisor;

pub use gate::CredentialFingerprint;
pub use store::Store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Account, Config, KeepAlive};
use crate::error::{ErrorKind, ProtoError};
use crate::event::{Command, Connectivity, Event};
use crate::protocol::{Connector, ConnectorFactory};
use gate::{Gate, Gated};
use supervisor::{Ctl, Supervisor};

/// The keep-alive settings every supervisor follows; changes reach them at once, mid-IDLE too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub keepalive: bool,
    pub interval: Duration,
    pub response_timeout: Duration,
}

impl From<&KeepAlive> for Settings {
    fn from(k: &KeepAlive) -> Self {
        Settings {
            keepalive: k.enabled,
            interval: k.interval(),
            response_timeout: k.response_timeout(),
        }
    }
}

/// What supervisors tell the engine task; tagged with the supervisor's generation so that
/// messages from a supervisor that was just replaced are ignored.
#[derive(Debug)]
pub(crate) enum Out {
    Event(u64, Event),
    State(u64, Connectivity),
    Failed(u64, ProtoError),
    /// The session is open and caught up.
    Opened(u64),
    /// A session that was open and caught up died (while idle, or at its keep-alive) when its
    /// keep-alive interval was this.
    Lost(u64, Duration),
    /// The supervisor's task ended on a panic (the message, for the log and the user).
    Panicked(u64, String),
    /// An account's adaptive measurement ended (`learner` tells stale ones apart).
    Learned {
        account: String,
        learner: u64,
        result: Result<adaptive::Outcome, ProtoError>,
    },
}

/// Where the engine learns which network it is on (tests inject their own).
pub type NetworkId = Arc<dyn Fn() -> String + Send + Sync>;

/// How often the engine looks at the network identity by itself while learning is on (network
/// changes also arrive as `CheckNow` from `wake`, which can be switched off).
pub const NETWORK_CHECK: Duration = Duration::from_secs(30);

/// While an account's logins are blocked after a rejection, the engine looks at its stored
/// credential this often by itself: `mailpulse password set` reaches a running tray at once
/// (its IPC), and a headless `watch`, which has none, within this time.
pub const CREDENTIAL_RECHECK: Duration = Duration::from_secs(60);

/// The handle the shell keeps: send commands, and shut down cleanly.
#[derive(Debug)]
pub struct EngineHandle {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl EngineHandle {
    /// A sender for commands (cheap to clone; the tray and signal handlers each keep one).
    pub fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Log out of every session and wait for the engine to end.
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Quit);
        let _ = self.task.await;
    }
}

/// How a folder without push sleeps between its polls: the platform's timer in the agent (one
/// wake-up where tokio's timer wheel takes several, see `platform::sleep_until`), tokio's in
/// the engine's tests, which pause tokio's clock.
pub type IdleTimer = Arc<dyn Fn(Duration) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// tokio's timer, as an [`IdleTimer`].
pub fn tokio_timer() -> IdleTimer {
    Arc::new(|d| Box::pin(tokio::time::sleep(d)))
}

/// Start the engine on the current tokio runtime. Events arrive on the returned receiver.
pub fn spawn(
    config: &Config,
    factory: ConnectorFactory,
    store: Store,
) -> (EngineHandle, mpsc::UnboundedReceiver<Event>) {
    let memory = match store.dir() {
        Some(dir) => adaptive::Memory::open(dir),
        None => adaptive::Memory::in_memory(),
    };
    spawn_with(
        config,
        factory,
        store,
        memory,
        Arc::new(crate::platform::network_id),
        Arc::new(gate::keyring_fingerprint),
        Arc::new(|d| Box::pin(crate::platform::sleep(d))),
    )
}

/// [`spawn`] with the adaptive keep-alive's memory and network identity chosen by the caller.
pub fn spawn_with(
    config: &Config,
    factory: ConnectorFactory,
    store: Store,
    memory: adaptive::Memory,
    netid: NetworkId,
    fingerprint: CredentialFingerprint,
    timer: IdleTimer,
) -> (EngineHandle, mpsc::UnboundedReceiver<Event>) {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, event_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let network = netid();
    let mut engine = EngineTask {
        factory,
        store,
        memory,
        netid,
        fingerprint,
        timer,
        network,
        next_learner: 0,
        keepalive: config.keepalive.clone(),
        events,
        out_tx,
        next_generation: 0,
        accounts: BTreeMap::new(),
        folders: HashMap::new(),
        account_state: HashMap::new(),
        errors: HashMap::new(),
    };
    for account in &config.accounts {
        engine.start_account(account.clone());
    }
    let task = tokio::spawn(engine.run(command_rx, out_rx));
    (EngineHandle { commands, task }, event_rx)
}

struct RunningAccount {
    account: Account,
    /// `user@host:port`: what learned values are remembered for (with the network).
    server: String,
    connector: Arc<dyn Connector>,
    /// Every login of the account goes through it (see `gate`).
    gate: Arc<Gate>,
    /// The settings this account's supervisors follow (the interval may be a learned one).
    settings: watch::Sender<Settings>,
    /// The learned interval on the current network, while adaptive keep-alive is on.
    learned: Option<Duration>,
    /// The running measurement: its id and task.
    learner: Option<(u64, JoinHandle<()>)>,
    folders: Vec<(u64, mpsc::UnboundedSender<Ctl>, JoinHandle<()>)>,
    /// Restarts after a panic, per folder: a task that panics again and again is restarted
    /// with a growing delay.
    restarts: HashMap<String, backoff::Backoff>,
    /// Learning failed on rejected credentials: start it when a session has logged in.
    learn_after_login: bool,
}

struct FolderSlot {
    account: String,
    folder: String,
    state: Option<Connectivity>,
}

struct EngineTask {
    factory: ConnectorFactory,
    store: Store,
    memory: adaptive::Memory,
    netid: NetworkId,
    fingerprint: CredentialFingerprint,
    timer: IdleTimer,
    /// The network identity the learned intervals currently apply to.
    network: String,
    next_learner: u64,
    keepalive: KeepAlive,
    events: mpsc::UnboundedSender<Event>,
    out_tx: mpsc::UnboundedSender<Out>,
    next_generation: u64,
    accounts: BTreeMap<String, RunningAccount>,
    /// Live supervisors by generation.
    folders: HashMap<u64, FolderSlot>,
    account_state: HashMap<String, Connectivity>,
    /// The error of the current failure episode per account, to report it once.
    errors: HashMap<String, (ErrorKind, String)>,
}

impl EngineTask {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut out: mpsc::UnboundedReceiver<Out>,
    ) {
        let mut network_check = tokio::time::interval(NETWORK_CHECK);
        network_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut credential_check = tokio::time::interval(CREDENTIAL_RECHECK);
        credential_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Quit) => break,
                    Some(command) => self.command(command),
                },
                Some(message) = out.recv() => self.handle(message),
                _ = network_check.tick(), if self.adaptive_on() => self.check_network(),
                // Only while some account is blocked: no wake-ups otherwise.
                _ = credential_check.tick(), if self.any_blocked() => self.recheck_credentials(),
            }
        }
        let names: Vec<String> = self.accounts.keys().cloned().collect();
        let mut joins = Vec::new();
        for name in names {
            joins.extend(self.stop_account(&name));
        }
        // Supervisors log out within a response timeout; don't let a stuck one hold up quitting.
        let limit = self.keepalive.response_timeout() + Duration::from_secs(2);
        for join in joins {
            let abort = join.abort_handle();
            if tokio::time::timeout(limit, join).await.is_err() {
                abort.abort();
            }
        }
    }

    fn command(&mut self, command: Command) {
        let name = match &command {
            Command::SetKeepAlive(_) => "set keep-alive",
            Command::CheckNow => "check now",
            Command::Wake => "wake",
            Command::CheckCredentials => "check credentials",
            Command::Reload(_) => "reload",
            Command::Quit => "quit",
        };
        tracing::debug!("engine command: {name}");
        match command {
            Command::SetKeepAlive(on) => {
                self.keepalive.enabled = on;
                self.refresh_adaptive();
                self.push_settings();
            }
            Command::CheckNow | Command::Wake => {
                let user = matches!(command, Command::CheckNow);
                self.check_network();
                // An explicit "check now" after `mailpulse password set` logs in again.
                self.recheck_credentials();
                if user {
                    // The user asked: a rejected password may be tried once more, at most
                    // once a minute (the wake sources never do this).
                    for running in self.accounts.values() {
                        running.gate.user_retry();
                    }
                }
                let ctl_now = if user { Ctl::CheckNow } else { Ctl::Wake };
                for running in self.accounts.values() {
                    for (_, ctl, _) in &running.folders {
                        let _ = ctl.send(ctl_now);
                    }
                }
            }
            Command::CheckCredentials => self.recheck_credentials(),
            Command::Reload(config) => self.reload(*config),
            Command::Quit => {}
        }
    }

    /// Accounts whose logins are blocked after a rejection look at their stored credential
    /// again: a new one lifts the block.
    fn recheck_credentials(&self) {
        for running in self.accounts.values() {
            if running.gate.blocked_until().is_some() {
                let gate = running.gate.clone();
                tokio::spawn(async move { gate.recheck().await });
            }
        }
    }

    fn any_blocked(&self) -> bool {
        self.accounts
            .values()
            .any(|running| running.gate.blocked_until().is_some())
    }

    fn adaptive_on(&self) -> bool {
        self.keepalive.adaptive && self.keepalive.enabled
    }

    /// The settings of one account: the learned interval replaces the floor while adaptive.
    fn settings_for(&self, learned: Option<Duration>) -> Settings {
        let mut s = Settings::from(&self.keepalive);
        if self.adaptive_on()
            && let Some(interval) = learned
        {
            s.interval = interval.max(self.keepalive.interval());
        }
        s
    }

    fn push_settings(&self) {
        for running in self.accounts.values() {
            let new = self.settings_for(running.learned);
            running.settings.send_if_modified(|s| {
                let changed = *s != new;
                *s = new;
                changed
            });
        }
    }

    /// Bring every account's learning in line with the settings: start learning where there
    /// is nothing known for this network, use what is known, stop when switched off.
    fn refresh_adaptive(&mut self) {
        let names: Vec<String> = self.accounts.keys().cloned().collect();
        for name in names {
            if !self.adaptive_on() {
                let running = self.accounts.get_mut(&name).expect("listed");
                running.learned = None;
                if let Some((_, task)) = running.learner.take() {
                    task.abort();
                }
                continue;
            }
            let running = &self.accounts[&name];
            if running.learned.is_some() || running.learner.is_some() {
                continue;
            }
            match self.memory.get(&self.network, &running.server) {
                Some(record) => {
                    let interval = Duration::from_secs(record.interval_secs);
                    tracing::info!(
                        account = %name, network = %self.network,
                        "known network: keep-alive every {} s (learned before)", interval.as_secs()
                    );
                    self.accounts.get_mut(&name).expect("listed").learned = Some(interval);
                    self.emit(Event::Learned {
                        account: name.clone(),
                        network: self.network.clone(),
                        interval,
                        survived: record.survived_secs.map(Duration::from_secs),
                        failed: record.failed_secs.map(Duration::from_secs),
                        server_keepalive: record.server_keepalive,
                    });
                }
                None => self.start_learning(&name),
            }
        }
    }

    fn start_learning(&mut self, name: &str) {
        self.next_learner += 1;
        let id = self.next_learner;
        let params = adaptive::Params {
            floor: self.keepalive.interval(),
            max: self.keepalive.adaptive_max(),
            response_timeout: self.keepalive.response_timeout(),
        };
        let network = self.network.clone();
        let Some(running) = self.accounts.get_mut(name) else {
            return;
        };
        if let Some((_, task)) = running.learner.take() {
            task.abort();
        }
        let connector = running.connector.clone();
        // The main session waits on the first folder: so does the IDLE check.
        let folder = running.account.folders.first().cloned();
        let out = self.out_tx.clone();
        let account = name.to_owned();
        tracing::info!(
            account = %account, network = %network,
            "learning this network's idle timeout between {} and {} s (on separate probe connections)",
            params.floor.as_secs(), params.max.as_secs()
        );
        let task = tokio::spawn(async move {
            let result = adaptive::measure(connector.as_ref(), params, folder.as_deref(), |p| {
                tracing::debug!(
                    account = %account,
                    "learning: {:.0} s, testing {:?} s, survived {:?}, failed {:?}",
                    p.elapsed.as_secs_f64(),
                    p.testing.iter().map(|t| t.as_secs()).collect::<Vec<_>>(),
                    p.lo.map(|d| d.as_secs()),
                    p.hi.map(|d| d.as_secs())
                );
            })
            .await;
            let _ = out.send(Out::Learned {
                account,
                learner: id,
                result,
            });
        });
        running.learner = Some((id, task));
    }

    /// Look at the network identity; on a change, use what is known about the new network or
    /// start learning it from the floor.
    fn check_network(&mut self) {
        if !self.adaptive_on() {
            return;
        }
        let now = (self.netid)();
        if now == self.network {
            return;
        }
        tracing::info!("network changed from {:?} to {:?}", self.network, now);
        self.network = now;
        self.forget_learned();
        self.refresh_adaptive();
        self.push_settings();
    }

    /// Every account's learned interval no longer applies (another network, other limits):
    /// forget it and stop any measurement in progress.
    fn forget_learned(&mut self) {
        for running in self.accounts.values_mut() {
            running.learned = None;
            if let Some((_, task)) = running.learner.take() {
                task.abort();
            }
        }
    }

    fn learned(
        &mut self,
        account: String,
        learner: u64,
        result: Result<adaptive::Outcome, ProtoError>,
    ) {
        let network = self.network.clone();
        let Some(running) = self.accounts.get_mut(&account) else {
            return;
        };
        if running.learner.as_ref().map(|(id, _)| *id) != Some(learner) {
            return; // a measurement that was replaced
        }
        running.learner = None;
        match result {
            Ok(outcome) => {
                tracing::info!(account = %account, network = %network, "{}", outcome.sentence());
                running.learned = Some(outcome.interval);
                self.memory.set(
                    &network,
                    &running.server,
                    adaptive::Record {
                        interval_secs: outcome.interval.as_secs(),
                        survived_secs: outcome.survived.map(|d| d.as_secs()),
                        failed_secs: outcome.failed.map(|d| d.as_secs()),
                        suspect: false,
                        server_keepalive: outcome.server_keepalive,
                        learned: chrono::Utc::now().to_rfc3339(),
                    },
                );
                self.emit(Event::Learned {
                    account,
                    network,
                    interval: outcome.interval,
                    survived: outcome.survived,
                    failed: outcome.failed,
                    server_keepalive: outcome.server_keepalive,
                });
                self.push_settings();
            }
            Err(e) if e.kind == ErrorKind::Auth => {
                // The credentials were rejected (or logins are blocked after that): learn once
                // a session has logged in.
                tracing::info!(
                    account = %account,
                    "not learning the idle timeout before a login succeeds ({e})"
                );
                running.learn_after_login = true;
            }
            Err(e) => {
                // Most likely a server that allows one connection per user: stay fixed.
                tracing::info!(
                    account = %account,
                    "not learning the idle timeout: no second connection to the server ({e}); \
                     staying at the fixed interval of {} s",
                    self.keepalive.interval_secs
                );
            }
        }
    }

    /// A session died at a learned interval: back to the floor at once, distrust the value and
    /// learn again.
    fn lost(&mut self, account: &str, interval: Duration) {
        self.check_network();
        let floor = self.keepalive.interval();
        let network = self.network.clone();
        let Some(running) = self.accounts.get_mut(account) else {
            return;
        };
        if !(self.keepalive.adaptive && self.keepalive.enabled)
            || running.learned.is_none()
            || interval <= floor
        {
            return;
        }
        tracing::info!(
            account = %account, network = %network,
            "the connection died idle at the learned interval of {} s: back to {} s, learning again",
            interval.as_secs(), floor.as_secs()
        );
        self.memory.mark_suspect(&network, &running.server);
        running.learned = None;
        self.emit(Event::Relearning {
            account: account.to_owned(),
            network,
            interval: floor,
        });
        self.push_settings();
        self.start_learning(account);
    }

    fn reload(&mut self, config: Config) {
        // The connector captures the response timeout and, for the sockets' TCP keep-alive,
        // whether adaptive keep-alive is on: a change restarts every session.
        let restart_all = config.keepalive.response_timeout_secs
            != self.keepalive.response_timeout_secs
            || config.keepalive.adaptive != self.keepalive.adaptive;
        let adaptive_changed = (
            config.keepalive.adaptive,
            config.keepalive.interval_secs,
            config.keepalive.adaptive_max_secs,
        ) != (
            self.keepalive.adaptive,
            self.keepalive.interval_secs,
            self.keepalive.adaptive_max_secs,
        );
        self.keepalive = config.keepalive.clone();
        if adaptive_changed {
            self.forget_learned();
        }
        self.refresh_adaptive();
        self.push_settings();
        let names: Vec<String> = self.accounts.keys().cloned().collect();
        for name in names {
            let keep = !restart_all
                && config
                    .account(&name)
                    .is_some_and(|a| *a == self.accounts[&name].account);
            if !keep {
                for join in self.stop_account(&name) {
                    reap(join, self.keepalive.response_timeout());
                }
            }
        }
        for account in &config.accounts {
            if !self.accounts.contains_key(&account.name) {
                self.start_account(account.clone());
            }
        }
    }

    fn start_account(&mut self, account: Account) {
        let gate = Gate::new(account.clone(), self.fingerprint.clone());
        let connector: Arc<dyn Connector> = Arc::new(Gated {
            inner: (self.factory)(&account, &self.keepalive),
            gate: gate.clone(),
        });
        let server = format!(
            "{}@{}:{}",
            account.username,
            account.host,
            account.effective_port()
        );
        let mut learned = None;
        if self.adaptive_on()
            && let Some(record) = self.memory.get(&self.network, &server)
        {
            learned = Some(Duration::from_secs(record.interval_secs));
        }
        let (settings, _) = watch::channel(self.settings_for(learned));
        let mut folders = Vec::new();
        for folder in &account.folders {
            folders.push(self.spawn_folder(
                &account.name,
                folder,
                &server,
                &connector,
                &gate,
                &settings,
                Duration::ZERO,
            ));
        }
        let name = account.name.clone();
        self.accounts.insert(
            name.clone(),
            RunningAccount {
                account,
                server,
                connector,
                gate,
                settings,
                learned: None,
                learner: None,
                folders,
                restarts: HashMap::new(),
                learn_after_login: false,
            },
        );
        // Announce a known value (or start learning) the same way as on a network change.
        self.refresh_adaptive();
    }

    /// Start one folder's supervisor (after `start_after`). Its task is watched: a panic is
    /// reported as `Out::Panicked`, and the engine restarts the folder.
    #[allow(clippy::too_many_arguments)]
    fn spawn_folder(
        &mut self,
        account: &str,
        folder: &str,
        server: &str,
        connector: &Arc<dyn Connector>,
        gate: &Arc<Gate>,
        settings: &watch::Sender<Settings>,
        start_after: Duration,
    ) -> (u64, mpsc::UnboundedSender<Ctl>, JoinHandle<()>) {
        use futures::FutureExt;
        self.next_generation += 1;
        let generation = self.next_generation;
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let mut supervisor = Supervisor::new(
            generation,
            account.to_owned(),
            folder.to_owned(),
            server.to_owned(),
            connector.clone(),
            gate.clone(),
            settings.subscribe(),
            ctl_rx,
            self.out_tx.clone(),
            self.store.clone(),
        );
        supervisor.start_after = start_after;
        supervisor.timer = self.timer.clone();
        self.folders.insert(
            generation,
            FolderSlot {
                account: account.to_owned(),
                folder: folder.to_owned(),
                state: None,
            },
        );
        let out = self.out_tx.clone();
        let task = tokio::spawn(async move {
            // The panic hook (logging) has logged where and what; here the engine hears of it.
            if let Err(payload) = std::panic::AssertUnwindSafe(supervisor.run())
                .catch_unwind()
                .await
            {
                let _ = out.send(Out::Panicked(
                    generation,
                    crate::error::panic_message(payload.as_ref()),
                ));
            }
        });
        (generation, ctl_tx, task)
    }

    /// A folder's task panicked: say so (the account is in error, not green), and start it
    /// again after a delay that grows if it keeps panicking.
    fn restart_folder(&mut self, generation: u64, message: &str) {
        let Some(slot) = self.folders.get(&generation) else {
            return;
        };
        let (name, folder) = (slot.account.clone(), slot.folder.clone());
        self.set_folder_state(generation, Connectivity::Error);
        self.failed(
            &name,
            ProtoError::new(
                ErrorKind::Internal,
                format!(
                    "mailpulse stopped watching {folder:?} on an internal error ({message}); \
                     starting it again"
                ),
            ),
        );
        self.folders.remove(&generation);
        let Some(running) = self.accounts.get_mut(&name) else {
            return;
        };
        let delay = running
            .restarts
            .entry(folder.clone())
            .or_default()
            .next_delay(ErrorKind::Internal);
        tracing::info!(account = %name, folder = %folder, "restarting the folder's task in {:.1} s", delay.as_secs_f64());
        let (server, connector, gate) = (
            running.server.clone(),
            running.connector.clone(),
            running.gate.clone(),
        );
        let settings = running.settings.clone();
        let new = self.spawn_folder(&name, &folder, &server, &connector, &gate, &settings, delay);
        if let Some(slot) = self.folders.get_mut(&new.0) {
            slot.state = Some(Connectivity::Error);
        }
        let running = self.accounts.get_mut(&name).expect("still running");
        match running
            .folders
            .iter_mut()
            .find(|(g, _, _)| *g == generation)
        {
            Some(entry) => *entry = new,
            None => running.folders.push(new),
        }
    }

    /// Tell an account's supervisors to stop; returns their tasks to await.
    fn stop_account(&mut self, name: &str) -> Vec<JoinHandle<()>> {
        let Some(mut running) = self.accounts.remove(name) else {
            return Vec::new();
        };
        if let Some((_, task)) = running.learner.take() {
            task.abort();
        }
        self.account_state.remove(name);
        self.errors.remove(name);
        running
            .folders
            .into_iter()
            .map(|(generation, ctl, join)| {
                self.folders.remove(&generation);
                let _ = ctl.send(Ctl::Stop);
                join
            })
            .collect()
    }

    fn handle(&mut self, message: Out) {
        let generation = match &message {
            Out::Event(g, _)
            | Out::State(g, _)
            | Out::Failed(g, _)
            | Out::Opened(g)
            | Out::Panicked(g, _)
            | Out::Lost(g, _) => *g,
            Out::Learned {
                account,
                learner,
                result,
            } => {
                let (account, learner, result) = (account.clone(), *learner, result.clone());
                self.learned(account, learner, result);
                return;
            }
        };
        let Some(slot) = self.folders.get_mut(&generation) else {
            return; // from a supervisor that was stopped
        };
        let account = slot.account.clone();
        match message {
            Out::Event(_, event) => self.emit(event),
            Out::State(_, state) => self.set_folder_state(generation, state),
            Out::Failed(_, error) => self.failed(&account, error),
            Out::Panicked(_, message) => self.restart_folder(generation, &message),
            Out::Lost(_, interval) => self.lost(&account, interval),
            Out::Learned { .. } => {}
            Out::Opened(_) => {
                if let Some(running) = self.accounts.get_mut(&account)
                    && std::mem::take(&mut running.learn_after_login)
                {
                    self.refresh_adaptive();
                }
                // Recovered only when no other folder of the account is still in error (a
                // folder that cannot be opened keeps the account in error while another
                // reconnects).
                let others_failing = self.folders.iter().any(|(g, s)| {
                    *g != generation && s.account == account && s.state == Some(Connectivity::Error)
                });
                if !others_failing && self.errors.remove(&account).is_some() {
                    tracing::info!(account = %account, "connection restored");
                    self.emit(Event::Recovered { account });
                }
            }
        }
    }

    /// One folder's state; the account's is its worst folder's.
    fn set_folder_state(&mut self, generation: u64, state: Connectivity) {
        let Some(slot) = self.folders.get_mut(&generation) else {
            return;
        };
        slot.state = Some(state);
        let account = slot.account.clone();
        let worst = self
            .folders
            .values()
            .filter(|s| s.account == account)
            .map(|s| s.state.unwrap_or(Connectivity::Connecting))
            .min();
        if let Some(worst) = worst
            && self.account_state.get(&account) != Some(&worst)
        {
            self.account_state.insert(account.clone(), worst);
            self.emit(Event::Connectivity {
                account,
                state: worst,
            });
        }
    }

    /// Report an account's error once per episode (again only when it changes).
    fn failed(&mut self, account: &str, error: ProtoError) {
        let key = (error.kind, error.message.clone());
        if self.errors.get(account) != Some(&key) {
            tracing::warn!(account = %account, kind = %error.kind, "{}", error.message);
            self.errors.insert(account.to_owned(), key);
            self.emit(Event::Error {
                account: account.to_owned(),
                kind: error.kind,
                message: error.message,
            });
        }
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

/// Wait for a stopped supervisor in the background; abort it if it does not end in time.
fn reap(join: JoinHandle<()>, response_timeout: Duration) {
    let abort = join.abort_handle();
    tokio::spawn(async move {
        if tokio::time::timeout(response_timeout + Duration::from_secs(2), join)
            .await
            .is_err()
        {
            abort.abort();
        }
    });
}

#[cfg(test)]
mod tests;
