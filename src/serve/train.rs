//! GSO train grouping as pure code: replies staged as runs, then grouped into trains (one `sendmmsg`
//! message each, carrying `UDP_SEGMENT`) so that consecutive replies to one destination with one size
//! leave as one unit. No syscalls, no allocation after construction.

use std::net::IpAddr;

use crate::sys::limits::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use crate::sys::{OutMessage, PeerAddr, SendControl};

/// How many of the most recent trains are searched for one to extend, bounding the work per reply.
const TRAIN_LOOKBACK: usize = 8;

/// Where a reply goes and where it leaves from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Destination {
    pub peer: PeerAddr,
    /// Source address for the reply (the address the request was sent to), when the socket is bound to a
    /// wildcard address; `None` otherwise.
    pub source: Option<IpAddr>,
    /// Interface the request arrived on (used for IPv6 packet info).
    pub ifindex: u32,
}

/// What every reply to one received buffer shares: where it goes, which received buffer it answers (the
/// worker numbers them: replies of one `group` share destination and receive time), and when that
/// buffer arrived and what its latency weighs ([`Stamp`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyTo {
    pub destination: Destination,
    pub group: u64,
    pub stamp: Stamp,
}

/// A reply's place in the latency histogram: when its request arrived, and how many replies its
/// latency stands for. Weight 0 ([`Stamp::NONE`]): the request's batch was not sampled, nothing is
/// recorded. Weight N > 1: the request arrived in a sampling window covering one N-th of the time
/// (`serve::stamps`), so its latency is counted N times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    pub rx_time_ns: u64,
    pub weight: u32,
}

impl Stamp {
    /// Not sampled: no latency is recorded for this reply.
    pub const NONE: Stamp = Stamp {
        rx_time_ns: 0,
        weight: 0,
    };

    /// Received at `rx_time_ns` (wall-clock nanoseconds), standing for `weight` replies.
    pub const fn measured(rx_time_ns: u64, weight: u32) -> Stamp {
        Stamp { rx_time_ns, weight }
    }

    pub const fn is_sampled(self) -> bool {
        self.weight > 0
    }
}

/// Which buffer a reply's bytes lie in: the queue's own arena, or the receive buffer (a borrowed echo).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bytes {
    #[default]
    Arena,
    Received,
}

impl Bytes {
    /// The index of this buffer in the list handed to `sys::send_batch` (see `ReplyQueue::send_view`).
    pub const fn index(self) -> u32 {
        match self {
            Bytes::Arena => 0,
            Bytes::Received => 1,
        }
    }

    pub const fn from_index(index: u32) -> Bytes {
        if index == 1 {
            Bytes::Received
        } else {
            Bytes::Arena
        }
    }
}

/// Replies staged since the last seal that came from one received buffer (one `group`: same destination,
/// same receive time), adjacent in their buffer, all `segment` bytes but the last, which may be shorter:
/// a GSO train in miniature, grown reply by reply without any search.
#[derive(Clone, Copy, Debug, Default)]
pub struct StagedRun {
    pub bytes_in: Bytes,
    pub offset: u32,
    pub bytes: u32,
    pub segment: u32,
    pub count: u32,
    /// Nothing may follow in the same train (the last reply was shorter, empty, or GSO is off).
    pub closed: bool,
    pub group: u64,
    pub destination: Destination,
    pub stamp: Stamp,
}

impl StagedRun {
    /// A run of `count` replies of `segment` bytes (the last possibly shorter), `bytes` in all, at
    /// `offset` of the buffer `bytes_in`.
    pub fn new(
        bytes_in: Bytes,
        offset: usize,
        bytes: usize,
        (segment, count): (usize, usize),
        gso: bool,
        to: &ReplyTo,
    ) -> StagedRun {
        let (bytes, segment, count) = (bytes as u32, segment as u32, count as u32);
        StagedRun {
            bytes_in,
            offset: offset as u32,
            bytes,
            segment,
            count,
            // Empty replies cannot be GSO segments, and without GSO every run holds one datagram.
            closed: !gso || bytes == 0 || bytes < count * segment,
            group: to.group,
            destination: to.destination,
            stamp: to.stamp,
        }
    }

    /// Appends one more arena reply of `len` bytes at `offset` if it continues this run (same received
    /// buffer, adjacent, not longer than the segment, within the GSO limits); returns whether it did.
    #[inline]
    pub fn try_extend(&mut self, len: u32, offset: u32, group: u64) -> bool {
        let extends = self.group == group
            && self.bytes_in == Bytes::Arena
            && !self.closed
            && len > 0
            && len <= self.segment
            && (self.count as usize) < GSO_MAX_SEGMENTS
            && (self.bytes + len) as usize <= GSO_MAX_BYTES
            && self.offset + self.bytes == offset;
        if extends {
            self.count += 1;
            self.bytes += len;
            self.closed = len < self.segment;
        }
        extends
    }
}

/// One message being formed while sealing: a destination, its segment size and the runs it holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Train {
    pub destination: Destination,
    /// `destination.peer`'s fingerprint: most destinations are told apart by it alone.
    peer_key: u64,
    pub segment: u32,
    /// Datagrams (segments) in the train.
    pub count: u32,
    pub bytes: u32,
    closed: bool,
    /// Iovecs the train needs: one per staged run.
    pub ranges: u32,
    /// The group of the train's last run: a run of the same group has the same destination.
    last_group: u64,
    /// Where the train's iovecs start in the queue's iovec list, once laid out.
    pub iov_start: u32,
    /// Iovecs placed so far while laying the train out.
    cursor: u32,
}

impl Train {
    /// The `sendmmsg` message this train becomes (a segment size only when it holds several datagrams).
    pub fn message(&self) -> OutMessage {
        OutMessage {
            peer: self.destination.peer,
            control: SendControl {
                source_ip: self.destination.source,
                ifindex: self.destination.ifindex,
                segment_size: if self.count > 1 {
                    self.segment as u16
                } else {
                    0
                },
            },
            iov_start: self.iov_start,
            iov_count: self.ranges,
        }
    }
}

/// The grouping of one seal: which train each staged run joins. Reused from seal to seal.
#[derive(Default)]
pub struct Grouping {
    pub trains: Vec<Train>,
    /// Per staged run, in order: the index of its train.
    assignment: Vec<u32>,
}

impl Grouping {
    pub fn with_capacity(runs: usize) -> Grouping {
        Grouping {
            trains: Vec::with_capacity(runs),
            assignment: Vec::with_capacity(runs),
        }
    }

    /// Groups `staged` into trains (`gso` off: one train per run) and lays their iovecs out contiguously
    /// from `first_iov`, trains in order of their first run; returns the iovec count after the last.
    pub fn group(&mut self, staged: &[StagedRun], gso: bool, first_iov: u32) -> u32 {
        self.trains.clear();
        self.assignment.clear();
        for run in staged {
            let index = place(&mut self.trains, run, gso);
            self.assignment.push(index);
        }
        let mut next = first_iov;
        for train in &mut self.trains {
            train.iov_start = next;
            next += train.ranges;
        }
        next
    }

    /// Calls `slot_of(run, iov)` for each staged run with the iovec slot it takes, in run order.
    pub fn place_runs(&mut self, staged: &[StagedRun], mut slot_of: impl FnMut(&StagedRun, usize)) {
        for (run, &index) in staged.iter().zip(&self.assignment) {
            let train = &mut self.trains[index as usize];
            let slot = (train.iov_start + train.cursor) as usize;
            train.cursor += 1;
            slot_of(run, slot);
        }
    }
}

/// Chooses the train for one run: extends a recent open train to the same destination when the sizes
/// allow, else opens a new one (closing the old, so order per destination is kept).
fn place(trains: &mut Vec<Train>, run: &StagedRun, gso: bool) -> u32 {
    let lookback_start = trains.len().saturating_sub(TRAIN_LOOKBACK);
    let peer_key = run.destination.peer.fingerprint();
    for index in (lookback_start..trains.len()).rev() {
        let train = &mut trains[index];
        let same_destination = train.last_group == run.group
            || (train.peer_key == peer_key && train.destination == run.destination);
        if !same_destination {
            continue;
        }
        let sizes_fit = if run.count == 1 {
            run.bytes <= train.segment
        } else {
            run.segment == train.segment
        };
        let fits = gso
            && run.bytes > 0
            && !train.closed
            && sizes_fit
            && (train.count + run.count) as usize <= GSO_MAX_SEGMENTS
            && (train.bytes + run.bytes) as usize <= GSO_MAX_BYTES;
        if fits {
            train.count += run.count;
            train.bytes += run.bytes;
            train.closed = run.closed || run.bytes < run.count * train.segment;
            train.ranges += 1;
            train.last_group = run.group;
            return index as u32;
        }
        train.closed = true;
        break;
    }
    trains.push(Train {
        destination: run.destination,
        peer_key,
        segment: run.segment,
        count: run.count,
        bytes: run.bytes,
        closed: run.closed || !gso,
        ranges: 1,
        last_group: run.group,
        iov_start: 0,
        cursor: 0,
    });
    (trains.len() - 1) as u32
}
