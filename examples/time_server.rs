//! A custom protocol on the udpd library: an RFC 868 time server (any datagram in, the current time out
//! as 32-bit big-endian seconds since 1900), started through `udpd::Server` with default settings.
//!
//! ```sh
//! cargo run --release --example time_server -- 127.0.0.1:3737
//! udpd client 127.0.0.1:3737   # type a line; the reply is four bytes of time
//! ```

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use udpd::{Handler, ServeConfig, Server};

/// Seconds from 1900-01-01 to 1970-01-01, the offset between RFC 868 time and Unix time.
const SECONDS_1900_TO_1970: u64 = 2_208_988_800;

/// Answers every request with the time, whatever it holds (RFC 868 over UDP).
struct TimeProtocol;

impl Handler for TimeProtocol {
    fn handle(&mut self, _request: &[u8], _peer: SocketAddr, reply: &mut [u8]) -> Option<usize> {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        // The protocol's 32-bit field wraps in 2036, as RFC 868 says it does.
        let rfc868 = (unix + SECONDS_1900_TO_1970) as u32;
        reply.get_mut(..4)?.copy_from_slice(&rfc868.to_be_bytes());
        Some(4)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3737".into());
    let config = ServeConfig {
        listen: udpd::config::parse_listen(&listen)?,
        workers: 1,
        cpus: None,
        ..ServeConfig::default()
    };
    let server = Server::start(&config, || Box::new(TimeProtocol))?;
    println!("time server on {} (Ctrl-C to stop)", server.local_addr());
    let shutdown = server.shutdown_handle();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            shutdown.shutdown();
        }
    });
    let summary = server.wait(|_| {});
    println!("answered {} requests", summary.total.counters.tx);
    Ok(())
}
