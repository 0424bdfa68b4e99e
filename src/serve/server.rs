//! Starts the workers and the reporter, wires up signals, and waits for the end.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mio::{Poll, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

use super::guard::{Guard, GuardKey};
use crate::config::ReportFormat;
use crate::config::{ServeArgs, ServeConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::handler::Handler;
use crate::serve::worker::{self, WorkerParts, WAKER};
use crate::stats::metrics::MetricsText;
use crate::stats::{self, Interval, Reporter, Summary};

/// A running server: its workers are serving; [`Server::wait`] reports until they stop.
pub struct Server {
    local: SocketAddr,
    shutdown: ShutdownHandle,
    threads: Vec<JoinHandle<()>>,
    reporter: Reporter,
    warnings: Vec<String>,
}

/// Stops every worker of a server: sets the stop flag, then wakes each worker's poll.
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }
}

impl Server {
    /// Binds every worker socket (failing before any thread starts) and starts the workers.
    /// `make_handler` is called once per worker.
    pub fn start(
        config: &ServeConfig,
        mut make_handler: impl FnMut() -> Box<dyn Handler>,
    ) -> Result<Server> {
        let started = Instant::now();
        let mut warnings = Vec::new();
        refuse_shared_port(config)?;
        let mut sockets = Vec::with_capacity(config.workers);
        let mut address = config.listen;
        for _ in 0..config.workers {
            let socket = crate::serve::socket::open(address, config, &mut warnings)?;
            // With port 0 the first socket picks the port; the others join it.
            address = socket.local;
            sockets.push(socket);
        }
        // Every socket is bound: nothing below needs privileges.
        super::privilege::drop_to(config.user.as_deref(), config.group.as_deref())?;
        // Every worker's socket reports the same soft problems: say each once.
        let mut seen = std::collections::HashSet::new();
        warnings.retain(|warning| seen.insert(warning.clone()));
        let (reporter, links) = stats::channel(config.workers, config.interval, started);
        let stop = Arc::new(AtomicBool::new(false));
        let mut wakers = Vec::with_capacity(config.workers);
        let mut parts = Vec::with_capacity(config.workers);
        // One random key for every worker's rate-limit table, so no one can aim hash collisions.
        let guard_key = GuardKey::random();
        for (index, (socket, link)) in sockets.into_iter().zip(links).enumerate() {
            let poll = Poll::new()
                .map_err(|e| Error::io(format!("cannot create an event loop: {e}"), e))?;
            let waker = Waker::new(poll.registry(), WAKER)
                .map_err(|e| Error::io(format!("cannot create a waker: {e}"), e))?;
            wakers.push(Arc::new(waker));
            parts.push(WorkerParts {
                index,
                socket,
                poll,
                cpu: config.cpus.as_ref().map(|cpus| cpus[index % cpus.len()]),
                batch: config.batch,
                max_datagram: config.max_datagram,
                handler: make_handler(),
                guard: Guard::new(&config.guard, address.port(), guard_key),
                stats: link,
                interval: config.interval,
                started,
                stop: Arc::clone(&stop),
            });
        }
        let mut threads = Vec::with_capacity(parts.len());
        for part in parts {
            let name = format!("udpd-worker-{}", part.index);
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker::run(part))
                .map_err(|e| Error::io(format!("cannot start a worker thread: {e}"), e))?;
            threads.push(thread);
        }
        Ok(Server {
            local: address,
            shutdown: ShutdownHandle { stop, wakers },
            threads,
            reporter,
            warnings,
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn worker_count(&self) -> usize {
        self.threads.len()
    }

    /// Soft problems found while opening sockets (capped buffers, missing offloads), one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Hands each finished interval to `on_interval` until every worker has stopped, then returns the totals.
    pub fn wait(self, on_interval: impl FnMut(&Interval<'_>)) -> Summary {
        let summary = self.reporter.run(on_interval);
        for thread in self.threads {
            let _ = thread.join();
        }
        summary
    }
}

/// `udpd serve`: resolve flags, start, print the address, report until SIGINT/SIGTERM, print the summary.
pub fn run_from_args(args: ServeArgs) -> Result<()> {
    let config = args.resolve()?;
    run(&config)
}

/// Runs the daemon with a resolved configuration until SIGINT or SIGTERM.
pub fn run(config: &ServeConfig) -> Result<()> {
    // The metrics listener is bound before privileges are dropped, like the UDP sockets.
    let metrics = MetricsText::new(crate::stats::export::initial_prometheus(config.workers));
    if let Some(addr) = config.metrics {
        let bound = crate::stats::metrics::serve(addr, metrics.clone())?;
        eprintln!("udpd: metrics on http://{bound}/metrics");
    }
    let server = Server::start(config, || config.handler.build())?;
    for warning in server.warnings() {
        eprintln!("udpd: warning: {warning}");
    }
    let shutdown = server.shutdown_handle();
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])
            .map_err(|e| Error::io(format!("cannot install signal handlers: {e}"), e))?;
    std::thread::Builder::new()
        .name("udpd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGINT || signal == SIGTERM {
                    shutdown.shutdown();
                    return;
                }
                let name = if signal == SIGHUP { "SIGHUP" } else { "SIGUSR1/SIGUSR2" };
                eprintln!(
                    "udpd: {name} received: no action is bound to it yet; still serving with the running configuration"
                );
            }
        })
        .map_err(|e| Error::io(format!("cannot start the signal thread: {e}"), e))?;
    let local = server.local_addr();
    print_line(&format!(
        "listening on {local} (udp, {} workers)",
        server.worker_count()
    ));
    let summary = server.wait(|interval| {
        if config.metrics.is_some() {
            metrics.publish(crate::stats::export::prometheus(
                interval.totals,
                interval.stats,
            ));
        }
        if !config.quiet {
            print_line(&match config.format {
                ReportFormat::Text => interval.text_line(),
                ReportFormat::Json => crate::stats::export::interval_json(interval),
            });
        }
    });
    match config.format {
        ReportFormat::Text => {
            let header = format!(
                "{} workers, handler {}, gso {}, gro {}",
                summary.workers.len(),
                config.handler,
                on_off(config.gso),
                on_off(config.gro)
            );
            print_line(summary.render(&header).trim_end());
        }
        ReportFormat::Json => {
            let settings = serde_json::json!({
                "listen": local.to_string(),
                "workers": summary.workers.len(),
                "handler": config.handler.to_string(),
                "gso": config.gso,
                "gro": config.gro,
            });
            print_line(&crate::stats::export::summary_json(&summary, settings));
        }
    }
    Ok(())
}

/// Refuses to join a port that other sockets already serve (any process of the same user may join an
/// `SO_REUSEPORT` group, and the kernel would then split the traffic between the two), unless
/// `--share-port` asks for exactly that.
fn refuse_shared_port(config: &ServeConfig) -> Result<()> {
    if config.share_port || config.listen.port() == 0 {
        return Ok(());
    }
    let others = super::proc_net::sockets_sharing(config.listen);
    if others == 0 {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::AddressInUse,
        format!(
            "cannot listen on {}: address in use by {others} other socket(s) (another udpd?), which would share its traffic: stop them, choose another --listen port, or pass --share-port to join them",
            config.listen
        ),
    ))
}

/// Writes one report line (or block) to stdout and flushes, so pipes see it at once.
fn print_line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}
