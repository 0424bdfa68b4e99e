//! Which flow sockets a load thread reads each turn: with a few flows every one of them, with many only
//! those the kernel said became readable.
//!
//! Reading an idle socket costs a `recvmmsg` that finds nothing (~0.3 us here). With 1,000 flows a turn
//! that tries every socket lasts ~1 ms, and each reply waited half of that on average before it was read
//! and timed: the measured latency was the load generator's own turn, not the server's. Above
//! [`SCAN_FLOWS_MAX`] flows one `epoll_wait` (timeout 0) per turn names the sockets with replies instead.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// Up to this many flows per thread, every flow is read every turn (no readiness syscall).
pub const SCAN_FLOWS_MAX: usize = 8;

/// Readiness events taken per `epoll_wait`; more stay queued in the kernel for the next turn.
const EVENTS_PER_TURN: usize = 256;

/// One thread's view of which flows may have replies waiting.
pub struct ReadyFlows {
    flows: usize,
    poll: Option<Polled>,
}

/// The readiness state kept when the flows are too many to scan.
struct Polled {
    poll: Poll,
    events: Events,
    /// Flows reported readable and not yet read down to "would block", in the order they became so.
    ready: Vec<usize>,
    /// Per flow: whether it is in `ready`.
    listed: Vec<bool>,
}

/// What reading one flow found: whether its socket may still hold replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// The kernel had nothing more (or the read failed): wait for the next readiness event.
    Yes,
    /// The read stopped at its per-turn limit: read this flow again next turn.
    No,
}

impl ReadyFlows {
    /// Watches `flows` (edge-triggered) when there are more than [`SCAN_FLOWS_MAX`]; a registration the
    /// kernel refuses is an error, since a flow never read would count every reply as lost.
    pub fn new(flows: &[UdpSocket]) -> io::Result<ReadyFlows> {
        if flows.len() <= SCAN_FLOWS_MAX {
            return Ok(ReadyFlows {
                flows: flows.len(),
                poll: None,
            });
        }
        let poll = Poll::new()?;
        for (index, socket) in flows.iter().enumerate() {
            let fd: RawFd = socket.as_raw_fd();
            poll.registry()
                .register(&mut SourceFd(&fd), Token(index), Interest::READABLE)?;
        }
        Ok(ReadyFlows {
            flows: flows.len(),
            poll: Some(Polled {
                poll,
                events: Events::with_capacity(EVENTS_PER_TURN),
                // Registration reports every socket that already holds data, so nothing starts listed.
                ready: Vec::with_capacity(flows.len()),
                listed: vec![false; flows.len()],
            }),
        })
    }

    /// Calls `read` for each flow that may hold replies this turn: every flow when scanning, else the
    /// flows the kernel reported readable since they were last drained.
    pub fn for_each(&mut self, mut read: impl FnMut(usize) -> Drained) {
        let Some(polled) = &mut self.poll else {
            for flow in 0..self.flows {
                read(flow);
            }
            return;
        };
        match polled.poll.poll(&mut polled.events, Some(Duration::ZERO)) {
            Ok(()) => {
                for event in polled.events.iter() {
                    list(&mut polled.listed, &mut polled.ready, event.token().0);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // Should never happen; reading every flow once loses nothing and keeps the run going.
            Err(_) => {
                (0..self.flows).for_each(|flow| list(&mut polled.listed, &mut polled.ready, flow))
            }
        }
        let listed = &mut polled.listed;
        polled.ready.retain(|&flow| {
            let keep = read(flow) == Drained::No;
            listed[flow] = keep;
            keep
        });
    }
}

/// Puts `flow` on the `ready` list, once (`listed` says who is on it).
fn list(listed: &mut [bool], ready: &mut Vec<usize>, flow: usize) {
    if !listed[flow] {
        listed[flow] = true;
        ready.push(flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows(count: usize) -> (Vec<UdpSocket>, UdpSocket) {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (flows, _) = super::super::flow::open(peer.local_addr().unwrap(), count, false, false)
            .expect("flow sockets");
        (flows, peer)
    }

    fn turn(ready: &mut ReadyFlows, drained: impl Fn(usize) -> Drained) -> Vec<usize> {
        let mut seen = Vec::new();
        ready.for_each(|flow| {
            seen.push(flow);
            drained(flow)
        });
        seen
    }

    fn readable_after_send(flows: &[UdpSocket], peer: &UdpSocket, which: &[usize]) {
        for &flow in which {
            peer.send_to(b"x", flows[flow].local_addr().unwrap())
                .unwrap();
        }
    }

    #[test]
    fn a_few_flows_are_all_read_every_turn() {
        let (flows, _peer) = flows(SCAN_FLOWS_MAX);
        let mut ready = ReadyFlows::new(&flows).unwrap();
        assert_eq!(
            turn(&mut ready, |_| Drained::Yes),
            (0..SCAN_FLOWS_MAX).collect::<Vec<_>>()
        );
        assert_eq!(turn(&mut ready, |_| Drained::Yes).len(), SCAN_FLOWS_MAX);
    }

    #[test]
    fn many_flows_are_read_only_when_readable_and_until_drained() {
        let (flows, peer) = flows(SCAN_FLOWS_MAX + 20);
        let mut ready = ReadyFlows::new(&flows).unwrap();
        assert!(
            turn(&mut ready, |_| Drained::Yes).is_empty(),
            "nothing was sent yet"
        );
        readable_after_send(&flows, &peer, &[3, 17]);
        // Loopback delivery is synchronous with the send, so the events are there now; poll until they
        // show (bounded) to stay independent of that.
        let mut seen = Vec::new();
        for _ in 0..1000 {
            seen.extend(turn(&mut ready, |flow| {
                if flow == 17 {
                    Drained::No
                } else {
                    Drained::Yes
                }
            }));
            if seen.contains(&3) && seen.contains(&17) {
                break;
            }
            std::thread::yield_now();
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![3, 17]);
        // Flow 17 said it was not drained: it is read again without a new event; flow 3 is not.
        assert_eq!(turn(&mut ready, |_| Drained::Yes), vec![17]);
        assert!(turn(&mut ready, |_| Drained::Yes).is_empty());
    }
}
