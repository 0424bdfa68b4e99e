//! udpd: a per-core, batched, offload-aware UDP server daemon (library half; `main.rs` is a thin CLI).
#![deny(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!("udpd is Linux-only: it relies on recvmmsg/sendmmsg, SO_REUSEPORT, UDP GSO and GRO");

pub mod batch;
pub mod cli;
pub mod cli_error;
pub mod error;
pub mod export;
pub mod metrics;
pub mod sys;

pub use error::{Error, Result};
pub mod chat;
pub mod client;
pub mod config;
pub mod config_file;
pub mod doctor;
pub mod handler;
pub mod load;
pub mod server;
pub mod socket;
pub mod stats;
pub mod worker;
