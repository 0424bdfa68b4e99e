//! A running server: binds (or adopts) every worker socket, starts the workers and the reporter, stops
//! them (at once, or handing the sockets over), and waits for the end.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mio::{Poll, Waker};

use super::addresses::{self, SocketGroups};
use super::guard::{Guard, GuardKey};
use super::socket::WorkerSocket;
use super::stamps::{StampWindows, WorkerStamps};
use crate::config::ServeConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::handler::Handler;
use crate::serve::worker::{self, WorkerParts, WAKER};
use crate::stats::{self, Interval, Reporter, Summary};

/// A running server: its workers are serving; [`Server::wait`] reports until they stop.
pub struct Server {
    local: SocketAddr,
    workers: usize,
    groups: SocketGroups,
    shutdown: ShutdownHandle,
    threads: Vec<JoinHandle<()>>,
    reporter: Reporter,
    warnings: Vec<String>,
    /// A second descriptor for each worker socket, group after group and in worker order within each, to
    /// hand them over on reload.
    sockets: Vec<OwnedFd>,
    /// With sampled latency: the thread that opens and closes the timestamp windows (stops when dropped).
    _stamp_windows: Option<StampWindows>,
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
        let (groups, sockets) = if inherited.is_empty() {
            refuse_shared_port(config)?;
            open_groups(config, &mut warnings)?
        } else {
            adopt_groups(config, inherited, &mut warnings)?
        };
        let address = sockets[0].local;
        let (stamp_windows, stamps) = if config.latency && sockets[0].features.timestamps {
            StampWindows::start(
                config.latency_sample,
                config.latency_all_below as u64,
                sockets.len(),
                &mut warnings,
            )
        } else {
            (None, Vec::new())
        };
        let mut stamps = stamps.into_iter();
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
        // Thread `g * workers + w` serves group g for worker w, and reports as worker w.
        let owners: Vec<usize> = (0..sockets.len()).map(|t| t % config.workers).collect();
        let (reporter, links) = stats::channel_for(&owners, config.interval, started);
        let stop = Arc::new(AtomicBool::new(false));
        let handed_over = Arc::new(AtomicBool::new(false));
        let mut wakers = Vec::with_capacity(sockets.len());
        let mut parts = Vec::with_capacity(sockets.len());
        // One random key for every worker's rate-limit table, so no one can aim hash collisions.
        let guard_key = GuardKey::random();
        for (thread, (socket, link)) in sockets.into_iter().zip(links).enumerate() {
            let index = thread % config.workers;
            let poll = Poll::new()
                .map_err(|e| Error::io(format!("cannot create an event loop: {e}"), e))?;
            let waker = Waker::new(poll.registry(), WAKER)
                .map_err(|e| Error::io(format!("cannot create a waker: {e}"), e))?;
            wakers.push(Arc::new(waker));
            parts.push(WorkerParts {
                index,
                group: thread / config.workers,
                socket,
                poll,
                cpu: config.cpus.as_ref().map(|cpus| cpus[index % cpus.len()]),
                batch: config.batch,
                max_datagram: config.max_datagram,
                stamps: stamps.next().unwrap_or_else(WorkerStamps::unsampled),
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
            let name = match part.group {
                0 => format!("udpd-worker-{}", part.index),
                group => format!("udpd-worker-{}.{group}", part.index),
            };
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker::run(part))
                .map_err(|e| Error::io(format!("cannot start a worker thread: {e}"), e))?;
            threads.push(thread);
        }
        Ok(Server {
            local: address,
            workers: config.workers,
            groups,
            shutdown: ShutdownHandle {
                stop,
                handed_over,
                wakers,
            },
            threads,
            reporter,
            warnings,
            sockets: handover_fds,
            _stamp_windows: stamp_windows,
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Workers (each serves every socket group, with one thread per group).
    pub fn worker_count(&self) -> usize {
        self.workers
    }

    /// The addresses the workers' sockets are bound to: the listen address, then any split off it.
    pub fn socket_groups(&self) -> &SocketGroups {
        &self.groups
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

/// Binds one socket per worker for each group of the plan for `config`, the listen address first (with
/// port 0 its first socket picks the port the others join). A split address that cannot be bound is
/// left to the wildcard, with a warning.
fn open_groups(
    config: &ServeConfig,
    warnings: &mut Vec<String>,
) -> Result<(SocketGroups, Vec<WorkerSocket>)> {
    let found = if config.address_sockets {
        addresses::local_ipv4_addresses()
    } else {
        Vec::new()
    };
    let (mut groups, note) = SocketGroups::plan(config.listen, config.address_sockets, &found);
    warnings.extend(note);
    let mut sockets = Vec::with_capacity(groups.count() * config.workers);
    let mut address = config.listen;
    for _ in 0..config.workers {
        let socket = super::socket::open(address, config, warnings)?;
        address = socket.local;
        sockets.push(socket);
    }
    let port = address.port();
    let mut unbound = Vec::new();
    for at in groups.addresses(port).skip(1) {
        let group: Result<Vec<_>> = (0..config.workers)
            .map(|_| super::socket::open(at, config, warnings))
            .collect();
        match group {
            Ok(group) => sockets.extend(group),
            Err(error) => {
                warnings.push(format!(
                    "{at} cannot have its own sockets ({error}): the wildcard socket serves it, with packet info"
                ));
                unbound.push(at.ip());
            }
        }
    }
    groups.retain(|ip| !unbound.contains(&std::net::IpAddr::V4(ip)));
    Ok((groups, sockets))
}

/// Adopts the sockets a previous udpd handed over on reload, in their groups (which must fit `config`).
fn adopt_groups(
    config: &ServeConfig,
    inherited: Vec<OwnedFd>,
    warnings: &mut Vec<String>,
) -> Result<(SocketGroups, Vec<WorkerSocket>)> {
    let bound = inherited
        .iter()
        .map(super::socket::bound_address)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            Error::runtime(
                "an inherited descriptor is not a bound UDP socket: restart udpd instead",
            )
        })?;
    let groups =
        SocketGroups::of_inherited(config.listen, config.workers, &bound).map_err(Error::usage)?;
    if groups.is_only_listen() && config.address_sockets && addresses::splits(config.listen) {
        warnings.push(
            "the sockets handed over are the wildcard's only (from an older udpd, or one started with --no-address-sockets): the local addresses get their own sockets at the next restart".into(),
        );
    }
    if !groups.is_only_listen() && !config.address_sockets {
        return Err(Error::usage(
            "reload refused: --no-address-sockets needs other sockets than the ones handed over: restart udpd to apply it",
        ));
    }
    let sockets = inherited
        .into_iter()
        .zip(bound)
        .map(|(fd, at)| super::socket::adopt(fd, at, config, warnings))
        .collect::<Result<Vec<_>>>()?;
    Ok((groups, sockets))
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
