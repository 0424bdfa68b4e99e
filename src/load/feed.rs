//! What to send next: builds each burst of requests into the outbox, on the open-loop schedule or topping
//! up the closed loop's requests in flight, spreading them over the flows as `--pattern` says.

use super::flow::Flow;
use super::outbox::Outbox;
use super::payload::{write_request, Filler};
use super::schedule::Schedule;
use super::{Pattern, Plan};

/// The send side's state: the schedule, how many datagrams it issued, and which flow's turn it is.
pub struct Feed<'a> {
    plan: &'a Plan,
    filler: &'a Filler,
    schedule: Schedule,
    /// Datagrams built so far (open loop), to tell how many more the schedule says are due.
    issued: u64,
    /// The next flow to serve, round robin.
    turn: usize,
}

impl<'a> Feed<'a> {
    /// A feed for one thread's share of `plan`, its schedule starting at `start_ns`.
    pub fn new(plan: &'a Plan, filler: &'a Filler, start_ns: u64) -> Feed<'a> {
        let rate = if plan.outstanding.is_some() {
            0.0
        } else {
            plan.rate / plan.threads as f64
        };
        Feed {
            plan,
            filler,
            schedule: Schedule::new(start_ns, rate),
            issued: 0,
            turn: 0,
        }
    }

    /// Builds the next burst (at most one batch) into `out`, which must be empty; returns how many
    /// datagrams it holds (0: nothing is due).
    pub fn fill(&mut self, out: &mut Outbox, flows: &mut [Flow], now: u64) -> usize {
        match self.plan.outstanding {
            None => self.fill_open(out, flows, now),
            Some(window) => self.fill_closed(out, flows, window, now),
        }
    }

    /// The flow whose turn it is; moves the turn on.
    #[inline]
    fn next_flow(&mut self, flows: usize) -> usize {
        let flow = self.turn % flows;
        self.turn = self.turn.wrapping_add(1);
        flow
    }

    /// Open loop: what the schedule says is due.
    fn fill_open(&mut self, out: &mut Outbox, flows: &mut [Flow], now: u64) -> usize {
        let due = self.schedule.due(now).saturating_sub(self.issued);
        let count = due.min(self.plan.batch as u64) as usize;
        if count == 0 {
            return 0;
        }
        let (schedule, filler, payload) = (self.schedule, self.filler, self.plan.payload);
        match self.plan.pattern {
            Pattern::Bulk => {
                let flow = self.next_flow(flows.len());
                let issued = &mut self.issued;
                let time_of = || {
                    let time = if schedule.is_unlimited() {
                        now
                    } else {
                        schedule.intended(*issued)
                    };
                    *issued += 1;
                    time
                };
                build_burst(out, &mut flows[flow], flow, filler, payload, count, time_of);
            }
            Pattern::Spread => {
                for index in 0..count {
                    let flow = self.next_flow(flows.len());
                    let time = if schedule.is_unlimited() {
                        now
                    } else {
                        schedule.intended(self.issued)
                    };
                    self.issued += 1;
                    let seq = build_one(out, &mut flows[flow], filler, payload, index, time);
                    out.push(flow, seq, index, 1, payload);
                }
            }
        }
        count
    }

    /// Closed loop: tops flows up to `window` requests in flight.
    fn fill_closed(
        &mut self,
        out: &mut Outbox,
        flows: &mut [Flow],
        window: u64,
        now: u64,
    ) -> usize {
        let (filler, payload, batch) = (self.filler, self.plan.payload, self.plan.batch);
        for flow in flows.iter_mut() {
            flow.book.expire(now, self.plan.timeout_ns);
        }
        match self.plan.pattern {
            Pattern::Bulk => {
                for _ in 0..flows.len() {
                    let flow = self.next_flow(flows.len());
                    let room = window.saturating_sub(flows[flow].book.outstanding);
                    let count = room.min(batch as u64) as usize;
                    if count > 0 {
                        build_burst(out, &mut flows[flow], flow, filler, payload, count, || now);
                        return count;
                    }
                }
                0
            }
            Pattern::Spread => {
                let mut count = 0;
                let mut idle = 0;
                while count < batch && idle < flows.len() {
                    let flow = self.next_flow(flows.len());
                    if flows[flow].book.outstanding < window {
                        let seq = build_one(out, &mut flows[flow], filler, payload, count, now);
                        out.push(flow, seq, count, 1, payload);
                        count += 1;
                        idle = 0;
                    } else {
                        idle += 1;
                    }
                }
                count
            }
        }
    }
}

/// Writes the next request of `flow` into datagram `index` of the outbox; returns its sequence number.
#[inline]
fn build_one(
    out: &mut Outbox,
    flow: &mut Flow,
    filler: &Filler,
    payload: usize,
    index: usize,
    time: u64,
) -> u64 {
    let seq = flow.book.on_send(time);
    write_request(out.slot(index, payload), seq, time, filler);
    seq
}

/// Builds `count` requests for flow number `index_of_flow` as a burst (GSO trains when enabled), each
/// timed by the next `time_of()`.
fn build_burst(
    out: &mut Outbox,
    flow: &mut Flow,
    index_of_flow: usize,
    filler: &Filler,
    payload: usize,
    count: usize,
    mut time_of: impl FnMut() -> u64,
) {
    let mut index = 0;
    while index < count {
        let train = out.segments().min(count - index);
        let first_seq = build_one(out, flow, filler, payload, index, time_of());
        for i in 1..train {
            build_one(out, flow, filler, payload, index + i, time_of());
        }
        out.push(index_of_flow, first_seq, index, train, payload);
        index += train;
    }
}
