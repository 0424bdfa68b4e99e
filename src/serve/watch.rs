//! Whether a worker's socket is in its `mio` poll set: only while the worker sleeps with replies waiting
//! for write space or a retry timer (otherwise it sleeps in a blocking receive).
//!
//! A socket in an epoll set carries a wait-queue entry, and the kernel takes that queue's lock for every
//! send buffer it frees (`sock_wfree` → write-space wake-up), whether or not write readiness was asked
//! for: one lock per reply sent, about 2% of the CPU a reply costs with many clients. So a busy worker
//! takes its socket out of the set and receives until the socket is empty; only before it sleeps with
//! replies waiting does it put the socket back, with the interest it then needs. Adding a socket to an
//! epoll set reports the readiness it already has, so nothing that arrived in between is missed.

use std::io;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

/// The socket's place in the poll set: out, or in with one interest.
pub struct SocketWatch {
    token: Token,
    watched: Option<Interest>,
}

impl SocketWatch {
    /// A socket that is not in the poll set yet.
    pub fn new(token: Token) -> SocketWatch {
        SocketWatch {
            token,
            watched: None,
        }
    }

    /// Whether the socket is in the poll set now.
    pub fn is_watched(&self) -> bool {
        self.watched.is_some()
    }

    /// Puts the socket in the poll set with `interest` (or changes its interest); nothing when it is
    /// there with that interest already.
    pub fn watch(
        &mut self,
        registry: &Registry,
        socket: &mut UdpSocket,
        interest: Interest,
    ) -> io::Result<()> {
        match self.watched {
            Some(current) if current == interest => return Ok(()),
            Some(_) => registry.reregister(socket, self.token, interest)?,
            None => registry.register(socket, self.token, interest)?,
        }
        self.watched = Some(interest);
        Ok(())
    }

    /// Takes the socket out of the poll set (nothing when it is out). On failure it stays in: the
    /// worker is then only woken more often than it needs.
    pub fn unwatch(&mut self, registry: &Registry, socket: &mut UdpSocket) -> io::Result<()> {
        if self.watched.is_some() {
            registry.deregister(socket)?;
            self.watched = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mio::net::UdpSocket;
    use mio::{Events, Interest, Poll, Token};

    use super::SocketWatch;

    const SOCKET: Token = Token(7);

    fn readable_events(poll: &mut Poll, events: &mut Events) -> usize {
        poll.poll(events, Some(Duration::from_secs(5))).unwrap();
        events
            .iter()
            .filter(|event| event.token() == SOCKET && event.is_readable())
            .count()
    }

    /// The invariant the worker's busy mode rests on: a datagram that arrived while the socket was out of
    /// the poll set is reported as soon as the socket is put back (edge-triggered or not).
    #[test]
    fn a_datagram_queued_while_unwatched_is_reported_on_watch() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(4);
        let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut watch = SocketWatch::new(SOCKET);
        assert!(!watch.is_watched());

        watch
            .watch(poll.registry(), &mut socket, Interest::READABLE)
            .unwrap();
        assert!(watch.is_watched());
        watch.unwatch(poll.registry(), &mut socket).unwrap();
        assert!(!watch.is_watched());
        sender
            .send_to(b"queued", socket.local_addr().unwrap())
            .unwrap();

        watch
            .watch(poll.registry(), &mut socket, Interest::READABLE)
            .unwrap();
        assert_eq!(readable_events(&mut poll, &mut events), 1);
        // Changing the interest while watched re-arms the socket too (an epoll MOD).
        watch
            .watch(
                poll.registry(),
                &mut socket,
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap();
        assert_eq!(readable_events(&mut poll, &mut events), 1);
        let mut buf = [0u8; 16];
        assert_eq!(socket.recv_from(&mut buf).unwrap().0, 6);
    }

    #[test]
    fn unwatch_and_watch_again_are_idempotent() {
        let poll = Poll::new().unwrap();
        let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut watch = SocketWatch::new(SOCKET);
        watch.unwatch(poll.registry(), &mut socket).unwrap();
        for _ in 0..2 {
            watch
                .watch(poll.registry(), &mut socket, Interest::READABLE)
                .unwrap();
        }
        watch.unwatch(poll.registry(), &mut socket).unwrap();
        watch.unwatch(poll.registry(), &mut socket).unwrap();
        assert!(!watch.is_watched());
        // Out of the poll set for real: registering again succeeds (a second ADD would fail with EEXIST).
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)
            .unwrap();
    }
}
