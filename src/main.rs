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
        Some(Cmd::Probe { account, max }) => {
            runtime.block_on(cli::probe(config_path.as_deref(), &account, max))
        }
        Some(Cmd::Password { action }) => cli::password(config_path.as_deref(), &action),
        #[cfg(feature = "desktop")]
        Some(Cmd::Settings { page }) => match config_path {
            Some(path) => mailpulse::desktop::settings::run(path, page),
            None => {
                eprintln!("mailpulse: cannot find the home directory; pass --config PATH");
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "desktop")]
        None => match config_path {
            Some(path) => {
                drop(runtime);
                mailpulse::desktop::run(path)
            }
            None => {
                eprintln!("mailpulse: cannot find the home directory; pass --config PATH");
                ExitCode::from(2)
            }
        },
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
