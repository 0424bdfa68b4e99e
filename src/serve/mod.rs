//! `udpd serve`: the server that starts per-core workers, and everything on a worker's datapath.
//!
//! - `daemon` is `udpd serve` (reports, signals, reload); `handover` passes the sockets to a successor
//!   process on reload; `server` starts the workers and waits; `addresses` decides which addresses get
//!   socket groups; `socket` opens and probes a worker's socket;
//!   `privilege` drops root after binding; `proc_net` reads the kernel's UDP socket tables.
//! - `worker` is one event loop; `watch` keeps its socket in the poll set only while it sleeps; `receive`
//!   is its receive buffer, `respond` turns a received batch into replies after the `guard` stage,
//!   `transmit` hands them to the kernel.
//! - `segments` knows how datagrams sit in GRO buffers and GSO trains, `train` groups replies into GSO
//!   trains (pure code), `queue` holds them until the kernel takes them.

pub mod addresses;
pub mod daemon;
pub mod guard;
pub mod handover;
pub mod privilege;
pub mod proc_net;
pub mod queue;
pub mod receive;
pub mod respond;
pub mod segments;
pub mod server;
pub mod socket;
pub mod stamps;
pub mod train;
pub mod transmit;
pub mod watch;
pub mod worker;

pub use daemon::{run, run_from_args};
pub use server::{Server, ShutdownHandle};
