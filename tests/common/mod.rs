//! Test harness for the real `udpd` binary: one process runner (bounded waits, kill on drop), the serve
//! daemon and its summary, loopback client sockets, feature probes with `skip_or_fail`, forged packets.
#![allow(dead_code, unused_imports)] // each test crate that includes this module uses only part of it

pub mod daemon;
pub mod features;
pub mod net;
pub mod process;
pub mod raw;
pub mod summary;

pub use daemon::{parse_listening, Daemon, START_TIMEOUT, STOP_TIMEOUT};
pub use features::{
    feature, features_required, is_root, kernel_has_gro, kernel_has_gso, skip_or_fail, tool_runs,
};
pub use net::{
    assert_silent, can_bind, client_for, client_on, loopback_of, receive_queue_bytes, recv_reply,
    round_trip, wait_receive_queue_empty, REPLY_TIMEOUT, SILENCE,
};
pub use process::{
    run_command_to_end, run_program_to_end, run_to_end, run_to_end_with_memory_cap, run_udpd,
    udpd_bin, Finished, Next, Running,
};
pub use summary::{parse_f64_terms, parse_u64_terms, Summary, ACCOUNTING_TERMS, COUNTER_KEYS};
