//! The engine: protocol-free, clock-injected (every timer is `tokio::time`, so tests run it on a
//! paused clock), one supervisor task per account and folder.
//!
//! ```text
//!  Command ──► engine task ──watch<Settings>──► supervisors ──Out──► engine task ──► Event
//!                 │  (aggregates states: worst wins; dedupes errors per episode)
//! ```

pub mod adaptive;
pub mod backoff;
mod store;
mod supervisor;

pub use store::{Seen, Store};
pub use supervisor::IDLE_REISSUE;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Account, Config, KeepAlive, MAX_INTERVAL_SECS, MIN_INTERVAL_SECS};
use crate::event::{Command, Connectivity, ErrorKind, Event};
use crate::protocol::{ConnectorFactory, ProtoError};
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
}

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

/// Start the engine on the current tokio runtime. Events arrive on the returned receiver.
pub fn spawn(
    config: &Config,
    factory: ConnectorFactory,
    store: Store,
) -> (EngineHandle, mpsc::UnboundedReceiver<Event>) {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, event_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (settings, _) = watch::channel(Settings::from(&config.keepalive));
    let mut engine = EngineTask {
        factory,
        store,
        settings,
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
    folders: Vec<(u64, mpsc::UnboundedSender<Ctl>, JoinHandle<()>)>,
}

struct FolderSlot {
    account: String,
    state: Option<Connectivity>,
}

struct EngineTask {
    factory: ConnectorFactory,
    store: Store,
    settings: watch::Sender<Settings>,
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
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Quit) => break,
                    Some(command) => self.command(command),
                },
                Some(message) = out.recv() => self.handle(message),
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
            Command::SetInterval(_) => "set interval",
            Command::CheckNow => "check now",
            Command::Reload(_) => "reload",
            Command::Quit => "quit",
        };
        tracing::debug!("engine command: {name}");
        match command {
            Command::SetKeepAlive(on) => {
                self.keepalive.enabled = on;
                self.push_settings();
            }
            Command::SetInterval(secs) => {
                self.keepalive.interval_secs = secs.clamp(MIN_INTERVAL_SECS, MAX_INTERVAL_SECS);
                self.push_settings();
            }
            Command::CheckNow => {
                for running in self.accounts.values() {
                    for (_, ctl, _) in &running.folders {
                        let _ = ctl.send(Ctl::CheckNow);
                    }
                }
            }
            Command::Reload(config) => self.reload(*config),
            Command::Quit => {}
        }
    }

    fn push_settings(&self) {
        let new = Settings::from(&self.keepalive);
        self.settings.send_if_modified(|s| {
            let changed = *s != new;
            *s = new;
            changed
        });
    }

    fn reload(&mut self, config: Config) {
        // The connector captures the response timeout: a change restarts every session.
        let restart_all =
            config.keepalive.response_timeout_secs != self.keepalive.response_timeout_secs;
        self.keepalive = config.keepalive.clone();
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
        let connector = (self.factory)(&account, &self.keepalive);
        let server = format!(
            "{}@{}:{}",
            account.username,
            account.host,
            account.effective_port()
        );
        let mut folders = Vec::new();
        for folder in &account.folders {
            self.next_generation += 1;
            let generation = self.next_generation;
            let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
            let supervisor = Supervisor::new(
                generation,
                account.name.clone(),
                folder.clone(),
                server.clone(),
                connector.clone(),
                self.settings.subscribe(),
                ctl_rx,
                self.out_tx.clone(),
                self.store.clone(),
            );
            self.folders.insert(
                generation,
                FolderSlot {
                    account: account.name.clone(),
                    state: None,
                },
            );
            folders.push((generation, ctl_tx, tokio::spawn(supervisor.run())));
        }
        self.accounts
            .insert(account.name.clone(), RunningAccount { account, folders });
    }

    /// Tell an account's supervisors to stop; returns their tasks to await.
    fn stop_account(&mut self, name: &str) -> Vec<JoinHandle<()>> {
        let Some(running) = self.accounts.remove(name) else {
            return Vec::new();
        };
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
            Out::Event(g, _) | Out::State(g, _) | Out::Failed(g, _) | Out::Opened(g) => *g,
        };
        let Some(slot) = self.folders.get_mut(&generation) else {
            return; // from a supervisor that was stopped
        };
        let account = slot.account.clone();
        match message {
            Out::Event(_, event) => self.emit(event),
            Out::State(_, state) => {
                slot.state = Some(state);
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
            Out::Failed(_, error) => {
                let key = (error.kind, error.message.clone());
                if self.errors.get(&account) != Some(&key) {
                    tracing::warn!(account = %account, kind = %error.kind, "{}", error.message);
                    self.errors.insert(account.clone(), key);
                    self.emit(Event::Error {
                        account,
                        kind: error.kind,
                        message: error.message,
                    });
                }
            }
            Out::Opened(_) => {
                if self.errors.remove(&account).is_some() {
                    tracing::info!(account = %account, "connection restored");
                    self.emit(Event::Recovered { account });
                }
            }
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
