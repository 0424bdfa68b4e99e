//! Judges one HTTP/1.x request head read so far (under a size limit) and builds the response the metrics
//! endpoint gives it. No I/O here: the server in `metrics.rs` feeds bytes in and writes bytes out.

use std::sync::Arc;

/// What the endpoint answers, decided from the request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `GET /metrics`: the exposition text.
    Metrics { head_only: bool },
    /// `GET /`: a pointer to `/metrics`.
    Index { head_only: bool },
    /// An error status, then close.
    Error(Status),
}

/// The error statuses the endpoint can give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    UriTooLong,
    HeaderFieldsTooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::UriTooLong => "414 URI Too Long",
            Status::HeaderFieldsTooLarge => "431 Request Header Fields Too Large",
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Status::BadRequest => "malformed request line (expected `GET /metrics HTTP/1.1`)\n",
            Status::NotFound => "not found: the metrics are at /metrics\n",
            Status::MethodNotAllowed => "only GET and HEAD are supported\n",
            Status::UriTooLong => "request line too long\n",
            Status::HeaderFieldsTooLarge => "request headers too large\n",
        }
    }
}

/// Judges the request head in `received` (at most `limit` bytes of it are ever kept). `None`: the head is
/// incomplete and still under `limit`, read more. A malformed or oversized request line is answered at
/// once; a well-formed one once its headers end (an empty line), or with 431 when they pass `limit`.
pub fn judge(received: &[u8], limit: usize) -> Option<Answer> {
    let Some(line_end) = received.iter().position(|&b| b == b'\n') else {
        return (received.len() >= limit).then_some(Answer::Error(Status::UriTooLong));
    };
    let answer = route(&received[..line_end]);
    if matches!(answer, Answer::Error(Status::BadRequest)) {
        return Some(answer);
    }
    let mut rest = &received[line_end + 1..];
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        if rest[..end]
            .strip_suffix(b"\r")
            .unwrap_or(&rest[..end])
            .is_empty()
        {
            return Some(answer);
        }
        rest = &rest[end + 1..];
    }
    (received.len() >= limit).then_some(Answer::Error(Status::HeaderFieldsTooLarge))
}

/// What a request line (without its `\n`) asks for.
fn route(line: &[u8]) -> Answer {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Answer::Error(Status::BadRequest);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Answer::Error(Status::BadRequest);
    };
    if method.is_empty() || target.is_empty() || !version.starts_with("HTTP/1.") {
        return Answer::Error(Status::BadRequest);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Answer::Error(Status::MethodNotAllowed),
    };
    // Absolute form (`http://host/metrics`), as a proxy would send it, names the same path.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None => target,
    };
    match target.split('?').next().unwrap_or_default() {
        "/metrics" => Answer::Metrics { head_only },
        "/" => Answer::Index { head_only },
        _ => Answer::Error(Status::NotFound),
    }
}

/// A response being written: the status line and headers, then the body.
pub struct Response {
    head: Vec<u8>,
    body: Body,
    /// Bytes of `head` then `body` already written.
    written: usize,
}

enum Body {
    /// The published exposition text, shared with the publisher (no copy per scrape).
    Shared(Arc<String>),
    Static(&'static str),
    None,
}

impl Body {
    fn bytes(&self) -> &[u8] {
        match self {
            Body::Shared(text) => text.as_bytes(),
            Body::Static(text) => text.as_bytes(),
            Body::None => &[],
        }
    }
}

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

impl Response {
    /// The response to `answer`; `text` is the latest exposition (empty: nothing published yet, 503).
    pub fn to(answer: Answer, text: Arc<String>) -> Response {
        match answer {
            Answer::Metrics { head_only } if text.is_empty() => Response::new(
                "503 Service Unavailable",
                TEXT_TYPE,
                Body::Static("no metrics published yet\n"),
                head_only,
                "Retry-After: 1\r\n",
            ),
            Answer::Metrics { head_only } => {
                Response::new("200 OK", METRICS_TYPE, Body::Shared(text), head_only, "")
            }
            Answer::Index { head_only } => Response::new(
                "200 OK",
                TEXT_TYPE,
                Body::Static("udpd: metrics at /metrics\n"),
                head_only,
                "",
            ),
            Answer::Error(status) => Response::new(
                status.line(),
                TEXT_TYPE,
                Body::Static(status.explanation()),
                false,
                if status == Status::MethodNotAllowed {
                    "Allow: GET, HEAD\r\n"
                } else {
                    ""
                },
            ),
        }
    }

    fn new(status: &str, kind: &str, body: Body, head_only: bool, extra: &str) -> Response {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.bytes().len()
        )
        .into_bytes();
        let body = if head_only { Body::None } else { body };
        Response {
            head,
            body,
            written: 0,
        }
    }

    /// The bytes not yet written (head first, then body); empty when done.
    pub fn unwritten(&self) -> &[u8] {
        match self.written.checked_sub(self.head.len()) {
            None => &self.head[self.written..],
            Some(into_body) => self.body.bytes().get(into_body..).unwrap_or_default(),
        }
    }

    /// Records that `n` more bytes of [`Response::unwritten`] went out.
    pub fn advance(&mut self, n: usize) {
        self.written += n;
    }

    pub fn is_done(&self) -> bool {
        self.written >= self.head.len() + self.body.bytes().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 64;

    #[test]
    fn a_complete_get_is_routed_by_path() {
        assert_eq!(
            judge(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", LIMIT),
            Some(Answer::Metrics { head_only: false })
        );
        assert_eq!(
            judge(b"HEAD /metrics?x=1 HTTP/1.0\n\n", LIMIT),
            Some(Answer::Metrics { head_only: true })
        );
        assert_eq!(
            judge(b"GET http://h:9/metrics HTTP/1.1\r\n\r\n", LIMIT),
            Some(Answer::Metrics { head_only: false })
        );
        assert_eq!(
            judge(b"GET / HTTP/1.1\r\n\r\n", LIMIT),
            Some(Answer::Index { head_only: false })
        );
        assert_eq!(
            judge(b"GET /other HTTP/1.1\r\n\r\n", LIMIT),
            Some(Answer::Error(Status::NotFound))
        );
        assert_eq!(
            judge(b"POST /metrics HTTP/1.1\r\n\r\n", LIMIT),
            Some(Answer::Error(Status::MethodNotAllowed))
        );
    }

    #[test]
    fn an_incomplete_head_asks_for_more_until_the_limit() {
        assert_eq!(judge(b"GET /metr", LIMIT), None);
        assert_eq!(judge(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", LIMIT), None);
        assert_eq!(
            judge(&[b'A'; LIMIT], LIMIT),
            Some(Answer::Error(Status::UriTooLong))
        );
        let mut long_headers = b"GET /metrics HTTP/1.1\r\n".to_vec();
        long_headers.resize(LIMIT, b'h');
        assert_eq!(
            judge(&long_headers, LIMIT),
            Some(Answer::Error(Status::HeaderFieldsTooLarge))
        );
    }

    #[test]
    fn malformed_request_lines_get_400_at_once() {
        for line in [
            &b"\xff\xfe /metrics HTTP/1.1\r\n"[..],
            b"GET /metrics\r\n",
            b"GET  /metrics HTTP/1.1\r\n",
            b"GET /metrics SPDY/3\r\n",
            b"\r\n",
        ] {
            assert_eq!(
                judge(line, LIMIT),
                Some(Answer::Error(Status::BadRequest)),
                "{line:?}"
            );
        }
    }

    fn written(mut response: Response) -> String {
        let mut out = Vec::new();
        while !response.is_done() {
            let chunk = response
                .unwritten()
                .iter()
                .take(7)
                .copied()
                .collect::<Vec<_>>();
            out.extend_from_slice(&chunk);
            response.advance(chunk.len());
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn responses_carry_length_and_body_written_in_pieces() {
        let text = Arc::new("udpd_rx_total 1\n".to_string());
        let ok = written(Response::to(
            Answer::Metrics { head_only: false },
            text.clone(),
        ));
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 16\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nudpd_rx_total 1\n"), "{ok}");
        let head = written(Response::to(Answer::Metrics { head_only: true }, text));
        assert!(head.ends_with("Content-Length: 16\r\nConnection: close\r\n\r\n"));
        let unpublished = written(Response::to(
            Answer::Metrics { head_only: false },
            Arc::default(),
        ));
        assert!(unpublished.starts_with("HTTP/1.1 503 "), "{unpublished}");
        let refused = written(Response::to(
            Answer::Error(Status::MethodNotAllowed),
            Arc::default(),
        ));
        assert!(refused.starts_with("HTTP/1.1 405 "), "{refused}");
        assert!(refused.contains("Allow: GET, HEAD\r\n"), "{refused}");
    }
}
