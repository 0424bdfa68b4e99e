//! Reload and upgrade without losing a datagram: on SIGHUP the bound sockets are handed to a freshly
//! started udpd (the same binary path, so an upgraded binary is picked up, with the same arguments, so
//! the configuration file is read again). The successor adopts the sockets, starts its workers and says
//! it is ready; only then does the old process stop reading. The sockets never close, so nothing queued
//! in them is lost and nothing arriving meanwhile finds no socket.
//!
//! The descriptors travel by inheritance across `execve`: their numbers are passed in environment
//! variables, with a pipe on which the successor writes `ready`. Under systemd (`Type=notify`) the
//! successor also sends `MAINPID=` and `READY=1`, so the service stays tracked.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys;

/// Descriptor numbers of the inherited worker sockets, comma-separated, in `Server::sockets` order (socket
/// group after group, worker order within each).
const SOCKETS_VAR: &str = "UDPD_INHERITED_SOCKETS";
/// Descriptor number of the inherited metrics listener.
const METRICS_VAR: &str = "UDPD_INHERITED_METRICS";
/// Descriptor number of the pipe on which the successor says it serves.
const READY_VAR: &str = "UDPD_READY_FD";
/// Process id of the process handing over (for the log line).
const PREDECESSOR_VAR: &str = "UDPD_PREDECESSOR";
/// How long the successor may take to start serving before the reload is called off.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const READY_WORD: &[u8] = b"ready\n";

/// How this process was started, captured at start so that a reload runs the same path and arguments.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Launch {
    /// The running binary's path and this process's arguments.
    pub fn capture() -> Result<Launch> {
        let program = std::env::current_exe()
            .map_err(|e| Error::io(format!("cannot find the udpd binary's path: {e}"), e))?;
        Ok(Launch {
            program,
            args: std::env::args_os().skip(1).collect(),
        })
    }
}

/// What a successor inherited from the process that handed over (empty for a fresh start).
#[derive(Debug, Default)]
pub struct Inheritance {
    pub sockets: Vec<OwnedFd>,
    pub metrics: Option<OwnedFd>,
    pub predecessor: Option<u32>,
    ready: Option<OwnedFd>,
}

impl Inheritance {
    /// Reads (and removes) the handover variables, taking ownership of the descriptors they name.
    pub fn from_env() -> Result<Inheritance> {
        let take = |name: &str| {
            let value = std::env::var(name).ok();
            std::env::remove_var(name);
            value
        };
        let adopt = |text: &str| -> Result<OwnedFd> {
            let number = text.trim().parse::<i32>().map_err(|_| {
                Error::runtime(format!("{text:?} is not a descriptor number (handover)"))
            })?;
            sys::adopt_inherited_fd(number).map_err(|e| {
                Error::io(
                    format!("cannot adopt inherited descriptor {number}: {e}"),
                    e,
                )
            })
        };
        let mut inheritance = Inheritance {
            predecessor: take(PREDECESSOR_VAR).and_then(|pid| pid.parse().ok()),
            ..Inheritance::default()
        };
        if let Some(list) = take(SOCKETS_VAR) {
            for number in list.split(',').filter(|n| !n.is_empty()) {
                inheritance.sockets.push(adopt(number)?);
            }
        }
        if let Some(number) = take(METRICS_VAR) {
            inheritance.metrics = Some(adopt(&number)?);
        }
        if let Some(number) = take(READY_VAR) {
            inheritance.ready = Some(adopt(&number)?);
        }
        Ok(inheritance)
    }

    /// Says that this process serves: to the process that handed over (if any), and to systemd.
    pub fn announce_ready(&mut self) {
        if let Some(fd) = self.ready.take() {
            let _ = std::fs::File::from(fd).write_all(READY_WORD);
        }
        let mut state = format!("MAINPID={}\nREADY=1\n", std::process::id());
        if let Some(pid) = self.predecessor {
            state.push_str(&format!("STATUS=took over from pid {pid}\n"));
        }
        notify_systemd(&state);
    }
}

/// Starts a successor with `sockets` (and the metrics listener), waits until it serves and returns its
/// process id. On any failure the successor is gone and this process keeps serving.
pub fn hand_over(launch: &Launch, sockets: &[OwnedFd], metrics: Option<&OwnedFd>) -> Result<u32> {
    let (mut ready_reader, ready_writer) =
        std::io::pipe().map_err(|e| Error::io(format!("cannot create a pipe: {e}"), e))?;
    let ready_writer = OwnedFd::from(ready_writer);
    let inherited: Vec<&OwnedFd> = sockets
        .iter()
        .chain(metrics)
        .chain(std::iter::once(&ready_writer))
        .collect();
    let numbers = |fds: &[OwnedFd]| {
        fds.iter()
            .map(|fd| fd.as_raw_fd().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .env(SOCKETS_VAR, numbers(sockets))
        .env(READY_VAR, ready_writer.as_raw_fd().to_string())
        .env(PREDECESSOR_VAR, std::process::id().to_string())
        .stdin(Stdio::null());
    if let Some(fd) = metrics {
        command.env(METRICS_VAR, fd.as_raw_fd().to_string());
    }
    // Only these descriptors cross `execve`; they are marked close-on-exec again right after.
    let mark = |on: bool| -> Result<()> {
        for fd in &inherited {
            sys::set_close_on_exec(fd.as_fd(), on)
                .map_err(|e| Error::io(format!("cannot pass a socket on: {e}"), e))?;
        }
        Ok(())
    };
    mark(false)?;
    let spawned = command.spawn();
    mark(true)?;
    drop(inherited);
    drop(ready_writer);
    let mut child = spawned
        .map_err(|e| Error::io(format!("cannot start {}: {e}", launch.program.display()), e))?;
    // Wait for `ready` on the pipe, bounded; the read ends at EOF when the successor exits.
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut word = Vec::new();
        let _ = (&mut ready_reader).take(16).read_to_end(&mut word);
        let _ = sender.send(word);
    });
    match receiver.recv_timeout(READY_TIMEOUT) {
        Ok(word) if word == READY_WORD => Ok(child.id()),
        Ok(_) => {
            let status = child.wait().map_or("unknown".into(), |s| s.to_string());
            Err(Error::runtime(format!(
                "the new process exited ({status}) before serving (its error is above)"
            )))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(Error::runtime(format!(
                "the new process did not start serving within {READY_TIMEOUT:?}; it was stopped"
            )))
        }
    }
}

/// Sends `state` to systemd's notification socket when running under `Type=notify` (no-op otherwise).
fn notify_systemd(state: &str) {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        None => SocketAddr::from_pathname(&path),
    };
    if let Ok(address) = address {
        let _ = socket.send_to_addr(state.as_bytes(), &address);
    }
}
