//! The command line: one `clap` parser with a subcommand per tool; each subcommand's flags live beside its code.

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
    Client(crate::client::ClientArgs),
    /// Two-person (or more) chat over UDP, one port each.
    Chat(crate::chat::ChatArgs),
    /// Check this host for what limits a UDP server and say how to fix it.
    Doctor(crate::doctor::DoctorArgs),
}
