//! Addresses as people type them: a listen address (`IP:PORT` or a bare port) and a target to send to
//! (`IP:PORT` or `HOST:PORT`, resolved once). The one parser every subcommand uses.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::{Error, Result};

/// Parses `HOST:PORT`, `[V6]:PORT` or a bare port (meaning `0.0.0.0:PORT`).
pub fn parse_listen(text: &str) -> Result<SocketAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        Error::usage(format!(
            "--listen {text:?} is not an address: use IP:PORT such as 0.0.0.0:9999 or [::1]:9999"
        ))
    })
}

/// Resolves a target typed as `IP:PORT` or `HOST:PORT` to its first address; `what` names it in the
/// one-line error (e.g. `"target"`, `"peer alice"`).
pub fn resolve_target(text: &str, what: &str) -> Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: &str| {
        Error::usage(format!(
            "{what} {text:?} is not an address{why}: use IP:PORT or HOST:PORT such as 127.0.0.1:9999"
        ))
    };
    if !text.contains(':') {
        return Err(bad(""));
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| bad(" (the name has no address)")),
        Err(error) => Err(bad(&format!(" ({error})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_or_explain() {
        assert_eq!(
            resolve_target("127.0.0.1:9", "target").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(resolve_target("localhost:9", "target").unwrap().port(), 9);
        for bad in ["nowhere", "127.0.0.1", ""] {
            let error = resolve_target(bad, "target").unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(error.to_string().starts_with("target "), "{error}");
        }
    }
}
