//! The `--metrics ADDR` endpoint: a tiny HTTP/1.1 server on its own thread that answers every GET with the
//! latest Prometheus text the reporter published. Workers never touch it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// The latest exposition text, replaced by the reporter at each interval.
#[derive(Clone, Default)]
pub struct MetricsText(Arc<Mutex<String>>);

impl MetricsText {
    pub fn publish(&self, text: String) {
        if let Ok(mut current) = self.0.lock() {
            *current = text;
        }
    }

    fn current(&self) -> String {
        self.0.lock().map(|text| text.clone()).unwrap_or_default()
    }
}

/// Binds `addr` and serves `text` from a background thread; returns the bound address.
pub fn serve(addr: SocketAddr, text: MetricsText) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        Error::runtime(format!(
            "cannot serve metrics on {addr}: {e} — choose another --metrics address"
        ))
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    std::thread::Builder::new()
        .name("udpd-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &text);
            }
        })
        .map_err(|e| Error::runtime(format!("cannot start the metrics thread: {e}")))?;
    Ok(local)
}

fn answer(stream: TcpStream, text: &MetricsText) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers: the answer does not depend on them.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 0 && header.trim_end() != "" {
        header.clear();
    }
    let mut stream = reader.into_inner();
    let (status, content_type, body) = if request_line.starts_with("GET ") {
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            text.current(),
        )
    } else {
        (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET is supported\n".to_string(),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
