//! Reply logic: the `Handler` trait a protocol implements, and the built-in echo, upper, ack, sockperf and
//! discard.

pub mod sockperf;

pub use sockperf::Sockperf;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::sys::limits::MAX_UDP_PAYLOAD;

/// Turns one request into at most one reply, without allocating.
///
/// The worker calls `handle` once per datagram (once per GRO segment) with the request bytes, the sender,
/// and a reply buffer of at least [`MAX_UDP_PAYLOAD`] bytes. The handler writes its reply
/// at the start of `reply` and returns its length (`Some(0)` sends an empty datagram), or `None` to send
/// nothing (counted as `no_reply`). A returned length larger than `reply` is a bug and is clamped.
pub trait Handler: Send {
    fn handle(&mut self, request: &[u8], peer: SocketAddr, reply: &mut [u8]) -> Option<usize>;

    /// Optional fast path for a GRO-coalesced train: `requests` holds several datagrams from `peer`, each
    /// `segment` bytes but the last (which may be shorter). A handler whose every reply has exactly the
    /// length of its request (echo-like) may answer the whole train at once by writing the replies, in
    /// order and back to back, into `replies[..requests.len()]` and returning `true`. Returning `false`
    /// (the default) makes the worker call [`handle`](Self::handle) once per datagram instead.
    fn handle_train(
        &mut self,
        _requests: &[u8],
        _segment: usize,
        _peer: SocketAddr,
        _replies: &mut [u8],
    ) -> bool {
        false
    }

    /// Whether every reply is byte for byte its request (a pure echo). The worker then sends the request
    /// bytes themselves, without calling the handler or copying them. Default `false`.
    fn echoes_requests(&self) -> bool {
        false
    }
}

/// Sends the request back unchanged.
#[derive(Debug, Default, Clone)]
pub struct Echo;

impl Handler for Echo {
    #[inline]
    fn handle(&mut self, request: &[u8], _peer: SocketAddr, reply: &mut [u8]) -> Option<usize> {
        Some(same_length_reply(request, reply, copy_into))
    }

    fn handle_train(&mut self, requests: &[u8], _: usize, _: SocketAddr, out: &mut [u8]) -> bool {
        same_length_train(requests, out, copy_into)
    }

    fn echoes_requests(&self) -> bool {
        true
    }
}

/// Sends the request back with ASCII letters upper-cased (other bytes unchanged).
#[derive(Debug, Default, Clone)]
pub struct Upper;

impl Handler for Upper {
    #[inline]
    fn handle(&mut self, request: &[u8], _peer: SocketAddr, reply: &mut [u8]) -> Option<usize> {
        Some(same_length_reply(request, reply, upper_into))
    }

    fn handle_train(&mut self, requests: &[u8], _: usize, _: SocketAddr, out: &mut [u8]) -> bool {
        same_length_train(requests, out, upper_into)
    }
}

/// A reply of the request's length made by `transform` (clamped to the reply buffer); returns its length.
#[inline]
fn same_length_reply(request: &[u8], reply: &mut [u8], transform: fn(&[u8], &mut [u8])) -> usize {
    let len = request.len().min(reply.len());
    transform(&request[..len], &mut reply[..len]);
    len
}

/// [`same_length_reply`] for a whole train at once; `false` when `replies` cannot hold it.
#[inline]
fn same_length_train(requests: &[u8], replies: &mut [u8], transform: fn(&[u8], &mut [u8])) -> bool {
    match replies.get_mut(..requests.len()) {
        Some(out) => {
            transform(requests, out);
            true
        }
        None => false,
    }
}

/// Copies `source` into `target` (the same length).
fn copy_into(source: &[u8], target: &mut [u8]) {
    target.copy_from_slice(source);
}

/// Writes `source` with ASCII letters upper-cased into `target` (the same length).
fn upper_into(source: &[u8], target: &mut [u8]) {
    for (out, byte) in target.iter_mut().zip(source) {
        *out = byte.to_ascii_uppercase();
    }
}

/// Answers every request with the same fixed bytes.
#[derive(Debug, Clone)]
pub struct Ack {
    text: Vec<u8>,
}

/// The reply of `--handler ack` when no text is given.
pub const DEFAULT_ACK: &[u8] = b"ACK";

impl Ack {
    pub fn new(text: Vec<u8>) -> Self {
        Ack { text }
    }
}

impl Handler for Ack {
    #[inline]
    fn handle(&mut self, _request: &[u8], _peer: SocketAddr, reply: &mut [u8]) -> Option<usize> {
        let len = self.text.len().min(reply.len());
        reply[..len].copy_from_slice(&self.text[..len]);
        Some(len)
    }
}

/// Receives and counts, never answers.
#[derive(Debug, Default, Clone)]
pub struct Discard;

impl Handler for Discard {
    #[inline]
    fn handle(&mut self, _request: &[u8], _peer: SocketAddr, _reply: &mut [u8]) -> Option<usize> {
        None
    }
}

/// A built-in handler chosen on the command line (`--handler`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerSpec {
    Echo,
    Upper,
    Ack(Vec<u8>),
    /// sockperf's wire format: answers what `sockperf server` answers ([`Sockperf`]).
    Sockperf,
    Discard,
}

impl HandlerSpec {
    /// A fresh handler instance (one per worker).
    pub fn build(&self) -> Box<dyn Handler> {
        match self {
            HandlerSpec::Echo => Box::new(Echo),
            HandlerSpec::Upper => Box::new(Upper),
            HandlerSpec::Ack(text) => Box::new(Ack::new(text.clone())),
            HandlerSpec::Sockperf => Box::new(Sockperf),
            HandlerSpec::Discard => Box::new(Discard),
        }
    }
}

impl FromStr for HandlerSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "echo" => Ok(HandlerSpec::Echo),
            "upper" => Ok(HandlerSpec::Upper),
            "discard" => Ok(HandlerSpec::Discard),
            "sockperf" => Ok(HandlerSpec::Sockperf),
            "ack" => Ok(HandlerSpec::Ack(DEFAULT_ACK.to_vec())),
            _ => match text.strip_prefix("ack:") {
                Some(reply) if reply.len() <= MAX_UDP_PAYLOAD => {
                    Ok(HandlerSpec::Ack(reply.as_bytes().to_vec()))
                }
                Some(reply) => Err(format!(
                    "--handler ack:TEXT: TEXT is {} bytes, more than one UDP datagram holds: use at most {MAX_UDP_PAYLOAD}",
                    reply.len()
                )),
                None => Err(format!(
                    "--handler {:?} is unknown: use echo, upper, ack, ack:TEXT, sockperf or discard",
                    shorten(text)
                )),
            },
        }
    }
}

/// At most the first 40 characters of `text`, for messages that echo what was typed.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

impl fmt::Display for HandlerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerSpec::Echo => f.write_str("echo"),
            HandlerSpec::Upper => f.write_str("upper"),
            HandlerSpec::Discard => f.write_str("discard"),
            HandlerSpec::Sockperf => f.write_str("sockperf"),
            HandlerSpec::Ack(text) => write!(f, "ack:{}", String::from_utf8_lossy(text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(handler: &mut dyn Handler, request: &[u8]) -> Option<Vec<u8>> {
        let mut reply = vec![0u8; 64];
        let peer = "127.0.0.1:1".parse().unwrap();
        handler
            .handle(request, peer, &mut reply)
            .map(|len| reply[..len].to_vec())
    }

    #[test]
    fn built_ins_answer_as_documented() {
        assert_eq!(run(&mut Echo, b"hi \xff"), Some(b"hi \xff".to_vec()));
        assert_eq!(run(&mut Echo, b""), Some(Vec::new()));
        assert_eq!(run(&mut Upper, b"abc-Z\xe9"), Some(b"ABC-Z\xe9".to_vec()));
        assert_eq!(
            run(&mut Ack::new(b"ok".to_vec()), b"x"),
            Some(b"ok".to_vec())
        );
        assert_eq!(run(&mut Discard, b"x"), None);
    }

    #[test]
    fn train_fast_paths_match_the_per_datagram_answers() {
        let peer = "127.0.0.1:1".parse().unwrap();
        let requests = b"abcdefGHij-k";
        for handler in [&mut Echo as &mut dyn Handler, &mut Upper] {
            let mut whole = vec![0u8; 64];
            assert!(handler.handle_train(requests, 5, peer, &mut whole));
            let mut one_by_one = Vec::new();
            for request in requests.chunks(5) {
                let mut reply = vec![0u8; 64];
                let len = handler.handle(request, peer, &mut reply).unwrap();
                one_by_one.extend_from_slice(&reply[..len]);
            }
            assert_eq!(&whole[..requests.len()], &one_by_one[..]);
            assert!(
                !handler.handle_train(requests, 5, peer, &mut [0u8; 4]),
                "too small a buffer"
            );
        }
        assert!(!Ack::new(b"ok".to_vec()).handle_train(requests, 5, peer, &mut [0u8; 64]));
        assert!(!Discard.handle_train(requests, 5, peer, &mut [0u8; 64]));
        assert!(Echo.echoes_requests());
        assert!(!Upper.echoes_requests() && !Discard.echoes_requests());
    }

    #[test]
    fn specs_parse_and_print() {
        for text in ["echo", "upper", "discard", "sockperf", "ack:hello world"] {
            assert_eq!(text.parse::<HandlerSpec>().unwrap().to_string(), text);
        }
        assert_eq!(
            "ack".parse::<HandlerSpec>().unwrap(),
            HandlerSpec::Ack(b"ACK".to_vec())
        );
        assert!("ACK".parse::<HandlerSpec>().is_err());
        let long = format!("ack:{}", "x".repeat(MAX_UDP_PAYLOAD + 1));
        let error = long.parse::<HandlerSpec>().unwrap_err();
        assert!(
            error.contains("65508 bytes") && error.len() < 200,
            "{error}"
        );
        let unknown = "y".repeat(10_000).parse::<HandlerSpec>().unwrap_err();
        assert!(
            unknown.contains("unknown") && unknown.len() < 200,
            "{unknown}"
        );
    }
}
