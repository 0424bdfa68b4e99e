//! The send side's outbox: one burst of requests built into an arena and handed to `sendmmsg` one run of
//! same-flow messages at a time, keeping what the kernel did not take yet for the next turn.

use std::io;
use std::os::fd::AsFd;

use super::engine::{Tally, Warned};
use super::flow::Flow;
use crate::serve::segments::split_into_datagrams;
use crate::sys::{
    is_gso_refusal, send_batch, IoRange, OutMessage, PeerAddr, SendControl, SendScratch,
};

/// The messages of one burst, built into `arena`; what the kernel did not take yet stays here (from `pos`).
pub struct Outbox {
    arena: Vec<u8>,
    ranges: Vec<IoRange>,
    messages: Vec<OutMessage>,
    /// Per message: its flow and the sequence number of its first datagram.
    flow_of: Vec<usize>,
    seq_of: Vec<u64>,
    pos: usize,
    scratch: SendScratch,
    /// Segments per GSO train; 1 when GSO is off (or was switched off after the kernel refused it).
    segments: usize,
    /// Where every message goes when the flow sockets are not connected (`--check-source`); empty otherwise.
    destination: PeerAddr,
}

impl Outbox {
    /// An outbox for bursts of up to `batch` datagrams of `payload` bytes, `segments` per GSO train.
    pub fn new(batch: usize, payload: usize, segments: usize) -> Outbox {
        Outbox {
            arena: vec![0; batch * payload],
            ranges: vec![IoRange::default(); batch],
            messages: Vec::with_capacity(batch),
            flow_of: Vec::with_capacity(batch),
            seq_of: Vec::with_capacity(batch),
            pos: 0,
            scratch: SendScratch::new(batch, batch),
            segments,
            destination: PeerAddr::default(),
        }
    }

    /// With a `target`, names it on every message, for flow sockets that are not connected.
    pub fn send_to(mut self, target: Option<std::net::SocketAddr>) -> Outbox {
        self.destination = target.map_or_else(PeerAddr::default, PeerAddr::from_socket_addr);
        self
    }

    /// True when every message built was handed to the kernel (or given up on).
    pub fn is_empty(&self) -> bool {
        self.pos >= self.messages.len()
    }

    /// Forgets the last burst, to build the next one.
    pub fn clear(&mut self) {
        self.messages.clear();
        self.flow_of.clear();
        self.seq_of.clear();
        self.pos = 0;
    }

    /// Datagrams per GSO train (1 without GSO).
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// The arena bytes of datagram `index` of the burst, `len` bytes, recorded as that datagram's iovec.
    #[inline]
    pub fn slot(&mut self, index: usize, len: usize) -> &mut [u8] {
        let offset = index * len;
        self.ranges[index] = IoRange {
            buffer: 0,
            offset: offset as u32,
            len: len as u32,
        };
        &mut self.arena[offset..offset + len]
    }

    /// Adds one message: datagrams `iov_start..iov_start + iov_count` of the burst, for `flow`, the first
    /// with sequence number `seq`; more than one datagram makes a GSO train of `payload`-byte segments.
    #[inline]
    pub fn push(
        &mut self,
        flow: usize,
        seq: u64,
        iov_start: usize,
        iov_count: usize,
        payload: usize,
    ) {
        let segment_size = if iov_count > 1 { payload as u16 } else { 0 };
        self.messages.push(OutMessage {
            peer: self.destination,
            control: SendControl {
                segment_size,
                ..SendControl::default()
            },
            iov_start: iov_start as u32,
            iov_count: iov_count as u32,
        });
        self.flow_of.push(flow);
        self.seq_of.push(seq);
    }

    /// Turns every GSO train not sent yet into single datagrams (the kernel refused `UDP_SEGMENT`), cut as
    /// the server's queue cuts them. Runs at most once per thread, so moving the pending messages aside
    /// may allocate.
    fn split_trains(&mut self) {
        let pending: Vec<(OutMessage, usize, u64)> = (self.pos..self.messages.len())
            .map(|m| (self.messages[m], self.flow_of[m], self.seq_of[m]))
            .collect();
        self.messages.truncate(self.pos);
        self.flow_of.truncate(self.pos);
        self.seq_of.truncate(self.pos);
        for (message, flow, first_seq) in pending {
            let mut seq = first_seq;
            // Each iovec holds exactly one datagram, so every piece is one whole iovec.
            split_into_datagrams(&message, &self.ranges, |single, range, iov| {
                debug_assert_eq!(range, self.ranges[iov]);
                self.messages.push(OutMessage {
                    iov_start: iov as u32,
                    ..single
                });
                self.flow_of.push(flow);
                self.seq_of.push(seq);
                seq += 1;
            });
        }
        self.segments = 1;
    }

    /// Hands the outbox to the kernel, one `sendmmsg` per run of same-flow messages, until it is empty or
    /// a socket is full; returns whether anything was sent.
    pub fn flush(&mut self, flows: &mut [Flow], tally: &mut Tally, warned: &mut Warned) -> bool {
        let mut progressed = false;
        while self.pos < self.messages.len() {
            let flow = self.flow_of[self.pos];
            let mut end = self.pos + 1;
            while end < self.messages.len() && self.flow_of[end] == flow {
                end += 1;
            }
            let result = send_batch(
                flows[flow].socket.as_fd(),
                &mut self.scratch,
                &[&self.arena],
                &self.ranges,
                &self.messages[self.pos..end],
            );
            match result {
                Ok(taken) => {
                    let book = &flows[flow].book;
                    for m in self.pos..self.pos + taken {
                        tally.sent += measured(
                            book.measure_from,
                            self.seq_of[m],
                            self.messages[m].iov_count,
                        );
                    }
                    self.pos += taken;
                    if taken == 0 {
                        return progressed;
                    }
                    progressed = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return progressed,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // A pending ICMP error from an earlier datagram, reported now; this one was not sent: retry.
                Err(error) if error.raw_os_error() == Some(libc::ECONNREFUSED) => {}
                Err(error)
                    if self.segments > 1
                        && self.messages[self.pos].iov_count > 1
                        && is_gso_refusal(&error) =>
                {
                    eprintln!(
                        "udpd: warning: the kernel refused UDP GSO ({error}); sending plain datagrams"
                    );
                    self.split_trains();
                }
                Err(error) => {
                    let count = self.messages[self.pos].iov_count;
                    let book = &mut flows[flow].book;
                    tally.send_errors += measured(book.measure_from, self.seq_of[self.pos], count);
                    book.on_send_failed(self.seq_of[self.pos], u64::from(count));
                    if !warned.send {
                        eprintln!(
                            "udpd: warning: send failed: {error} (counted under send errors)"
                        );
                        warned.send = true;
                    }
                    self.pos += 1;
                }
            }
        }
        progressed
    }
}

/// How many of the `count` datagrams from `first_seq` on are measured (not warmup).
#[inline]
fn measured(measure_from: u64, first_seq: u64, count: u32) -> u64 {
    let end = first_seq + u64::from(count);
    end.saturating_sub(first_seq.max(measure_from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_trains_become_single_datagrams_in_order() {
        let mut out = Outbox::new(8, 10, 4);
        for index in 0..7 {
            out.slot(index, 10)[0] = index as u8;
        }
        out.push(0, 100, 0, 4, 10);
        out.push(1, 200, 4, 1, 10);
        out.push(0, 104, 5, 2, 10);
        out.pos = 1; // the first train was sent already
        out.split_trains();
        assert_eq!(out.segments(), 1);
        let singles: Vec<(u32, u32, u16, usize, u64)> = (out.pos..out.messages.len())
            .map(|m| {
                let message = out.messages[m];
                (
                    message.iov_start,
                    message.iov_count,
                    message.control.segment_size,
                    out.flow_of[m],
                    out.seq_of[m],
                )
            })
            .collect();
        assert_eq!(
            singles,
            vec![(4, 1, 0, 1, 200), (5, 1, 0, 0, 104), (6, 1, 0, 0, 105)]
        );
        assert_eq!(
            out.messages[0].iov_count, 4,
            "sent messages stay as they were"
        );
        assert_eq!(out.ranges[6].offset, 60);
    }

    #[test]
    fn only_measured_datagrams_count() {
        assert_eq!(measured(0, 5, 3), 3);
        assert_eq!(measured(u64::MAX, 5, 3), 0);
        assert_eq!(measured(6, 5, 3), 2);
    }
}
