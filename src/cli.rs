//! The command line: one `clap` parser with a subcommand per tool (each subcommand's flags live beside
//! its code), and the turning of clap's multi-line parse errors into the one line a person needs.

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// udpd: a high-throughput UDP server daemon, its load generator and a few tools to poke at UDP by hand.
#[derive(Debug, Parser)]
#[command(name = "udpd", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the UDP server daemon (per-core workers, batched I/O, latency reports on stdout).
    Serve(crate::config::ServeArgs),
    /// Generate UDP load against any server and report throughput, loss and latency.
    Load(crate::load::LoadArgs),
    /// Send lines typed on stdin as datagrams and print the replies (like `nc -u`).
    Client(crate::tools::client::ClientArgs),
    /// Two-person (or more) chat over UDP, one port each.
    Chat(crate::tools::chat::ChatArgs),
    /// Check this host for what limits a UDP server and say how to fix it.
    Doctor(crate::tools::doctor::DoctorArgs),
}

/// Prints a clap error the udpd way and returns the exit code: help and version go to stdout with 0,
/// anything else becomes a single line on stderr (what is wrong, and where to look) with 2.
pub fn report(error: clap::Error) -> u8 {
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                2
            } else {
                0
            }
        }
        _ => {
            eprintln!("udpd: error: {}", one_line(&error.to_string()));
            2
        }
    }
}

/// The first meaningful line of clap's rendering, without its `error: ` prefix, plus a pointer to --help.
pub fn one_line(rendered: &str) -> String {
    let first = rendered
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{first} (see `udpd --help` or `udpd <command> --help`)")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn keeps_only_the_first_line_without_prefix() {
        let rendered = "error: invalid value 'x' for '--workers <N>'\n\nUsage: udpd serve\n";
        let line = one_line(rendered);
        assert!(line.starts_with("invalid value 'x' for '--workers <N>'"));
        assert!(!line.contains('\n'));
    }
}
