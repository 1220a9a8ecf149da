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
        Some(Cmd::Autostart { action }) => cli::autostart(config_path.as_deref(), action),
        Some(Cmd::Discover {
            email,
            username,
            server,
            ca_file,
            basic,
        }) => runtime.block_on(cli::discover(
            config_path.as_deref(),
            &email,
            username.as_deref(),
            server.as_deref(),
            ca_file.as_deref(),
            basic,
        )),
        // The GUI lives in companion programs, so that this one (and `watch`, which runs all
        // day) maps no GTK or WebKit library: see `mailpulse::companion`.
        #[cfg(feature = "desktop")]
        Some(Cmd::Settings { .. }) => {
            drop(runtime);
            mailpulse::run_companion("mailpulse-settings")
        }
        #[cfg(feature = "desktop")]
        None => {
            drop(runtime);
            mailpulse::run_companion("mailpulse-tray")
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
