//! Flow sockets: one connected, non-blocking UDP socket per flow, each with its own source port.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use crate::sys::set_int_option;

/// Socket buffer size asked for on every flow socket: what `udpd doctor` recommends (the kernel caps it at
/// `rmem_max`/`wmem_max`).
const SOCKET_BUFFER: i32 = crate::tools::doctor::RECOMMENDED_BUFFER as i32;

/// Opens `count` sockets bound to an ephemeral port of the target's family and, with `connect`, connected
/// to `target` (without, they take replies from any address and every send names `target`).
///
/// With `gro`, asks for `UDP_GRO` on each; returns whether every socket got it (a kernel without it gets a
/// one-line warning and plain receives).
pub fn open(
    target: SocketAddr,
    count: usize,
    gro: bool,
    connect: bool,
) -> crate::Result<(Vec<UdpSocket>, bool)> {
    let local: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let mut gro_on = gro;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = UdpSocket::bind(local).map_err(|error| {
            crate::Error::runtime(format!(
                "cannot open a flow socket on {local}: {error} (too many flows for the open-file limit? see `ulimit -n`)"
            ))
        })?;
        if connect {
            socket.connect(target).map_err(|error| {
                crate::Error::runtime(format!(
                    "cannot connect a flow socket to {target}: {error} (is there a route to it?)"
                ))
            })?;
        }
        socket.set_nonblocking(true).map_err(|error| {
            crate::Error::runtime(format!("cannot make a flow socket non-blocking: {error}"))
        })?;
        // Best effort: a smaller buffer only means earlier drops, which the report counts.
        let _ = set_int_option(
            socket.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            SOCKET_BUFFER,
        );
        let _ = set_int_option(
            socket.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            SOCKET_BUFFER,
        );
        if gro_on {
            if let Err(error) = set_int_option(socket.as_fd(), libc::SOL_UDP, libc::UDP_GRO, 1) {
                eprintln!(
                    "udpd: warning: UDP_GRO refused ({error}); receiving datagrams one by one"
                );
                gro_on = false;
            }
        }
        sockets.push(socket);
    }
    if gro && !gro_on {
        for socket in &sockets {
            let _ = set_int_option(socket.as_fd(), libc::SOL_UDP, libc::UDP_GRO, 0);
        }
    }
    Ok((sockets, gro_on))
}

/// One flow of a load thread: its socket, the book of its sequence numbers and (`--check-source`) the
/// addresses its replies came from.
pub struct Flow {
    pub socket: UdpSocket,
    pub book: super::book::SeqBook,
    pub sources: super::sources::FlowSources,
}
