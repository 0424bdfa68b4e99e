//! Starts the workers and the reporter, wires up signals, and waits for the end.

use crate::config::ServeArgs;

pub fn run_from_args(args: ServeArgs) -> crate::Result<()> {
    let _config = args.resolve()?;
    Err(crate::Error::runtime("serve: work in progress"))
}
