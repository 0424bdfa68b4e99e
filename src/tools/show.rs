//! How the tools print datagrams: payloads escaped into one printable line, and the client's reply,
//! late-reply and ping-summary lines.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};

/// `N sent, N received, X% loss, rtt min/avg/max = a/b/c ms`.
pub fn summary_line(sent: u64, rtts: &[Duration]) -> String {
    let received = rtts.len() as u64;
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * (sent.saturating_sub(received)) as f64 / sent as f64
    };
    let loss = format!("{loss:.1}");
    let loss = loss.strip_suffix(".0").unwrap_or(&loss);
    let rtt = if rtts.is_empty() {
        "-/-/-".to_string()
    } else {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let min = rtts.iter().copied().map(ms).fold(f64::INFINITY, f64::min);
        let max = rtts.iter().copied().map(ms).fold(0.0, f64::max);
        let avg = rtts.iter().copied().map(ms).sum::<f64>() / rtts.len() as f64;
        format!("{min:.3}/{avg:.3}/{max:.3}")
    };
    format!("{sent} sent, {received} received, {loss}% loss, rtt min/avg/max = {rtt} ms")
}

/// `reply from ADDR (N bytes, RTT ms): TEXT`.
pub fn reply_line(from: SocketAddr, payload: &[u8], rtt: Duration) -> String {
    let text = escape_payload(payload);
    let sep = if text.is_empty() { ":" } else { ": " };
    format!(
        "reply from {from} ({} bytes, {:.3} ms){sep}{text}",
        payload.len(),
        rtt.as_secs_f64() * 1e3
    )
}

/// `late reply from ADDR (N bytes): TEXT`, for a reply whose request was already given up on.
pub fn late_line(from: SocketAddr, payload: &[u8]) -> String {
    let text = escape_payload(payload);
    let sep = if text.is_empty() { ":" } else { ": " };
    format!(
        "late reply from {from} ({} bytes){sep}{text}",
        payload.len()
    )
}

/// A payload as one printable line: valid UTF-8 text as is, control characters, backslashes and bytes that
/// are not UTF-8 escaped (`\n`, `\\`, `\u{1b}`, `\xff`), so a reply can never garble the terminal.
pub fn escape_payload(payload: &[u8]) -> String {
    let mut text = String::with_capacity(payload.len());
    for chunk in payload.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                text.extend(c.escape_default());
            } else {
                text.push(c);
            }
        }
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

pub fn print_line(out: &mut impl Write, line: &str) -> Result<()> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

pub fn stdout_error(e: io::Error) -> Error {
    Error::runtime(format!("writing to stdout failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_text_and_escapes_the_rest() {
        assert_eq!(escape_payload(b"hello"), "hello");
        assert_eq!(escape_payload("héllo".as_bytes()), "héllo");
        assert_eq!(escape_payload(b"a\nb\x1b"), "a\\nb\\u{1b}");
        assert_eq!(escape_payload(b"\xff\xfeok"), "\\xff\\xfeok");
        assert_eq!(escape_payload(b"a\\b"), "a\\\\b");
        assert_eq!(escape_payload(b""), "");
    }

    #[test]
    fn summary_counts_loss_and_rtt() {
        let ms = Duration::from_millis;
        assert_eq!(
            summary_line(3, &[ms(1), ms(2), ms(3)]),
            "3 sent, 3 received, 0% loss, rtt min/avg/max = 1.000/2.000/3.000 ms"
        );
        assert_eq!(
            summary_line(3, &[ms(2)]),
            "3 sent, 1 received, 66.7% loss, rtt min/avg/max = 2.000/2.000/2.000 ms"
        );
        assert_eq!(
            summary_line(2, &[]),
            "2 sent, 0 received, 100% loss, rtt min/avg/max = -/-/- ms"
        );
    }
}
