//! Logging with `tracing`: warnings and errors on stderr (more with `RUST_LOG`), and, when the
//! config enables it, a daily rolling file in the platform's log directory (7 files kept).
//! Protocol libraries are capped at `warn`: their traces would contain raw IMAP traffic, and
//! ureq's the OAuth2 token requests.

use std::path::Path;
use std::sync::OnceLock;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::Logging;

/// Keeps the file writer flushing until dropped (at exit).
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

const QUIET_DEPS: [&str; 4] = [
    "async_imap=warn",
    "imap_proto=warn",
    "ureq=warn",
    "ureq_proto=warn",
];

fn quiet(mut filter: EnvFilter) -> EnvFilter {
    for directive in QUIET_DEPS {
        filter = filter.add_directive(directive.parse().expect("static directive"));
    }
    filter
}

pub const KEEP_FILES: usize = 7;

/// Changes the file log's level (or switches it off) while running.
type Apply = Box<dyn Fn(&Logging) + Send + Sync>;
static APPLY: OnceLock<Apply> = OnceLock::new();

fn file_filter(logging: &Logging) -> EnvFilter {
    if logging.enabled {
        quiet(EnvFilter::new(logging.level.as_str()))
    } else {
        EnvFilter::new("off")
    }
}

pub fn init(logging: &Logging, log_dir: Option<&Path>) -> LogGuard {
    let stderr_filter =
        quiet(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(stderr_filter);

    // The file layer is installed whenever there is a log dir, so that logging can be switched
    // on later without a restart; while its filter is "off" it writes nothing (the day's file
    // is created empty).
    let mut guard = None;
    let file = log_dir.and_then(|dir| {
        let _ = std::fs::create_dir_all(dir);
        let appender = tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("mailpulse")
            .filename_suffix("log")
            .max_log_files(KEEP_FILES)
            .build(dir)
            .map_err(|e| {
                if logging.enabled {
                    eprintln!("mailpulse: cannot write logs to {}: {e}", dir.display());
                }
            })
            .ok()?;
        // The default queue holds 128 000 lines and is allocated (and touched) up front: 4 MB
        // of an idle agent's memory. A mail agent logs a few lines a minute; when a burst
        // overflows this queue, lines are dropped rather than blocking the engine.
        let (writer, g) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .buffered_lines_limit(1024)
            .lossy(true)
            .finish(appender);
        guard = Some(g);
        let (filter, handle) = tracing_subscriber::reload::Layer::new(file_filter(logging));
        let _ = APPLY.set(Box::new(move |l: &Logging| {
            let _ = handle.reload(file_filter(l));
        }));
        Some(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(filter),
        )
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    LogGuard { _file: guard }
}

/// Apply new logging settings to the running process.
pub fn apply(logging: &Logging) {
    if let Some(apply) = APPLY.get() {
        apply(logging);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_parse() {
        let _ = super::quiet(tracing_subscriber::EnvFilter::new("trace"));
    }
}
