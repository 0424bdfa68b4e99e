//! `udpd client` (not written yet; see issue 4).

use clap::Args;

/// Flags of `udpd client`.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {}

pub fn run(_args: ClientArgs) -> crate::Result<()> {
    Err(crate::Error::runtime("udpd client is not implemented yet"))
}
