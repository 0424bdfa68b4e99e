//! What a request datagram carries: sequence number, intended send time and a filler derived from the sequence.
//!
//! From [`HEADER_LEN`] bytes up a request is `seq (u64 LE) | time_ns (u64 LE) | filler`, where the filler is
//! a window into a fixed pseudo-random table starting at `seq % FILLER_PERIOD`, so a reply can be checked
//! byte for byte without keeping the request. Shorter requests are a prefix of the table itself (the same
//! bytes for every datagram), so only their content and their count can be checked.

use crate::sys::limits::MAX_UDP_PAYLOAD;

/// Bytes of sequence number and send time at the front of every request of at least this size.
pub const HEADER_LEN: usize = 16;
/// The filler of `seq` starts at `seq % FILLER_PERIOD` in the table (a prime, so it cycles slowly over seqs).
const FILLER_PERIOD: u64 = 251;

/// The filler table and its ASCII upper-cased twin (what an `upper` server returns), built once per run.
#[derive(Debug)]
pub struct Filler {
    table: Vec<u8>,
    upper: Vec<u8>,
}

impl Default for Filler {
    fn default() -> Self {
        Filler::new()
    }
}

impl Filler {
    pub fn new() -> Filler {
        let len = FILLER_PERIOD as usize + MAX_UDP_PAYLOAD;
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let table: Vec<u8> = (0..len)
            .map(|_| {
                // xorshift64: cheap and deterministic; about half the bytes are lower-case letters, so an
                // upper-casing server changes most datagrams and an echo is told apart from it.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state & 1 == 0 {
                    b'a' + ((state >> 8) % 26) as u8
                } else {
                    (state >> 24) as u8
                }
            })
            .collect();
        let upper = table.iter().map(u8::to_ascii_uppercase).collect();
        Filler { table, upper }
    }

    /// The filler bytes following the header of request `seq` (`len` of them).
    #[inline]
    pub fn of(&self, seq: u64, len: usize) -> &[u8] {
        let start = (seq % FILLER_PERIOD) as usize;
        &self.table[start..start + len]
    }

    /// What an upper-casing server returns for [`Filler::of`].
    #[inline]
    pub fn upper_of(&self, seq: u64, len: usize) -> &[u8] {
        let start = (seq % FILLER_PERIOD) as usize;
        &self.upper[start..start + len]
    }

    /// The whole content of every request shorter than [`HEADER_LEN`].
    #[inline]
    pub fn short(&self, len: usize) -> &[u8] {
        &self.table[..len]
    }

    /// What an upper-casing server returns for [`Filler::short`].
    #[inline]
    pub fn short_upper(&self, len: usize) -> &[u8] {
        &self.upper[..len]
    }
}

/// Writes request `seq`, stamped with `time_ns`, into `out` (its whole length is the payload).
#[inline]
pub fn write_request(out: &mut [u8], seq: u64, time_ns: u64, filler: &Filler) {
    if out.len() < HEADER_LEN {
        out.copy_from_slice(filler.short(out.len()));
        return;
    }
    out[0..8].copy_from_slice(&seq.to_le_bytes());
    out[8..16].copy_from_slice(&time_ns.to_le_bytes());
    let rest = out.len() - HEADER_LEN;
    out[HEADER_LEN..].copy_from_slice(filler.of(seq, rest));
}

/// The sequence number and send time at the front of a datagram of at least [`HEADER_LEN`] bytes.
#[inline]
pub fn read_header(datagram: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(datagram.get(0..8)?.try_into().ok()?);
    let time = u64::from_le_bytes(datagram.get(8..16)?.try_into().ok()?);
    Some((seq, time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_seq_time_and_a_seq_dependent_filler() {
        let filler = Filler::new();
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        write_request(&mut a, 7, 123_456, &filler);
        write_request(&mut b, 8, 123_456, &filler);
        assert_eq!(read_header(&a), Some((7, 123_456)));
        assert_eq!(&a[HEADER_LEN..], filler.of(7, 48));
        assert_ne!(
            a[HEADER_LEN..],
            b[HEADER_LEN..],
            "filler must depend on seq"
        );
        let mut again = [0u8; 64];
        write_request(&mut again, 7, 123_456, &filler);
        assert_eq!(a, again, "requests are deterministic");
    }

    #[test]
    fn filler_has_lower_case_letters_and_its_upper_twin_matches() {
        let filler = Filler::new();
        let bytes = filler.of(3, 1000);
        assert!(bytes.iter().filter(|b| b.is_ascii_lowercase()).count() > 300);
        assert_eq!(
            filler.upper_of(3, 1000),
            bytes.to_ascii_uppercase().as_slice()
        );
        // The largest payload fits for every seq.
        assert_eq!(
            filler.of(250, MAX_UDP_PAYLOAD - HEADER_LEN).len(),
            MAX_UDP_PAYLOAD - HEADER_LEN
        );
    }

    #[test]
    fn short_requests_are_a_fixed_prefix() {
        let filler = Filler::new();
        let mut a = [0u8; 5];
        write_request(&mut a, 1, 99, &filler);
        assert_eq!(&a, filler.short(5));
        assert_eq!(read_header(&a), None);
        let mut empty = [0u8; 0];
        write_request(&mut empty, 1, 99, &filler);
    }
}
