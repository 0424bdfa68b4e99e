//! `udpd chat` (not written yet; see issue 4).

use clap::Args;

/// Flags of `udpd chat`.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {}

pub fn run(_args: ChatArgs) -> crate::Result<()> {
    Err(crate::Error::runtime("udpd chat is not implemented yet"))
}
