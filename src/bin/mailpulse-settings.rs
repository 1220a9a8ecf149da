//! The settings window (WebKit), a short-lived companion of the tray: `mailpulse-settings
//! --config PATH settings [--page NAME]`, as the tray or `mailpulse settings` start it.

use std::process::ExitCode;

use clap::Parser;
use mailpulse::cli::{self, Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = cli::config_path(&cli);
    match (cli.command, config_path) {
        (Some(Cmd::Settings { page }), Some(path)) => mailpulse::desktop::settings::run(path, page),
        (Some(Cmd::Settings { .. }), None) => {
            eprintln!("mailpulse: cannot find the home directory; pass --config PATH");
            ExitCode::from(2)
        }
        _ => {
            eprintln!(
                "mailpulse-settings: opens the settings window only (`settings [--page NAME]`)"
            );
            ExitCode::from(2)
        }
    }
}
