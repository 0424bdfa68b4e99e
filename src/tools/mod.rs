//! The tools a person uses by hand next to the daemon: a `nc -u`-like client, a chat, and a host doctor.

pub mod chat;
pub mod client;
pub mod doctor;
mod procfs;
mod show;
mod zone;
