//! One flow's sequence book: which requests are out, which were answered, and when each was sent.

/// One flow's sequence numbers: the next to send, which were answered, and when each was sent.
///
/// Sequence numbers are tracked over a ring of `window` slots: sending `seq` reuses the slot of
/// `seq - window`, which is then given up on (counted lost unless it was answered).
#[derive(Debug)]
pub struct SeqBook {
    /// The sequence number the next request gets.
    pub next_seq: u64,
    /// Requests from this sequence number on are measured; earlier ones were warmup.
    pub measure_from: u64,
    /// Every request below this one was answered or given up on.
    pub(super) oldest: u64,
    /// Requests sent and neither answered nor given up on (the closed loop's in-flight count).
    pub outstanding: u64,
    mask: u64,
    answered: Vec<u64>,
    times: Vec<u64>,
}

impl SeqBook {
    /// A book over a window of `window` sequence numbers (rounded up to a power of two, at least 64).
    pub fn new(window: usize) -> SeqBook {
        let window = window.next_power_of_two().max(64);
        SeqBook {
            next_seq: 0,
            measure_from: 0,
            oldest: 0,
            outstanding: 0,
            mask: window as u64 - 1,
            answered: vec![0; window / 64],
            times: vec![0; window],
        }
    }

    pub fn window(&self) -> u64 {
        self.mask + 1
    }

    #[inline]
    pub(super) fn is_answered(&self, seq: u64) -> bool {
        let slot = seq & self.mask;
        self.answered[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    #[inline]
    fn set_answered(&mut self, seq: u64, answered: bool) {
        let slot = seq & self.mask;
        let word = &mut self.answered[(slot / 64) as usize];
        if answered {
            *word |= 1 << (slot % 64);
        } else {
            *word &= !(1 << (slot % 64));
        }
    }

    /// Registers the next request, sent (or due) at `time_ns`, and returns its sequence number.
    #[inline]
    pub fn on_send(&mut self, time_ns: u64) -> u64 {
        let seq = self.next_seq;
        if seq >= self.window() {
            // The slot we are about to reuse belonged to `seq - window`: give up on it now if still waiting.
            let old = seq - self.window();
            if self.oldest <= old {
                if !self.is_answered(old) {
                    self.outstanding = self.outstanding.saturating_sub(1);
                }
                self.oldest = old + 1;
            }
        }
        self.set_answered(seq, false);
        self.times[(seq & self.mask) as usize] = time_ns;
        self.next_seq = seq + 1;
        self.outstanding += 1;
        seq
    }

    /// Marks requests `first..first+count` as never sent (the kernel refused them): nothing waits for them.
    pub fn on_send_failed(&mut self, first: u64, count: u64) {
        for seq in first..first + count {
            if seq + self.window() >= self.next_seq && !self.is_answered(seq) {
                self.set_answered(seq, true);
                if seq >= self.oldest {
                    self.outstanding = self.outstanding.saturating_sub(1);
                }
            }
        }
    }

    /// Gives up on requests sent more than `timeout_ns` before `now_ns` (in order, oldest first); returns
    /// how many. The closed loop calls this to free the places of lost requests.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64) -> u64 {
        let mut expired = 0;
        while self.oldest < self.next_seq {
            if self.is_answered(self.oldest) {
                self.oldest += 1;
            } else if now_ns.saturating_sub(self.times[(self.oldest & self.mask) as usize])
                > timeout_ns
            {
                self.outstanding = self.outstanding.saturating_sub(1);
                self.oldest += 1;
                expired += 1;
            } else {
                break;
            }
        }
        expired
    }

    #[inline]
    pub(super) fn in_window(&self, seq: u64) -> bool {
        seq < self.next_seq && self.next_seq - seq <= self.window()
    }

    #[inline]
    pub(super) fn time_of(&self, seq: u64) -> u64 {
        self.times[(seq & self.mask) as usize]
    }

    /// Records the answer to `seq` (in the window, not yet answered); true when it was still awaited.
    #[inline]
    pub(super) fn answer(&mut self, seq: u64) -> bool {
        self.set_answered(seq, true);
        let awaited = seq >= self.oldest;
        if awaited {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        awaited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn closed_loop_expiry_frees_lost_requests() {
        let mut book = SeqBook::new(64);
        book.on_send(0);
        book.on_send(100);
        book.on_send(SECOND);
        assert_eq!(book.expire(SECOND + 50, SECOND), 1);
        assert_eq!(book.outstanding, 2);
        book.on_send_failed(2, 1);
        assert_eq!(book.outstanding, 1);
        assert_eq!(book.expire(3 * SECOND, SECOND), 1);
        assert_eq!(book.outstanding, 0);
    }
}
