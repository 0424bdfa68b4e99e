//! sockperf's UDP wire format as pure code: its 14-byte header, which messages `sockperf server` answers,
//! and the reply it sends (the request with the client flag cleared).
//!
//! Every sockperf message starts with a big-endian header: an 8-byte sequence number, 2 bytes of flags
//! (client, pong request, warm-up) and a 4-byte length that counts the whole message, header included.
//! `sockperf server` answers a message only when the client flag and the pong-request flag are set and
//! the warm-up flag is not; its reply is the message itself, same length, with the client flag cleared.
//! Everything else it reads and drops. Here one datagram is one message: a datagram shorter than the
//! header, or whose length field is not its own length, is not answered (sockperf would parse it as a
//! fragment of a byte stream; its own client never sends such datagrams over UDP).

use std::net::SocketAddr;

use super::Handler;

/// Bytes of the header on the wire (sockperf's `MsgHeader::EFFECTIVE_SIZE`).
pub const HEADER_LEN: usize = 14;
/// Set by the client on what it sends; the server clears it in its reply.
pub const FLAG_CLIENT: u16 = 1;
/// The client asks for a reply to this message.
pub const FLAG_PONG_REQUEST: u16 = 2;
/// A warm-up message: the server notes it and never answers it.
pub const FLAG_WARMUP: u16 = 4;

/// Where the flags sit in the header; the client flag is in their low (second, big-endian) byte.
const FLAGS_AT: usize = 8;
const CLIENT_BYTE: usize = FLAGS_AT + 1;
const LENGTH_AT: usize = 10;

/// One sockperf message header, in host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub sequence: u64,
    pub flags: u16,
    /// The whole message's length in bytes, header included.
    pub length: u32,
}

impl Header {
    /// The header at the start of `message`, or `None` when it is shorter than [`HEADER_LEN`].
    pub fn parse(message: &[u8]) -> Option<Header> {
        let bytes: &[u8; HEADER_LEN] = message.get(..HEADER_LEN)?.try_into().ok()?;
        let [s0, s1, s2, s3, s4, s5, s6, s7, f0, f1, l0, l1, l2, l3] = *bytes;
        Some(Header {
            sequence: u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            flags: u16::from_be_bytes([f0, f1]),
            length: u32::from_be_bytes([l0, l1, l2, l3]),
        })
    }

    /// The header as it goes on the wire.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..FLAGS_AT].copy_from_slice(&self.sequence.to_be_bytes());
        bytes[FLAGS_AT..LENGTH_AT].copy_from_slice(&self.flags.to_be_bytes());
        bytes[LENGTH_AT..].copy_from_slice(&self.length.to_be_bytes());
        bytes
    }

    fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}

/// What `sockperf server` does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it: the same bytes with the client flag cleared.
    Answer,
    /// Shorter than the header, or its length field is not the datagram's length.
    NotAMessage,
    /// The client flag is clear: a server's message (a reply), never answered.
    NotFromClient,
    /// A warm-up message.
    Warmup,
    /// A client message that asks for no reply (under-load sends most of its messages so).
    NoReplyAsked,
}

/// Judges one datagram as `sockperf server` would.
pub fn verdict(datagram: &[u8]) -> Verdict {
    let Some(header) = Header::parse(datagram) else {
        return Verdict::NotAMessage;
    };
    if usize::try_from(header.length).ok() != Some(datagram.len()) {
        Verdict::NotAMessage
    } else if !header.has(FLAG_CLIENT) {
        Verdict::NotFromClient
    } else if header.has(FLAG_WARMUP) {
        Verdict::Warmup
    } else if !header.has(FLAG_PONG_REQUEST) {
        Verdict::NoReplyAsked
    } else {
        Verdict::Answer
    }
}

/// Turns a copy of an answerable message into its reply, in place: clears the client flag.
#[inline]
fn make_reply(message: &mut [u8]) {
    message[CLIENT_BYTE] &= !(FLAG_CLIENT as u8);
}

/// Answers sockperf's clients as `sockperf server` does (`--handler sockperf`); see [`verdict`].
#[derive(Debug, Default, Clone)]
pub struct Sockperf;

impl Handler for Sockperf {
    #[inline]
    fn handle(&mut self, request: &[u8], _peer: SocketAddr, reply: &mut [u8]) -> Option<usize> {
        if verdict(request) != Verdict::Answer {
            return None;
        }
        let out = reply.get_mut(..request.len())?;
        out.copy_from_slice(request);
        make_reply(out);
        Some(request.len())
    }

    /// The whole train in one copy, then each segment judged and turned into its reply; `false` (the worker
    /// then asks [`handle`](Handler::handle) datagram by datagram) as soon as one must not be answered.
    fn handle_train(
        &mut self,
        requests: &[u8],
        segment: usize,
        _peer: SocketAddr,
        replies: &mut [u8],
    ) -> bool {
        let Some(out) = replies.get_mut(..requests.len()) else {
            return false;
        };
        if segment == 0 {
            return false;
        }
        out.copy_from_slice(requests);
        for message in out.chunks_mut(segment) {
            if verdict(message) != Verdict::Answer {
                return false;
            }
            make_reply(message);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `len` bytes (at least the header) with these flags, its length field `len`, and a
    /// payload of distinct bytes after the header.
    fn message(sequence: u64, flags: u16, len: usize) -> Vec<u8> {
        let header = Header {
            sequence,
            flags,
            length: len as u32,
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend((0..len - HEADER_LEN).map(|i| (i % 251) as u8));
        bytes
    }

    fn answer(request: &[u8]) -> Option<Vec<u8>> {
        let mut reply = vec![0u8; 2048];
        Sockperf
            .handle(request, "127.0.0.1:1".parse().unwrap(), &mut reply)
            .map(|len| reply[..len].to_vec())
    }

    const PING: u16 = FLAG_CLIENT | FLAG_PONG_REQUEST;

    #[test]
    fn header_is_big_endian_sequence_flags_length() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8, 0x00, 0x03, 0, 0, 0x05, 0x78, 0xaa];
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(
            header,
            Header {
                sequence: 0x0102_0304_0506_0708,
                flags: PING,
                length: 1400,
            }
        );
        assert_eq!(header.encode(), bytes[..HEADER_LEN]);
        assert_eq!(Header::parse(&bytes[..HEADER_LEN - 1]), None);
        let odd = Header {
            sequence: u64::MAX - 1,
            flags: 0xfff7,
            length: 14,
        };
        assert_eq!(Header::parse(&odd.encode()), Some(odd));
    }

    #[test]
    fn only_client_pong_requests_that_are_not_warmup_are_answered() {
        let cases = [
            (PING, Verdict::Answer),
            (PING | 0x0100, Verdict::Answer),
            (FLAG_CLIENT, Verdict::NoReplyAsked),
            (PING | FLAG_WARMUP, Verdict::Warmup),
            (FLAG_CLIENT | FLAG_WARMUP, Verdict::Warmup),
            (FLAG_PONG_REQUEST, Verdict::NotFromClient),
            (0, Verdict::NotFromClient),
            (FLAG_PONG_REQUEST | FLAG_WARMUP, Verdict::NotFromClient),
        ];
        for (flags, expected) in cases {
            assert_eq!(
                verdict(&message(7, flags, 64)),
                expected,
                "flags {flags:#x}"
            );
        }
    }

    #[test]
    fn a_datagram_must_be_exactly_one_message() {
        assert_eq!(verdict(&message(1, PING, HEADER_LEN)), Verdict::Answer);
        assert_eq!(verdict(&[]), Verdict::NotAMessage);
        assert_eq!(
            verdict(&message(1, PING, 20)[..HEADER_LEN - 1]),
            Verdict::NotAMessage
        );
        let mut short_field = message(1, PING, 64);
        short_field[LENGTH_AT..HEADER_LEN].copy_from_slice(&63u32.to_be_bytes());
        assert_eq!(verdict(&short_field), Verdict::NotAMessage, "two messages?");
        let mut long_field = message(1, PING, 64);
        long_field[LENGTH_AT..HEADER_LEN].copy_from_slice(&65u32.to_be_bytes());
        assert_eq!(verdict(&long_field), Verdict::NotAMessage, "a fragment");
        let mut zero = message(1, PING, 64);
        zero[LENGTH_AT..HEADER_LEN].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(verdict(&zero), Verdict::NotAMessage);
        assert_eq!(
            verdict(b"hello, this is not sockperf"),
            Verdict::NotAMessage
        );
    }

    #[test]
    fn the_reply_is_the_request_with_the_client_flag_cleared() {
        for len in [HEADER_LEN, 15, 64, 1400] {
            let request = message(0xdead_beef, PING | 0x0800, len);
            let reply = answer(&request).expect("answered");
            assert_eq!(reply.len(), request.len());
            let header = Header::parse(&reply).unwrap();
            assert_eq!(header.sequence, 0xdead_beef);
            assert_eq!(
                header.flags,
                FLAG_PONG_REQUEST | 0x0800,
                "only the client bit goes"
            );
            assert_eq!(header.length as usize, len);
            assert_eq!(
                reply[HEADER_LEN..],
                request[HEADER_LEN..],
                "payload unchanged"
            );
            assert_eq!(
                verdict(&reply),
                Verdict::NotFromClient,
                "a reply is never answered"
            );
        }
        assert_eq!(answer(&message(1, FLAG_CLIENT, 64)), None);
        assert_eq!(answer(&message(1, PING | FLAG_WARMUP, 64)), None);
        assert_eq!(answer(b"ping"), None);
        let mut tiny = [0u8; 8];
        let request = message(1, PING, 64);
        let peer = "127.0.0.1:1".parse().unwrap();
        assert_eq!(Sockperf.handle(&request, peer, &mut tiny), None, "no room");
    }

    #[test]
    fn a_train_is_answered_like_its_segments_or_not_at_all() {
        let peer = "127.0.0.1:1".parse().unwrap();
        let segment = 100;
        let mut train = Vec::new();
        for sequence in 0..4 {
            train.extend(message(sequence, PING, segment));
        }
        train.extend(message(4, PING, 37)); // the last may be shorter
        let mut replies = vec![0u8; train.len() + 10];
        assert!(Sockperf.handle_train(&train, segment, peer, &mut replies));
        let mut one_by_one = Vec::new();
        for request in train.chunks(segment) {
            one_by_one.extend(answer(request).expect("each segment is answered"));
        }
        assert_eq!(replies[..train.len()], one_by_one[..]);

        let mut mixed = train.clone();
        mixed[2 * segment..3 * segment].copy_from_slice(&message(2, FLAG_CLIENT, segment));
        assert!(!Sockperf.handle_train(&mixed, segment, peer, &mut replies));
        let mut cut = train.clone();
        cut.truncate(train.len() - 37 + HEADER_LEN - 1);
        assert!(!Sockperf.handle_train(&cut, segment, peer, &mut replies));
        assert!(!Sockperf.handle_train(&train, segment, peer, &mut [0u8; 64]));
        assert!(!Sockperf.handle_train(&train, 0, peer, &mut replies));
        assert!(!Sockperf.echoes_requests());
    }
}
