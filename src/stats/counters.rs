//! The one list of counters a worker keeps, and the accounting identity they must satisfy.
//!
//! Adding a counter is one line in the `counters!` invocation below: it then appears in the summary's
//! worker/total lines, in JSON and in Prometheus. A counter marked `: dropped` is a named reason why a
//! received datagram got no reply: it also joins the accounting identity
//! (`rx = tx + <every dropped reason>`), [`Counters::unaccounted`] and the interval line's `drop/s` group.
//! `: dropped_at_exit` joins the identity only (it cannot happen while serving, so it has no rate).

/// Whether a counter's role puts it in the accounting identity; an unknown role does not compile.
macro_rules! in_identity {
    () => {
        false
    };
    (dropped) => {
        true
    };
    (dropped_at_exit) => {
        true
    };
}

/// Whether a counter's role puts it in the interval line's `drop/s` group.
macro_rules! in_interval_drops {
    () => {
        false
    };
    (dropped) => {
        true
    };
    (dropped_at_exit) => {
        false
    };
}

/// Declares the counter struct once, so the field list, the merge, the identity and the printed names
/// cannot drift apart.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident $(: $role:ident)?),* $(,)?) => {
        /// Every count a worker keeps; printed under these names.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// `(name, value)` pairs in declaration order, for reports.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name)),*]
            }

            /// The named reasons a received datagram got no reply (the terms after `tx` in the accounting
            /// identity), in declaration order.
            pub fn drop_reasons(&self) -> Vec<(&'static str, u64)> {
                let mut out = Vec::new();
                $(if in_identity!($($role)?) {
                    out.push((stringify!($name), self.$name));
                })*
                out
            }

            /// The drop reasons that the interval line reports per second, in declaration order.
            pub fn interval_drops(&self) -> Vec<(&'static str, u64)> {
                let mut out = Vec::new();
                $(if in_interval_drops!($($role)?) {
                    out.push((stringify!($name), self.$name));
                })*
                out
            }

            pub fn add(&mut self, other: &Counters) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    /// Datagrams received (each GRO segment counts once).
    rx,
    /// Datagrams sent (each GSO segment counts once).
    tx,
    rx_bytes,
    tx_bytes,
    /// Larger than `--max-datagram` (or cut by the kernel): counted, never answered.
    truncated: dropped,
    /// The handler chose not to answer.
    no_reply: dropped,
    /// The reply queue was full because the kernel was not taking replies: reply dropped.
    tx_backpressure: dropped,
    /// The kernel refused the reply with an error other than "try later".
    tx_error: dropped,
    /// Replies still queued when the worker stopped.
    unsent_at_exit: dropped_at_exit,
    /// Dropped by the kernel at the socket before udpd read them (`SO_MEMINFO` once per interval, or
    /// `SO_RXQ_OVFL` where the kernel lacks it); not part of `rx`. Counts
    /// kernel packets: a GRO train dropped whole counts once.
    kernel_rx_overflow,
    /// Times the kernel refused GSO and the worker switched it off for its socket.
    gso_disabled,
    /// Received buffers that held more than one datagram (GRO).
    gro_trains,
    /// Sent messages that carried more than one datagram (GSO).
    gso_trains,
    /// Times the kernel's send buffer was full (`EAGAIN`) and replies waited for write space; not a drop:
    /// they go out when space frees (many: consider a larger `--sndbuf`).
    tx_buffer_full,
    /// Refused by the loop guard: source port 0, our own port, a reflecting service's port
    /// (`--loop-guard-ports`), or a source address no real sender has.
    loop_guard: dropped,
    /// Refused by an ACL (`--allow`/`--deny`).
    acl_denied: dropped,
    /// Refused by the per-source rate limit (`--limit`).
    rate_limited: dropped,
    /// The reply would have been more than `--max-amplification` times the request (whole-packet bytes):
    /// not sent.
    amplification_refused: dropped,
    /// `--limit-dry-run`: datagrams the rate limit would have refused, answered all the same.
    rate_limited_dry_run,
}

impl Counters {
    /// Datagrams received that were neither answered nor dropped under a named reason (0 when the books
    /// balance): `rx - tx - <every drop reason>`.
    pub fn unaccounted(&self) -> i128 {
        self.drop_reasons()
            .into_iter()
            .fold(i128::from(self.rx) - i128::from(self.tx), |left, (_, n)| {
                left - i128::from(n)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_are_the_marked_counters_in_order() {
        let names: Vec<_> = Counters::default()
            .drop_reasons()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            [
                "truncated",
                "no_reply",
                "tx_backpressure",
                "tx_error",
                "unsent_at_exit",
                "loop_guard",
                "acl_denied",
                "rate_limited",
                "amplification_refused"
            ]
        );
        let interval: Vec<_> = Counters::default()
            .interval_drops()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            interval,
            [
                "truncated",
                "no_reply",
                "tx_backpressure",
                "tx_error",
                "loop_guard",
                "acl_denied",
                "rate_limited",
                "amplification_refused"
            ]
        );
    }

    #[test]
    fn unaccounted_subtracts_every_drop_reason_and_nothing_else() {
        let counters = Counters {
            rx: 100,
            tx: 50,
            truncated: 10,
            no_reply: 10,
            tx_backpressure: 10,
            tx_error: 10,
            unsent_at_exit: 9,
            kernel_rx_overflow: 1_000,
            rx_bytes: 7,
            ..Counters::default()
        };
        assert_eq!(counters.unaccounted(), 1);
        let over = Counters {
            rx: 1,
            tx: 2,
            ..Counters::default()
        };
        assert_eq!(over.unaccounted(), -1);
    }
}
