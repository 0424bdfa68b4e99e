//! `udpd serve`: the server that starts per-core workers, and everything on a worker's datapath.
//!
//! `server` starts and waits, `worker` is one event loop, `socket` opens and probes a worker's socket,
//! `queue` holds replies until the kernel takes them and groups them into GSO trains, `segments`
//! knows how datagrams sit in GRO buffers and GSO trains.

pub mod guard;
pub mod queue;
pub mod segments;
pub mod server;
pub mod socket;
pub mod worker;

pub use server::{run, run_from_args, Server, ShutdownHandle};
