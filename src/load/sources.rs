//! `--check-source`: which address each flow's replies came from, so that a balanced service can be checked
//! for flow stickiness (all replies of a flow from one backend) and for which flows moved, and where.
//!
//! Every datagram that arrives on a flow's socket counts as a reply here, whatever the checker's verdict
//! (ok, late, duplicate, mismatched, warm-up): what a server sent is what it counted as sent.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::Value;

use crate::sys::RecvInfo;

/// Distinct reply sources a thread tells apart; replies from further ones are counted as `other_replies`.
/// The table is reserved when the thread starts, so recording never allocates.
pub const MAX_SOURCES: usize = 64;

/// One flow's reply sources: the first one, the latest one, and how often the source changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSources {
    first: Option<IpAddr>,
    last: Option<IpAddr>,
    changes: u64,
}

impl FlowSources {
    /// Notes one reply from `source`.
    #[inline]
    fn see(&mut self, source: IpAddr) {
        match self.last {
            None => self.first = Some(source),
            Some(last) if last != source => self.changes += 1,
            Some(_) => {}
        }
        self.last = Some(source);
    }
}

/// One reply source: its replies, the flows it answered first and the flows it answered last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceCount {
    pub addr: IpAddr,
    pub replies: u64,
    pub flows_first: u64,
    pub flows_last: u64,
}

/// Replies per source and the flows' stickiness, kept per thread and merged at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceBook {
    pub by_source: Vec<SourceCount>,
    /// Replies from sources beyond the first [`MAX_SOURCES`] a thread saw.
    pub other_replies: u64,
    /// Flows that got at least one reply.
    pub flows_answered: u64,
    /// Flows whose replies all came from one address.
    pub single_source: u64,
    /// Flows whose source changed exactly once (moved to another backend and stayed there).
    pub moved_once: u64,
    /// Flows whose source changed more than once (went back and forth).
    pub flapping: u64,
    /// Source changes over all flows.
    pub changes: u64,
}

impl SourceBook {
    /// An empty book with room for [`MAX_SOURCES`] sources.
    pub fn new() -> SourceBook {
        SourceBook {
            by_source: Vec::with_capacity(MAX_SOURCES),
            ..SourceBook::default()
        }
    }

    /// Records `count` replies from `source` on the flow whose sources are `flow`.
    #[inline]
    pub fn record(&mut self, flow: &mut FlowSources, source: IpAddr, count: u64) {
        flow.see(source);
        if let Some(entry) = self.by_source.iter_mut().find(|entry| entry.addr == source) {
            entry.replies += count;
        } else if self.by_source.len() < MAX_SOURCES {
            self.by_source.push(SourceCount {
                addr: source,
                replies: count,
                flows_first: 0,
                flows_last: 0,
            });
        } else {
            self.other_replies += count;
        }
    }

    /// Records what one `recvmmsg` slot held: one datagram, or a GRO train of `len / segment size` of them.
    #[inline]
    pub fn record_received(&mut self, flow: &mut FlowSources, info: &RecvInfo) {
        let datagrams = match info.control.segment_size {
            Some(size) if size > 0 && !info.truncated => info.len.div_ceil(usize::from(size)),
            _ => 1,
        };
        let source = info.peer.to_socket_addr().ip();
        self.record(flow, source, datagrams.max(1) as u64);
    }

    /// Adds one flow's verdict at the end of the run: answered or not, sticky, moved once or flapping.
    pub fn close_flow(&mut self, flow: &FlowSources) {
        let (Some(first), Some(last)) = (flow.first, flow.last) else {
            return;
        };
        self.flows_answered += 1;
        self.changes += flow.changes;
        match flow.changes {
            0 => self.single_source += 1,
            1 => self.moved_once += 1,
            _ => self.flapping += 1,
        }
        for entry in &mut self.by_source {
            if entry.addr == first {
                entry.flows_first += 1;
            }
            if entry.addr == last {
                entry.flows_last += 1;
            }
        }
    }

    /// Adds another thread's book (at the end of the run; may allocate).
    pub fn merge(&mut self, other: &SourceBook) {
        for theirs in &other.by_source {
            match self
                .by_source
                .iter_mut()
                .find(|ours| ours.addr == theirs.addr)
            {
                Some(ours) => {
                    ours.replies += theirs.replies;
                    ours.flows_first += theirs.flows_first;
                    ours.flows_last += theirs.flows_last;
                }
                None => self.by_source.push(*theirs),
            }
        }
        self.by_source.sort_by_key(|entry| entry.addr);
        self.other_replies += other.other_replies;
        self.flows_answered += other.flows_answered;
        self.single_source += other.single_source;
        self.moved_once += other.moved_once;
        self.flapping += other.flapping;
        self.changes += other.changes;
    }

    /// Every reply datagram received, from any source.
    pub fn replies(&self) -> u64 {
        self.by_source
            .iter()
            .map(|entry| entry.replies)
            .sum::<u64>()
            + self.other_replies
    }

    /// Flows whose replies came from more than one address.
    pub fn multi_source(&self) -> u64 {
        self.moved_once + self.flapping
    }

    /// The JSON object under `reply_sources`.
    pub fn to_json(&self) -> String {
        let sources: Vec<Value> = self
            .by_source
            .iter()
            .map(|entry| {
                serde_json::json!({
                    "addr": entry.addr.to_string(),
                    "replies": entry.replies,
                    "flows_first": entry.flows_first,
                    "flows_last": entry.flows_last,
                })
            })
            .collect();
        let fields: [(&str, Value); 9] = [
            ("replies", self.replies().into()),
            ("flows_answered", self.flows_answered.into()),
            ("single_source", self.single_source.into()),
            ("multi_source", self.multi_source().into()),
            ("moved_once", self.moved_once.into()),
            ("flapping", self.flapping.into()),
            ("changes", self.changes.into()),
            ("other_replies", self.other_replies.into()),
            ("by_source", Value::Array(sources)),
        ];
        let mut out = String::from("{");
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}:{value}", Value::from(*key));
        }
        out.push('}');
        out
    }

    /// The lines of the text report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "sources     {} flows answered: {} from one address, {} moved once, {} flapping ({} replies)",
            self.flows_answered,
            self.single_source,
            self.moved_once,
            self.flapping,
            self.replies()
        );
        for entry in &self.by_source {
            let _ = writeln!(
                out,
                "  {:<15} {} replies, first for {} flows, last for {}",
                entry.addr.to_string(),
                entry.replies,
                entry.flows_first,
                entry.flows_last
            );
        }
        if self.other_replies > 0 {
            let _ = writeln!(
                out,
                "  (more than {MAX_SOURCES} sources: {} replies from the rest)",
                self.other_replies
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 77, 0, last])
    }

    #[test]
    fn sticky_moved_and_flapping_flows_are_told_apart() {
        let mut book = SourceBook::new();
        let (mut sticky, mut moved, mut flapping, silent) = Default::default();
        for _ in 0..3 {
            book.record(&mut sticky, ip(1), 2);
        }
        book.record(&mut moved, ip(2), 1);
        book.record(&mut moved, ip(3), 1);
        book.record(&mut moved, ip(3), 1);
        for source in [1, 2, 1] {
            book.record(&mut flapping, ip(source), 1);
        }
        for flow in [&sticky, &moved, &flapping, &silent] {
            book.close_flow(flow);
        }
        assert_eq!(book.flows_answered, 3);
        assert_eq!(
            (book.single_source, book.moved_once, book.flapping),
            (1, 1, 1)
        );
        assert_eq!(book.multi_source(), 2);
        assert_eq!(book.changes, 3);
        assert_eq!(book.replies(), 12);
        let first = book.by_source.iter().find(|e| e.addr == ip(1)).unwrap();
        assert_eq!(
            (first.replies, first.flows_first, first.flows_last),
            (8, 2, 2)
        );
        let third = book.by_source.iter().find(|e| e.addr == ip(3)).unwrap();
        assert_eq!((third.flows_first, third.flows_last), (0, 1));
    }

    #[test]
    fn sources_beyond_the_table_are_still_counted_and_merging_adds_up() {
        let mut book = SourceBook::new();
        let mut flow = FlowSources::default();
        for source in 0..MAX_SOURCES as u8 + 2 {
            book.record(&mut flow, ip(source), 1);
        }
        assert_eq!(book.by_source.len(), MAX_SOURCES);
        assert_eq!(book.other_replies, 2);
        assert_eq!(book.by_source.capacity(), MAX_SOURCES);
        book.close_flow(&flow);
        let mut merged = SourceBook::new();
        merged.merge(&book);
        merged.merge(&book);
        assert_eq!(merged.replies(), 2 * (MAX_SOURCES as u64 + 2));
        assert_eq!(merged.flapping, 2);
        assert_eq!(merged.by_source[0].replies, 2);
        let json: Value = serde_json::from_str(&merged.to_json()).unwrap();
        assert_eq!(json["multi_source"], 2);
        assert_eq!(json["by_source"][0]["addr"], "10.77.0.0");
        assert!(merged.to_text().contains("2 flapping"));
    }
}
