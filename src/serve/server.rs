//! A running server: binds (or adopts) every worker socket, starts the workers and the reporter, stops
//! them (at once, or handing the sockets over), and waits for the end.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mio::{Poll, Waker};

use super::guard::{Guard, GuardKey};
use crate::config::ServeConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::handler::Handler;
use crate::serve::worker::{self, WorkerParts, WAKER};
use crate::stats::{self, Interval, Reporter, Summary};

/// A running server: its workers are serving; [`Server::wait`] reports until they stop.
pub struct Server {
    local: SocketAddr,
    shutdown: ShutdownHandle,
    threads: Vec<JoinHandle<()>>,
    reporter: Reporter,
    warnings: Vec<String>,
    /// A second descriptor for each worker socket, in worker order, to hand them over on reload.
    sockets: Vec<OwnedFd>,
    /// With sampled latency: a socket that keeps kernel timestamps on, so that every packet is stamped
    /// on arrival while the worker sockets switch their own timestamps on and off.
    _timestamp_keeper: Option<OwnedFd>,
}

/// Stops every worker of a server: sets the stop flag, then wakes each worker's poll.
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    handed_over: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
}

impl ShutdownHandle {
    /// Stops serving: each worker still answers what is already queued in its socket (briefly), sends
    /// what it can and reports.
    pub fn shutdown(&self) {
        self.stop();
    }

    /// Stops reading at once, because another process now serves the same sockets: each worker sends
    /// the replies it already holds and reports, leaving everything queued to its successor.
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Relaxed);
        self.stop();
    }

    fn stop(&self) {
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
        make_handler: impl FnMut() -> Box<dyn Handler>,
    ) -> Result<Server> {
        Server::start_with(config, make_handler, Vec::new())
    }

    /// [`start`](Self::start), on `inherited` sockets (handed over by a previous udpd on reload, one per
    /// worker) instead of new ones when there are any.
    pub fn start_with(
        config: &ServeConfig,
        mut make_handler: impl FnMut() -> Box<dyn Handler>,
        inherited: Vec<OwnedFd>,
    ) -> Result<Server> {
        let started = Instant::now();
        let mut warnings = Vec::new();
        let mut sockets = Vec::with_capacity(config.workers);
        let mut address = config.listen;
        if inherited.is_empty() {
            refuse_shared_port(config)?;
            for _ in 0..config.workers {
                let socket = super::socket::open(address, config, &mut warnings)?;
                // With port 0 the first socket picks the port; the others join it.
                address = socket.local;
                sockets.push(socket);
            }
        } else {
            if inherited.len() != config.workers {
                return Err(Error::usage(format!(
                    "reload refused: --workers changed from {} to {}, which needs other sockets: restart udpd to apply it",
                    inherited.len(),
                    config.workers
                )));
            }
            for fd in inherited {
                let socket = super::socket::adopt(fd, address, config, &mut warnings)?;
                address = socket.local;
                sockets.push(socket);
            }
        }
        let timestamp_keeper = if config.latency && config.latency_sample > 1 {
            super::socket::timestamp_keeper()
        } else {
            None
        };
        let handover_fds = sockets
            .iter()
            .map(|socket| socket.socket.try_clone().map(OwnedFd::from))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::io(format!("cannot keep a socket for reload: {e}"), e))?;
        // Every socket is bound: nothing below needs privileges.
        super::privilege::drop_to(config.user.as_deref(), config.group.as_deref())?;
        // Every worker's socket reports the same soft problems: say each once.
        let mut seen = std::collections::HashSet::new();
        warnings.retain(|warning| seen.insert(warning.clone()));
        let (reporter, links) = stats::channel(config.workers, config.interval, started);
        let stop = Arc::new(AtomicBool::new(false));
        let handed_over = Arc::new(AtomicBool::new(false));
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
                latency_sample: config.latency_sample,
                handler: make_handler(),
                guard: Guard::new(&config.guard, address.port(), guard_key),
                stats: link,
                interval: config.interval,
                started,
                stop: Arc::clone(&stop),
                handed_over: Arc::clone(&handed_over),
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
            shutdown: ShutdownHandle {
                stop,
                handed_over,
                wakers,
            },
            threads,
            reporter,
            warnings,
            sockets: handover_fds,
            _timestamp_keeper: timestamp_keeper,
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

    /// Descriptors of the worker sockets, in worker order, to hand over to a successor on reload.
    pub fn sockets(&self) -> &[OwnedFd] {
        &self.sockets
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
