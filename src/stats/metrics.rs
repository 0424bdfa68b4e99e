//! The `--metrics ADDR` endpoint: one thread running a non-blocking HTTP/1.1 server that answers
//! `GET /metrics` with the latest Prometheus text the reporter published. Workers never touch it.
//!
//! Hostile clients cannot stall it or grow it: every connection is non-blocking in one event loop (an idle
//! or slow client holds a slot, never the thread); at most [`Limits::max_connections`] are open (at the cap
//! the oldest is closed to admit the newest, so connections held open cannot lock out a scrape); a request
//! head is kept up to [`Limits::max_request_bytes`] (then 414/431 and close); each phase of a connection
//! (request, then response) has [`Limits::deadline`], after which it is closed. Memory is bounded by
//! `max_connections × max_request_bytes` plus the shared exposition text.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::error::{Error, Result};
use crate::stats::http::{judge, Response};

/// The latest exposition text, replaced by the reporter at each interval. Empty means "nothing published
/// yet" and is answered 503; give [`MetricsText::new`] the all-zero exposition to serve it from the start.
#[derive(Clone, Default)]
pub struct MetricsText(Arc<Mutex<Arc<String>>>);

impl MetricsText {
    /// Starts out serving `initial` (for example the exposition of all-zero counters).
    pub fn new(initial: String) -> MetricsText {
        MetricsText(Arc::new(Mutex::new(Arc::new(initial))))
    }

    pub fn publish(&self, text: String) {
        let text = Arc::new(text);
        match self.0.lock() {
            Ok(mut current) => *current = text,
            Err(poisoned) => *poisoned.into_inner() = text,
        }
    }

    fn current(&self) -> Arc<String> {
        match self.0.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// How much any client may take of the endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once; at the cap, accepting one closes the oldest.
    pub max_connections: usize,
    /// Request line plus headers; beyond it the client gets 414 or 431 and is closed.
    pub max_request_bytes: usize,
    /// Time to send the request head, and again to take the response; then the connection is closed.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_request_bytes: 8 * 1024,
            deadline: Duration::from_secs(2),
        }
    }
}

/// After the response, what a client may still send (a request body, the rest of an oversized line) is
/// read and discarded up to this much, so that closing does not reset the connection under the response.
const DRAIN_BYTES: usize = 64 * 1024;
/// How long to wait before retrying `accept` after the process ran out of file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
const LISTENER: Token = Token(usize::MAX);

/// Binds `addr` and serves `text` from a background thread with [`Limits::default`]; returns the bound
/// address.
pub fn serve(addr: SocketAddr, text: MetricsText) -> Result<SocketAddr> {
    serve_with(addr, text, Limits::default())
}

/// [`serve`] under explicit `limits`.
pub fn serve_with(addr: SocketAddr, text: MetricsText, limits: Limits) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::runtime(format!(
            "cannot serve metrics on {addr}: {e} — choose another --metrics address"
        ))
    })?;
    serve_listener(listener, text, limits)
}

/// Serves `text` on an already bound listener (one handed over by a previous udpd on reload).
pub fn serve_listener(
    listener: std::net::TcpListener,
    text: MetricsText,
    limits: Limits,
) -> Result<SocketAddr> {
    let local = listener
        .local_addr()
        .map_err(|e| Error::runtime(format!("cannot read the metrics address: {e}")))?;
    let setup = |e: std::io::Error| Error::runtime(format!("cannot start the metrics server: {e}"));
    listener.set_nonblocking(true).map_err(setup)?;
    let mut listener = TcpListener::from_std(listener);
    let poll = Poll::new().map_err(setup)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(setup)?;
    let mut server = Server {
        poll,
        listener,
        text,
        limits: Limits {
            max_connections: limits.max_connections.max(1),
            max_request_bytes: limits.max_request_bytes.max(64),
            deadline: limits.deadline,
        },
        connections: Vec::new(),
        free: Vec::new(),
        accept_retry_at: None,
    };
    std::thread::Builder::new()
        .name("udpd-metrics".into())
        .spawn(move || server.run())
        .map_err(|e| Error::runtime(format!("cannot start the metrics thread: {e}")))?;
    Ok(local)
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    text: MetricsText,
    limits: Limits,
    /// Open connections; a connection's token is its index here.
    connections: Vec<Option<Connection>>,
    /// Indexes of `connections` that are empty.
    free: Vec<usize>,
    /// Set when `accept` failed for lack of resources: retry then, even without a new event.
    accept_retry_at: Option<Instant>,
}

struct Connection {
    stream: TcpStream,
    accepted: Instant,
    deadline: Instant,
    phase: Phase,
}

enum Phase {
    /// Reading the request head (never more than `max_request_bytes`).
    Request(Vec<u8>),
    Response(Response),
    /// Response sent and write side shut: discarding what the client still sends, until it closes.
    Drain {
        discarded: usize,
    },
}

impl Server {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self
                .next_wakeup()
                .map(|at| at.saturating_duration_since(Instant::now()) + Duration::from_millis(1));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    std::thread::sleep(ACCEPT_RETRY);
                }
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    Token(index) => self.drive(index),
                }
            }
            let now = Instant::now();
            if self.accept_retry_at.is_some_and(|at| at <= now) {
                self.accept_retry_at = None;
                self.accept_all();
            }
            for index in 0..self.connections.len() {
                if self.connections[index]
                    .as_ref()
                    .is_some_and(|c| c.deadline <= now)
                {
                    self.close(index);
                }
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        self.connections
            .iter()
            .flatten()
            .map(|c| c.deadline)
            .chain(self.accept_retry_at)
            .min()
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if out_of_resources(&e) => {
                    // Free a descriptor for the newcomer if we hold any; otherwise try again shortly.
                    if !self.close_oldest() {
                        self.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY);
                        return;
                    }
                }
                // The client gave up before we accepted it: next one.
                Err(e) if gone_before_accept(&e) => continue,
                Err(_) => {
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream) {
        if self.open() >= self.limits.max_connections {
            self.close_oldest();
        }
        let index = self.free.pop().unwrap_or_else(|| {
            self.connections.push(None);
            self.connections.len() - 1
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut stream, Token(index), interest)
            .is_err()
        {
            self.free.push(index);
            return;
        }
        let now = Instant::now();
        self.connections[index] = Some(Connection {
            stream,
            accepted: now,
            deadline: now + self.limits.deadline,
            phase: Phase::Request(Vec::new()),
        });
    }

    fn open(&self) -> usize {
        self.connections.len() - self.free.len()
    }

    /// Closes the connection accepted first; false when none is open.
    fn close_oldest(&mut self) -> bool {
        let oldest = self
            .connections
            .iter()
            .enumerate()
            .filter_map(|(index, c)| Some((c.as_ref()?.accepted, index)))
            .min();
        match oldest {
            Some((_, index)) => {
                self.close(index);
                true
            }
            None => false,
        }
    }

    fn close(&mut self, index: usize) {
        if let Some(mut connection) = self.connections.get_mut(index).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
            self.free.push(index);
        }
    }

    /// Makes all the progress the socket allows on connection `index`, closing it when it is done.
    fn drive(&mut self, index: usize) {
        let Some(connection) = self.connections.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if connection.advance(&self.text, &self.limits) == Progress::Finished {
            self.close(index);
        }
    }
}

#[derive(PartialEq, Eq)]
enum Progress {
    /// Waiting for the socket (or the deadline).
    Waiting,
    /// Close the connection.
    Finished,
}

impl Connection {
    fn advance(&mut self, text: &MetricsText, limits: &Limits) -> Progress {
        loop {
            match &mut self.phase {
                Phase::Request(received) => {
                    let room = limits.max_request_bytes.saturating_sub(received.len());
                    let mut chunk = [0u8; 4096];
                    let want = room.min(chunk.len());
                    match self.stream.read(&mut chunk[..want]) {
                        Ok(0) => return Progress::Finished,
                        Ok(n) => received.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return waiting_or_finished(&e),
                    }
                    if let Some(answer) = judge(received, limits.max_request_bytes) {
                        self.phase = Phase::Response(Response::to(answer, text.current()));
                        self.deadline = Instant::now() + limits.deadline;
                    }
                }
                Phase::Response(response) => {
                    if response.is_done() {
                        let _ = self.stream.shutdown(Shutdown::Write);
                        self.phase = Phase::Drain { discarded: 0 };
                        continue;
                    }
                    match self.stream.write(response.unwritten()) {
                        Ok(0) => return Progress::Finished,
                        Ok(n) => response.advance(n),
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return waiting_or_finished(&e),
                    }
                }
                Phase::Drain { discarded } => {
                    let mut chunk = [0u8; 4096];
                    match self.stream.read(&mut chunk) {
                        Ok(0) => return Progress::Finished,
                        Ok(n) => {
                            *discarded += n;
                            if *discarded > DRAIN_BYTES {
                                return Progress::Finished;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return waiting_or_finished(&e),
                    }
                }
            }
        }
    }
}

fn waiting_or_finished(e: &std::io::Error) -> Progress {
    match e.kind() {
        ErrorKind::WouldBlock => Progress::Waiting,
        _ => Progress::Finished,
    }
}

fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn gone_before_accept(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::ECONNRESET | libc::EPERM)
    )
}
