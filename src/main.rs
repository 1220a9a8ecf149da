use std::process::ExitCode;

use clap::Parser;
use mailpulse::cli::{self, Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = cli::config_path(&cli);
    // One thread is plenty for a handful of mostly idle connections, and keeps memory low.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
        Some(Cmd::Check { account, json }) => {
            runtime.block_on(cli::check(config_path.as_deref(), account.as_deref(), json))
        }
        Some(Cmd::Watch { json }) => runtime.block_on(cli::watch(config_path.as_deref(), json)),
        Some(Cmd::Signin {
            account,
            no_browser,
        }) => runtime.block_on(cli::signin(config_path.as_deref(), &account, no_browser)),
        Some(Cmd::Signout { account }) => cli::signout(config_path.as_deref(), &account),
        Some(Cmd::Probe { account, max }) => {
            runtime.block_on(cli::probe(config_path.as_deref(), &account, max))
        }
        Some(Cmd::Password { action }) => cli::password(config_path.as_deref(), &action),
        Some(Cmd::Discover {
            email,
            username,
            server,
            ca_file,
        }) => runtime.block_on(cli::discover(
            &email,
            username.as_deref(),
            server.as_deref(),
            ca_file.as_deref(),
        )),
        // The GUI lives in companion programs, so that this one (and `watch`, which runs all
        // day) maps no GTK or WebKit library: see `mailpulse::companion`.
        #[cfg(feature = "desktop")]
        Some(Cmd::Settings { .. }) => {
            drop(runtime);
            run_companion("mailpulse-settings")
        }
        #[cfg(feature = "desktop")]
        None => {
            drop(runtime);
            run_companion("mailpulse-tray")
        }
        #[cfg(not(feature = "desktop"))]
        None => {
            eprintln!(
                "mailpulse: the tray agent is not part of this version yet.\n\
                 Run `mailpulse watch` to keep your accounts alive headless and print new mail,\n\
                 or `mailpulse check` to test your accounts. See `mailpulse --help`."
            );
            ExitCode::from(1)
        }
    }
}

/// Replace this process with a companion program, same arguments (same PID on Unix, so
/// whoever started `mailpulse` keeps a handle on the tray).
#[cfg(feature = "desktop")]
fn run_companion(name: &str) -> ExitCode {
    let exe = match mailpulse::companion(name) {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("mailpulse: cannot find where mailpulse is installed: {e}");
            return ExitCode::from(1);
        }
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    let error = {
        use std::os::unix::process::CommandExt;
        cmd.exec()
    };
    #[cfg(not(unix))]
    let error = match cmd.status() {
        Ok(status) => return ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => e,
    };
    eprintln!(
        "mailpulse: cannot start {}: {error}. It is installed beside mailpulse; reinstall \
         mailpulse, or run `mailpulse watch` for the agent without the tray.",
        exe.display()
    );
    ExitCode::from(1)
}
