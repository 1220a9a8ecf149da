//! Logging with `tracing`: warnings and errors on stderr (more with `RUST_LOG`), and, when the
//! config enables it, `mailpulse.log` in the platform's log directory, rotated by size: at most
//! [`KEEP_FILES`] files of [`FILE_BYTES`] each (`mailpulse.log`, `mailpulse.log.1`, …), private
//! to the user (0600).
//! Protocol libraries are capped at `warn`: their traces would contain raw IMAP traffic (the
//! `LOGIN` line with the password), and ureq's the OAuth2 token requests. The cap is a global
//! filter in front of every layer, so no `RUST_LOG` directive and no configured level can lift it.

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

/// Targets whose events may carry raw protocol bytes — async-imap traces every command it
/// sends, `LOGIN` with its password and `AUTHENTICATE` with its credentials included — and how
/// verbose they may ever be. [`clamp`] enforces this whatever `RUST_LOG` or the config says: an
/// `EnvFilter` directive such as `async_imap::imap_stream=trace` is more specific than the
/// defaults in [`QUIET_DEPS`] and would win over them.
const CLAMPED: [&str; 4] = ["async_imap", "imap_proto", "ureq", "ureq_proto"];

/// Whether an event or span of `meta` may be logged at all: nothing more verbose than `warn`
/// from the [`CLAMPED`] targets (and their modules), on any layer.
fn allowed(meta: &tracing::Metadata<'_>) -> bool {
    let target = meta.target();
    let clamped = CLAMPED.iter().any(|c| {
        target
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    });
    !clamped || *meta.level() <= tracing::Level::WARN
}

/// A global filter in front of every layer: see [`allowed`].
fn clamp() -> tracing_subscriber::filter::FilterFn<fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(allowed as fn(&tracing::Metadata<'_>) -> bool)
}

fn quiet(mut filter: EnvFilter) -> EnvFilter {
    for directive in QUIET_DEPS {
        filter = filter.add_directive(directive.parse().expect("static directive"));
    }
    filter
}

/// Files kept: the current one and the rotated ones.
pub const KEEP_FILES: usize = 5;
/// A file is rotated once it has grown past this.
pub const FILE_BYTES: usize = 2 << 20;

/// Open for appending (file-rotate also reads), created 0600 on Unix: a log says which
/// servers and accounts the user has.
fn private_append() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).create(true).append(true);
    crate::fs::owner_only(&mut o);
    o
}

/// The size-bounded log file in `dir`: rotated once past `file_bytes`, `KEEP_FILES` in all.
fn file_writer(
    dir: &Path,
    file_bytes: usize,
) -> file_rotate::FileRotate<file_rotate::suffix::AppendCount> {
    file_rotate::FileRotate::new(
        dir.join("mailpulse.log"),
        file_rotate::suffix::AppendCount::new(KEEP_FILES - 1),
        file_rotate::ContentLimit::BytesSurpassed(file_bytes),
        file_rotate::compression::Compression::None,
        Some(private_append()),
    )
}

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
    // on later without a restart; while its filter is "off" it writes nothing (the file is
    // created empty).
    let mut guard = None;
    let file = log_dir.and_then(|dir| {
        if let Err(e) = std::fs::create_dir_all(dir) {
            if logging.enabled {
                eprintln!("mailpulse: cannot write logs to {}: {e}", dir.display());
            }
            return None;
        }
        let appender = file_writer(dir, FILE_BYTES);
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
        .with(clamp())
        .with(stderr)
        .with(file)
        .try_init();
    install_panic_hook();
    LogGuard { _file: guard }
}

/// A panic anywhere (a folder's task, the GUI thread) goes to the log with where it happened
/// and its message, instead of only to a stderr nobody reads in a tray agent. No backtrace:
/// its frames could show data. The engine restarts a panicked folder task (`engine`).
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = crate::error::panic_message(info.payload());
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_else(|| "an unknown place".into());
            let thread = std::thread::current();
            tracing::error!(
                "panic in thread {:?} at {location}: {message}",
                thread.name().unwrap_or("unnamed")
            );
        }));
    });
}

/// Apply new logging settings to the running process.
pub fn apply(logging: &Logging) {
    if let Some(apply) = APPLY.get() {
        apply(logging);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// However verbose the user asks for, the protocol libraries' traces (raw commands, the
    /// password among them) are never enabled.
    #[test]
    fn protocol_traces_are_clamped_whatever_the_directives() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = seen.clone();
        let filter = quiet(EnvFilter::new(
            "trace,async_imap=trace,async_imap::imap_stream=trace,imap_proto=trace",
        ));
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || Capture(sink.clone()))
            .with_filter(filter);
        let subscriber = tracing_subscriber::registry().with(clamp()).with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "async_imap::imap_stream", "encode: LOGIN user s3cret");
            tracing::debug!(target: "async_imap", "debug s3cret");
            tracing::trace!(target: "imap_proto::parser", "s3cret");
            tracing::warn!(target: "async_imap", "a warning");
            tracing::trace!(target: "other_crate", "another crate");
            tracing::trace!(target: "mailpulse::engine", "ours");
        });
        let text = seen.lock().unwrap().concat();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("a warning"), "{text}");
        assert!(text.contains("another crate"), "{text}");
        assert!(text.contains("ours"), "{text}");
    }

    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(b).into_owned());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Run in a child process (the hook is global): a panic on some thread reaches the log
    /// file with its thread, place and message.
    #[test]
    fn panic_hook_child() {
        let Some(dir) = std::env::var_os("MAILPULSE_TEST_PANIC_LOG") else {
            return; // only as the child of `a_panic_is_logged_with_place_and_message`
        };
        let logging = crate::config::Logging {
            enabled: true,
            ..Default::default()
        };
        let guard = init(&logging, Some(std::path::Path::new(&dir)));
        let _ = std::thread::Builder::new()
            .name("folder-task".into())
            .spawn(|| panic!("the parser met {} bytes", 42))
            .unwrap()
            .join();
        drop(guard); // flushes the file
    }

    #[test]
    fn a_panic_is_logged_with_place_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "logging::tests::panic_hook_child",
                "--test-threads=1",
            ])
            .env("MAILPULSE_TEST_PANIC_LOG", dir.path())
            .env_remove("RUST_LOG")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = std::fs::read_to_string(dir.path().join("mailpulse.log")).unwrap();
        assert!(
            text.contains("panic in thread \"folder-task\" at src/logging.rs:")
                && text.contains("the parser met 42 bytes"),
            "{text}"
        );
        assert!(!text.contains("stack backtrace"), "{text}");
    }

    #[test]
    fn filters_parse() {
        let _ = super::quiet(tracing_subscriber::EnvFilter::new("trace"));
    }

    /// Ten times what the files may hold: the oldest lines go, the total stays bounded, the
    /// newest line is in `mailpulse.log`, and every file is the user's alone.
    #[test]
    fn the_log_is_bounded_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 1000;
        let mut w = file_writer(dir.path(), limit);
        let lines = 10 * KEEP_FILES * limit / 50;
        for n in 0..lines {
            writeln!(w, "{n:>48}").unwrap(); // 49 bytes + newline
        }
        w.flush().unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), KEEP_FILES, "{files:?}");
        let total: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(total <= (KEEP_FILES * (limit + 50)) as u64, "{total} bytes");
        let newest = std::fs::read_to_string(dir.path().join("mailpulse.log")).unwrap();
        assert!(
            newest.ends_with(&format!("{:>48}\n", lines - 1)),
            "{newest}"
        );
        #[cfg(unix)]
        for f in &files {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                f.metadata().unwrap().permissions().mode() & 0o777,
                0o600,
                "{f:?}"
            );
        }
    }
}
