//! `udpd load`: the load generator (not written yet; see issue 3).

use clap::Args;

/// Flags of `udpd load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server to send to, HOST:PORT.
    pub target: String,
}

pub fn run(_args: LoadArgs) -> crate::Result<()> {
    Err(crate::Error::runtime("udpd load is not implemented yet"))
}
