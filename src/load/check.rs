//! Reply checking: the verdict on each reply (ok, late, duplicate, mismatch) against `--expect` and the
//! flow's sequence book.
//!
//! What is checked depends on the payload size:
//! - **16 bytes and more** (indexed): the reply names its request by sequence number. Its length, header and
//!   filler are compared byte for byte with what `--expect` says the server returns for that request; a
//!   per-flow bitmap over the last `window` sequence numbers finds duplicates; latency is taken from the send
//!   time the request carried. A reply naming a sequence number older than the window (its slot reused by
//!   a newer request) is judged by the time it carries alone: its duplicates go unnoticed, and under
//!   `--expect upper` its latency is approximate (the time field comes back upper-cased).
//! - **Under 16 bytes, or `--expect ack`** (FIFO): replies carry no sequence number, so each is matched to the
//!   oldest request of its flow still waiting (requests older than `--timeout` are skipped as lost). The
//!   content is still checked exactly, but a late reply cannot be told from an on-time one, and a duplicate
//!   shows only as a reply with nothing left waiting.

use super::book::SeqBook;
use super::expect::Expect;
use super::payload::{read_header, Filler, HEADER_LEN};

/// The outcome of one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Correct and within `--timeout`; latency in nanoseconds.
    Ok(u64),
    /// Correct but after `--timeout` (or for a request already given up on); latency in nanoseconds.
    Late(u64),
    /// A second reply to a request already answered.
    Duplicate,
    /// Not what the server should have answered (wrong length or bytes, unknown sequence number).
    Mismatch,
    /// A correct reply to a request sent during `--warmup`: not counted.
    Warmup,
    /// A reply although `--expect none`.
    Unexpected,
}

/// Judges replies against `--expect` for requests of `payload` bytes.
#[derive(Debug)]
pub struct Checker<'a> {
    expect: Expect,
    payload: usize,
    timeout_ns: u64,
    filler: &'a Filler,
}

impl<'a> Checker<'a> {
    pub fn new(expect: Expect, payload: usize, timeout_ns: u64, filler: &'a Filler) -> Self {
        Checker {
            expect,
            payload,
            timeout_ns,
            filler,
        }
    }

    /// True when replies name their request (sequence number in the payload); false for FIFO matching.
    pub fn is_indexed(&self) -> bool {
        self.payload >= HEADER_LEN && matches!(self.expect, Expect::Echo | Expect::Upper)
    }

    /// Judges one reply that arrived at `now_ns` on the flow whose book is `book`, updating the book.
    #[inline]
    pub fn classify(&self, book: &mut SeqBook, reply: &[u8], now_ns: u64) -> Verdict {
        match self.expect {
            Expect::None => Verdict::Unexpected,
            _ if self.is_indexed() => self.classify_indexed(book, reply, now_ns),
            _ => self.classify_fifo(book, reply, now_ns),
        }
    }

    fn classify_indexed(&self, book: &mut SeqBook, reply: &[u8], now_ns: u64) -> Verdict {
        if reply.len() != self.payload {
            return Verdict::Mismatch;
        }
        let upper = self.expect == Expect::Upper;
        let Some((seq, time)) = (if upper {
            recover_upper_seq(book, reply)
        } else {
            read_header(reply)
        }) else {
            return Verdict::Mismatch;
        };
        let rest = self.payload - HEADER_LEN;
        let filler_ok = if upper {
            reply[HEADER_LEN..] == *self.filler.upper_of(seq, rest)
        } else {
            reply[HEADER_LEN..] == *self.filler.of(seq, rest)
        };
        if !filler_ok {
            return Verdict::Mismatch;
        }
        if !book.in_window(seq) {
            // Either never sent (a wrong reply) or older than the window (its slot was reused): then only
            // the time it carries is left to judge it by, and a duplicate cannot be recognised.
            if seq >= book.next_seq {
                return Verdict::Mismatch;
            }
            if seq < book.measure_from {
                return Verdict::Warmup;
            }
            let latency = now_ns.saturating_sub(time);
            return if latency <= self.timeout_ns {
                Verdict::Ok(latency)
            } else {
                Verdict::Late(latency)
            };
        }
        let sent_at = book.time_of(seq);
        let time_ok = if upper {
            to_upper_u64(sent_at) == time
        } else {
            sent_at == time
        };
        if !time_ok {
            return Verdict::Mismatch;
        }
        if book.is_answered(seq) {
            return Verdict::Duplicate;
        }
        let awaited = book.answer(seq);
        if seq < book.measure_from {
            return Verdict::Warmup;
        }
        let latency = now_ns.saturating_sub(sent_at);
        if awaited && latency <= self.timeout_ns {
            Verdict::Ok(latency)
        } else {
            Verdict::Late(latency)
        }
    }

    fn classify_fifo(&self, book: &mut SeqBook, reply: &[u8], now_ns: u64) -> Verdict {
        let content_ok = match &self.expect {
            Expect::Ack(text) => reply == text.as_slice(),
            Expect::Upper => reply == self.filler.short_upper(self.payload.min(HEADER_LEN - 1)),
            _ => reply == self.filler.short(self.payload.min(HEADER_LEN - 1)),
        };
        book.expire(now_ns, self.timeout_ns);
        // `expire` stopped at the oldest request still waiting (or ran out of requests).
        if book.oldest >= book.next_seq {
            return if content_ok {
                Verdict::Duplicate
            } else {
                Verdict::Mismatch
            };
        }
        let seq = book.oldest;
        book.answer(seq);
        book.oldest += 1;
        if !content_ok {
            return Verdict::Mismatch;
        }
        if seq < book.measure_from {
            return Verdict::Warmup;
        }
        Verdict::Ok(now_ns.saturating_sub(book.time_of(seq)))
    }
}

/// Upper-cases the little-endian bytes of `value` (what an `upper` server does to a header field).
#[inline]
fn to_upper_u64(value: u64) -> u64 {
    u64::from_le_bytes(value.to_le_bytes().map(|b| b.to_ascii_uppercase()))
}

/// Finds which request an upper-cased header came from. Upper-casing maps both `a` and `A` to `A`, so every
/// header byte in `A..=Z` may have been either; the candidates are tried against the flow's window, an
/// awaited one first. Returns the sequence number and the upper-cased time field as received.
fn recover_upper_seq(book: &SeqBook, reply: &[u8]) -> Option<(u64, u64)> {
    let (seq_field, time_field) = read_header(reply)?;
    let bytes = seq_field.to_le_bytes();
    let mut ambiguous = [0usize; 8];
    let mut count = 0;
    for (at, byte) in bytes.iter().enumerate() {
        if byte.is_ascii_uppercase() {
            ambiguous[count] = at;
            count += 1;
        }
    }
    let mut fallback = None;
    for choice in 0u32..(1 << count) {
        let mut candidate = bytes;
        for (bit, &at) in ambiguous[..count].iter().enumerate() {
            if choice & (1 << bit) != 0 {
                candidate[at] = candidate[at].to_ascii_lowercase();
            }
        }
        let seq = u64::from_le_bytes(candidate);
        if book.in_window(seq) {
            if !book.is_answered(seq) {
                return Some((seq, time_field));
            }
            fallback.get_or_insert(seq);
        } else if seq < book.next_seq {
            fallback.get_or_insert(seq);
        }
    }
    Some((fallback.unwrap_or(seq_field), time_field))
}

#[cfg(test)]
mod tests {
    use super::super::payload::write_request;
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn request(book: &mut SeqBook, filler: &Filler, len: usize, time: u64) -> Vec<u8> {
        let seq = book.on_send(time);
        let mut bytes = vec![0; len];
        write_request(&mut bytes, seq, time, filler);
        bytes
    }

    #[test]
    fn echo_counts_ok_duplicate_late_and_mismatch() {
        let filler = Filler::new();
        let checker = Checker::new(Expect::Echo, 64, SECOND, &filler);
        let mut book = SeqBook::new(1024);
        let first = request(&mut book, &filler, 64, 1_000);
        let second = request(&mut book, &filler, 64, 2_000);
        assert_eq!(book.outstanding, 2);
        assert_eq!(
            checker.classify(&mut book, &first, 11_000),
            Verdict::Ok(10_000)
        );
        assert_eq!(
            checker.classify(&mut book, &first, 12_000),
            Verdict::Duplicate
        );
        assert_eq!(
            checker.classify(&mut book, &second, 2 * SECOND),
            Verdict::Late(2 * SECOND - 2_000)
        );
        assert_eq!(book.outstanding, 0);
        let mut corrupt = request(&mut book, &filler, 64, 3_000);
        corrupt[40] ^= 1;
        assert_eq!(
            checker.classify(&mut book, &corrupt, 4_000),
            Verdict::Mismatch
        );
        assert_eq!(
            checker.classify(&mut book, &corrupt[..63], 4_000),
            Verdict::Mismatch
        );
        // A sequence number never sent is a mismatch, not a reply.
        let mut bogus = vec![0; 64];
        write_request(&mut bogus, 500, 3_000, &filler);
        assert_eq!(
            checker.classify(&mut book, &bogus, 4_000),
            Verdict::Mismatch
        );
    }

    #[test]
    fn echo_against_upper_expectation_is_a_mismatch_and_upper_passes() {
        let filler = Filler::new();
        let upper = Checker::new(Expect::Upper, 200, SECOND, &filler);
        let mut book = SeqBook::new(1024);
        let mut ok = 0;
        for i in 0..300u64 {
            // Times chosen so their bytes often fall in a..z: the header must survive upper-casing too.
            let time = 0x6161_6161 + i * 0x0101;
            let bytes = request(&mut book, &filler, 200, time);
            assert_eq!(
                upper.classify(&mut book, &bytes, time + 5),
                Verdict::Mismatch
            );
            let shouted = bytes.to_ascii_uppercase();
            if upper.classify(&mut book, &shouted, time + 5) == Verdict::Ok(5) {
                ok += 1;
            }
        }
        assert_eq!(ok, 300);
    }

    #[test]
    fn warmup_replies_are_recognised() {
        let filler = Filler::new();
        let checker = Checker::new(Expect::Echo, 16, SECOND, &filler);
        let mut book = SeqBook::new(64);
        let early = request(&mut book, &filler, 16, 10);
        book.measure_from = book.next_seq;
        let measured = request(&mut book, &filler, 16, 20);
        assert_eq!(checker.classify(&mut book, &early, 30), Verdict::Warmup);
        assert_eq!(checker.classify(&mut book, &measured, 30), Verdict::Ok(10));
    }

    #[test]
    fn the_window_gives_up_on_old_requests() {
        let filler = Filler::new();
        let checker = Checker::new(Expect::Echo, 32, SECOND, &filler);
        let mut book = SeqBook::new(64);
        let first = request(&mut book, &filler, 32, 0);
        for _ in 0..64 {
            request(&mut book, &filler, 32, 1);
        }
        // Request 0's slot was reused: it is no longer awaited, and its reply is judged by its time alone.
        assert_eq!(book.outstanding, 64);
        assert_eq!(checker.classify(&mut book, &first, 5), Verdict::Ok(5));
        assert_eq!(
            checker.classify(&mut book, &first, 2 * SECOND),
            Verdict::Late(2 * SECOND)
        );
    }

    #[test]
    fn fifo_matching_for_short_payloads_and_ack() {
        let filler = Filler::new();
        let checker = Checker::new(Expect::Echo, 4, SECOND, &filler);
        let mut book = SeqBook::new(64);
        let bytes = request(&mut book, &filler, 4, 100);
        request(&mut book, &filler, 4, 200);
        assert_eq!(checker.classify(&mut book, &bytes, 150), Verdict::Ok(50));
        assert_eq!(checker.classify(&mut book, b"nope", 250), Verdict::Mismatch);
        // Nothing is waiting any more: another reply is a duplicate.
        assert_eq!(checker.classify(&mut book, &bytes, 300), Verdict::Duplicate);
        assert_eq!(book.outstanding, 0);

        let ack = Checker::new(Expect::Ack(b"ACK".to_vec()), 64, SECOND, &filler);
        let mut book = SeqBook::new(64);
        book.on_send(0); // lost: skipped once older than the timeout
        book.on_send(2 * SECOND);
        assert_eq!(
            ack.classify(&mut book, b"ACK", 2 * SECOND + 7),
            Verdict::Ok(7)
        );
        assert_eq!(
            ack.classify(&mut book, b"ACK", 2 * SECOND + 8),
            Verdict::Duplicate
        );
        book.on_send(3 * SECOND);
        assert_eq!(
            ack.classify(&mut book, b"ack", 3 * SECOND),
            Verdict::Mismatch
        );
    }

    #[test]
    fn expect_none_marks_every_reply_unexpected() {
        let filler = Filler::new();
        let checker = Checker::new(Expect::None, 64, SECOND, &filler);
        let mut book = SeqBook::new(64);
        assert_eq!(checker.classify(&mut book, b"x", 0), Verdict::Unexpected);
    }
}
