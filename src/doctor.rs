//! `udpd doctor` (not written yet; see issue 4).

use clap::Args;

/// Flags of `udpd doctor`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {}

pub fn run(_args: DoctorArgs) -> crate::Result<()> {
    Err(crate::Error::runtime("udpd doctor is not implemented yet"))
}
