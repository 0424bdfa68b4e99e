//! `udpd serve` as a daemon: starts the server (on sockets handed over by a predecessor when there are
//! any), the metrics endpoint and the signal thread, prints the reports, and on SIGHUP hands everything
//! to a fresh udpd process (see [`super::handover`]) so that a reload or an upgrade loses nothing.

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::OwnedFd;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

use super::handover::{self, Inheritance, Launch};
use super::server::{Server, ShutdownHandle};
use crate::config::{ReportFormat, ServeArgs, ServeConfig};
use crate::error::{Error, Result};
use crate::stats::metrics::{self, MetricsText};

/// `udpd serve`: resolve flags, start, print the address, report until SIGINT/SIGTERM (or a handover
/// on SIGHUP), print the summary.
pub fn run_from_args(args: ServeArgs) -> Result<()> {
    let inheritance = Inheritance::from_env()?;
    let config = args.resolve()?;
    serve(&config, inheritance)
}

/// Runs the daemon with a resolved configuration until SIGINT or SIGTERM.
pub fn run(config: &ServeConfig) -> Result<()> {
    serve(config, Inheritance::default())
}

fn serve(config: &ServeConfig, mut inheritance: Inheritance) -> Result<()> {
    let launch = Launch::capture()?;
    // The metrics listener is bound before privileges are dropped, like the UDP sockets.
    let metrics = MetricsText::new(crate::stats::export::initial_prometheus(config.workers));
    let metrics_listener = match (config.metrics, inheritance.metrics.take()) {
        (Some(addr), Some(fd)) => {
            let listener = TcpListener::from(fd);
            let held = listener.local_addr().ok();
            let same = held.is_some_and(|held| {
                held.ip() == addr.ip() && (addr.port() == 0 || addr.port() == held.port())
            });
            if !same {
                return Err(Error::usage(format!(
                    "reload refused: --metrics changed to {addr}, which needs a new listener: restart udpd to apply it"
                )));
            }
            Some(listener)
        }
        (Some(addr), None) => Some(TcpListener::bind(addr).map_err(|e| {
            Error::io(
                format!("cannot serve metrics on {addr}: {e} — choose another --metrics address"),
                e,
            )
        })?),
        (None, _) => None,
    };
    let metrics_fd = match &metrics_listener {
        Some(listener) => Some(OwnedFd::from(listener.try_clone().map_err(|e| {
            Error::io(
                format!("cannot keep the metrics listener for reload: {e}"),
                e,
            )
        })?)),
        None => None,
    };
    if let Some(listener) = metrics_listener {
        let bound = metrics::serve_listener(listener, metrics.clone(), metrics::Limits::default())?;
        eprintln!("udpd: metrics on http://{bound}/metrics");
    }
    let inherited = std::mem::take(&mut inheritance.sockets);
    let server = Server::start_with(config, || config.handler.build(), inherited)?;
    for warning in server.warnings() {
        eprintln!("udpd: warning: {warning}");
    }
    let sockets = server
        .sockets()
        .iter()
        .map(OwnedFd::try_clone)
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io(format!("cannot keep the sockets for reload: {e}"), e))?;
    let reload = Reload {
        launch,
        sockets,
        metrics: metrics_fd,
        shutdown: server.shutdown_handle(),
    };
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])
            .map_err(|e| Error::io(format!("cannot install signal handlers: {e}"), e))?;
    std::thread::Builder::new()
        .name("udpd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGINT | SIGTERM => {
                        reload.shutdown.shutdown();
                        return;
                    }
                    SIGHUP => {
                        if reload.hand_over() {
                            return;
                        }
                    }
                    _ => eprintln!(
                        "udpd: SIGUSR1/SIGUSR2 received: no action is bound to it; still serving"
                    ),
                }
            }
        })
        .map_err(|e| Error::io(format!("cannot start the signal thread: {e}"), e))?;
    let local = server.local_addr();
    print_line(&format!(
        "listening on {local} (udp, {} workers)",
        server.worker_count()
    ));
    let split = server.socket_groups().split();
    if !split.is_empty() {
        let list: Vec<String> = split.iter().map(ToString::to_string).collect();
        eprintln!(
            "udpd: each worker also has a socket on {} (replies without packet info); the wildcard socket serves any other address",
            list.join(", ")
        );
    }
    if let Some(pid) = inheritance.predecessor {
        eprintln!(
            "udpd: took over from pid {pid} as pid {}",
            std::process::id()
        );
    }
    inheritance.announce_ready();
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
            let mut header = format!(
                "{} workers, handler {}, gso {}, gro {}",
                summary.workers.len(),
                config.handler,
                on_off(config.gso),
                on_off(config.gro)
            );
            if config.latency && config.latency_sample > 1 {
                header.push_str(&format!(
                    ", latency sampled above {rate} datagrams/s: timestamps on 1/{n} of the time, each stamped reply counted {n} times ({} of the histogram's {} replies stamped)",
                    summary.total.latency_stamped,
                    summary.total.latency_ns.len(),
                    n = config.latency_sample,
                    rate = config.latency_all_below,
                ));
            }
            print_line(summary.render(&header).trim_end());
        }
        ReportFormat::Json => {
            let settings = serde_json::json!({
                "listen": local.to_string(),
                "workers": summary.workers.len(),
                "handler": config.handler.to_string(),
                "gso": config.gso,
                "gro": config.gro,
                "latency_sample": config.latency_sample,
                "latency_all_below": config.latency_all_below,
            });
            print_line(&crate::stats::export::summary_json(&summary, settings));
        }
    }
    Ok(())
}

/// What a SIGHUP needs: how to start the successor, what to hand it, and how to stop this process.
struct Reload {
    launch: Launch,
    sockets: Vec<OwnedFd>,
    metrics: Option<OwnedFd>,
    shutdown: ShutdownHandle,
}

impl Reload {
    /// Hands over to a fresh process; returns whether it took over (this process then stops reading).
    fn hand_over(&self) -> bool {
        eprintln!("udpd: SIGHUP: reloading (starting a new udpd on the same sockets)");
        match handover::hand_over(&self.launch, &self.sockets, self.metrics.as_ref()) {
            Ok(pid) => {
                eprintln!(
                    "udpd: handed over to pid {pid}; pid {} stops reading, answers what it already read and exits",
                    std::process::id()
                );
                self.shutdown.hand_over();
                true
            }
            Err(error) => {
                eprintln!(
                    "udpd: reload failed: {error}; still serving with the running configuration"
                );
                false
            }
        }
    }
}

/// Writes one report line (or block) to stdout in one write and flushes, so pipes see it at once and a
/// block up to the pipe's atomic size never interleaves with another process's (an old udpd still
/// printing its summary while its successor prints its own).
fn print_line(text: &str) {
    let mut block = String::with_capacity(text.len() + 1);
    block.push_str(text);
    block.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(block.as_bytes());
    let _ = out.flush();
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}
