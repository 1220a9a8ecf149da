//! The tray agent: tray icon, menu and toasts over the engine (see `mailpulse::desktop`).
//! Started by `mailpulse` without a subcommand, with the same arguments.

use std::process::ExitCode;

use clap::Parser;
use mailpulse::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.is_some() {
        eprintln!("mailpulse-tray: runs the tray only; use `mailpulse` for subcommands");
        return ExitCode::from(2);
    }
    match cli::config_path(&cli) {
        Some(path) => mailpulse::desktop::run(path),
        None => {
            eprintln!("mailpulse: cannot find the home directory; pass --config PATH");
            ExitCode::from(2)
        }
    }
}
