//! udpd: a per-core, batched, offload-aware UDP server daemon (library half; `main.rs` is a thin CLI).
//!
//! The folders are the architecture (see `docs/ARCHITECTURE.md`): `sys` is the one room with `unsafe`,
//! `serve` the server and its datapath, `stats` counting and reporting, `config` flags and files,
//! `load` the load generator, `tools` the client, chat and doctor. A library user needs only the
//! re-exports below: a [`Handler`], a [`ServeConfig`] and a [`Server`] (see `examples/time_server.rs`).
#![deny(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!("udpd is Linux-only: it relies on recvmmsg/sendmmsg, SO_REUSEPORT, UDP GSO and GRO");

pub mod config;
pub mod error;
pub mod handler;

// The rooms below are public only for the `udpd` binary, the benches and the property tests, which
// exercise the datapath's pure parts directly; they are not a stable library API.
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod load;
#[doc(hidden)]
pub mod serve;
#[doc(hidden)]
pub mod stats;
#[doc(hidden)]
pub mod sys;
#[doc(hidden)]
pub mod tools;

pub use config::ServeConfig;
pub use error::{Error, ErrorKind, Result};
pub use handler::{Handler, HandlerSpec};
pub use serve::{Server, ShutdownHandle};
pub use stats::{Counters, Summary};
