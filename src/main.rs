//! The `udpd` binary: parse flags, run the chosen subcommand, map its result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use udpd::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return ExitCode::from(udpd::cli::report(error)),
    };
    let result = match cli.command {
        Command::Serve(args) if args.print_config => udpd::config::file::print_config(&args),
        Command::Serve(args) => udpd::serve::run_from_args(args),
        Command::Load(args) => udpd::load::run(args),
        Command::Client(args) => udpd::tools::client::run(args),
        Command::Chat(args) => udpd::tools::chat::run(args),
        Command::Doctor(args) => udpd::tools::doctor::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("udpd: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
