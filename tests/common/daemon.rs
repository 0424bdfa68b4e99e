//! A running `udpd serve`: started on port 0 with its bound address learnt from the `listening on` line,
//! stopped with SIGTERM into a parsed [`Summary`], killed on drop.

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::process::{Finished, Next, Running};
use super::summary::Summary;

/// Longest wait for the daemon to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the daemon to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `udpd serve`, killed on drop unless stopped with [`Daemon::stop`].
pub struct Daemon {
    /// The address from the `listening on` line (port resolved, address as given).
    pub addr: SocketAddr,
    /// Worker count from the `listening on` line.
    pub workers: usize,
    pub process: Running,
}

impl Daemon {
    /// Starts `udpd serve --listen LISTEN --workers N --no-pin --quiet EXTRA...` and waits (bounded) for its
    /// `listening on ADDR (udp, N workers)` line.
    pub fn start(listen: &str, workers: usize, extra: &[&str]) -> Daemon {
        let workers_text = workers.to_string();
        let mut args = vec![
            "--listen",
            listen,
            "--workers",
            &workers_text,
            "--no-pin",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let daemon = Daemon::launch(&args);
        assert_eq!(
            daemon.workers,
            workers,
            "the listening line names a different worker count; {}",
            daemon.process.output_so_far()
        );
        daemon
    }

    /// `127.0.0.1:0` with `workers` workers.
    pub fn start_v4(workers: usize, extra: &[&str]) -> Daemon {
        Daemon::start("127.0.0.1:0", workers, extra)
    }

    /// Starts `udpd serve ARGS` exactly as given and waits (bounded) for its `listening on` line; panics,
    /// quoting its output, when it exits first.
    pub fn launch(args: &[&str]) -> Daemon {
        match Daemon::try_launch(args) {
            Ok(daemon) => daemon,
            Err(finished) => panic!(
                "udpd serve {args:?} exited (code {}) before listening; stdout: {:?}; stderr: {:?}",
                finished.code, finished.stdout, finished.stderr
            ),
        }
    }

    /// Starts `udpd serve ARGS`: `Ok` once it prints `listening on`, `Err` with how it ended when it exits
    /// first. Panics when it does neither within [`START_TIMEOUT`].
    pub fn try_launch(args: &[&str]) -> Result<Daemon, Finished> {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut process = Running::udpd(&all);
        loop {
            match process.next_stdout(START_TIMEOUT) {
                Next::Line(line) => {
                    if let Some((addr, workers)) = parse_listening(&line) {
                        assert_ne!(
                            addr.port(),
                            0,
                            "the listening line must name the bound port: {line:?}"
                        );
                        return Ok(Daemon {
                            addr,
                            workers,
                            process,
                        });
                    }
                }
                Next::Eof => return Err(process.wait_exit(STOP_TIMEOUT)),
                Next::Timeout => panic!(
                    "printed no `listening on` line within {START_TIMEOUT:?}; {}",
                    process.output_so_far()
                ),
            }
        }
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid().as_raw() as u32
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Sends SIGTERM and waits (bounded) for the exit, without judging it.
    pub fn terminate(mut self) -> Finished {
        self.process.signal(Signal::SIGTERM);
        self.process.wait_exit(STOP_TIMEOUT)
    }

    /// Sends SIGTERM, waits (bounded) for exit, asserts exit code 0 and parses the summary block.
    pub fn stop(self) -> Summary {
        let workers = self.workers;
        let finished = self.terminate();
        assert_eq!(
            finished.code, 0,
            "udpd must exit 0 after SIGTERM, got {}; stdout:\n{}\nstderr:\n{}",
            finished.code, finished.stdout, finished.stderr
        );
        let summary = Summary::parse(&finished.stdout, &finished.stderr);
        assert_eq!(
            summary.workers.len(),
            workers,
            "one `worker N:` line per worker expected; stdout:\n{}",
            finished.stdout
        );
        summary
    }
}

/// Parses `listening on ADDR (udp, N workers)` (also accepts `1 worker`).
pub fn parse_listening(line: &str) -> Option<(SocketAddr, usize)> {
    let rest = line.strip_prefix("listening on ")?;
    let (addr, rest) = rest.split_once(" (udp, ")?;
    let (n, rest) = rest.split_once(' ')?;
    if !rest.starts_with("worker") || !rest.ends_with(')') {
        return None;
    }
    Some((addr.parse().ok()?, n.parse().ok()?))
}
