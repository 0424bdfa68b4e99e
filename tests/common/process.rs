//! One way to run the `udpd` binary (or a helper program) in a test: bounded waits, lines through channels,
//! signals via nix, and a kill on drop, so no child outlives its test or blocks it forever.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The path of the binary under test.
pub fn udpd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_udpd")
}

/// How a finished process ended and what it printed.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The exit code; a death by signal reads as 128 + the signal number.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// What the next line of a stream turned out to be.
pub enum Next {
    Line(String),
    /// The stream is closed (the process exited or closed it).
    Eof,
    Timeout,
}

/// One stream of a child's output: its lines so far, and a channel of the lines still to come.
struct Stream {
    lines: Receiver<String>,
    seen: Vec<String>,
    /// Index of the first line no wait has looked at yet.
    cursor: usize,
    eof: bool,
}

impl Stream {
    fn new(reader: impl Read + Send + 'static) -> Stream {
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Stream {
            lines,
            seen: Vec::new(),
            cursor: 0,
            eof: false,
        }
    }

    /// The next line not looked at yet, waiting at most until `deadline`.
    fn next(&mut self, deadline: Instant) -> Next {
        if self.cursor < self.seen.len() {
            self.cursor += 1;
            return Next::Line(self.seen[self.cursor - 1].clone());
        }
        if self.eof {
            return Next::Eof;
        }
        match self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => {
                self.seen.push(line.clone());
                self.cursor = self.seen.len();
                Next::Line(line)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                Next::Eof
            }
            Err(RecvTimeoutError::Timeout) => Next::Timeout,
        }
    }

    /// Reads everything up to end of stream (bounded); returns whether the end was reached.
    fn drain(&mut self, deadline: Instant) -> bool {
        while !self.eof {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => self.eof = true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
        true
    }

    fn text(&self) -> String {
        let mut text = self.seen.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text
    }
}

/// A running child process with piped stdout/stderr (and stdin when asked), killed on drop.
pub struct Running {
    /// `program args...`, for failure messages.
    pub what: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Stream,
    stderr: Stream,
}

impl Running {
    /// Starts `udpd ARGS` with stdin from /dev/null.
    pub fn udpd(args: &[&str]) -> Running {
        Running::spawn(udpd_bin(), args, false)
    }

    /// Starts `udpd ARGS` with a pipe on stdin (see [`Running::write_stdin`]).
    pub fn udpd_with_stdin(args: &[&str]) -> Running {
        Running::spawn(udpd_bin(), args, true)
    }

    /// Starts `program ARGS`; stdin is a pipe when `piped_stdin`, else /dev/null.
    pub fn spawn(program: &str, args: &[&str], piped_stdin: bool) -> Running {
        Running::spawn_with_env(program, args, &[], piped_stdin)
    }

    /// [`Running::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        piped_stdin: bool,
    ) -> Running {
        let what = format!("{program} {}", args.join(" "));
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = Stream::new(child.stdout.take().expect("piped stdout"));
        let stderr = Stream::new(child.stderr.take().expect("piped stderr"));
        let stdin = child.stdin.take();
        Running {
            what,
            child: Some(child),
            stdin,
            stdout,
            stderr,
        }
    }

    /// The process id (while it has not been reaped).
    pub fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("the process was already reaped");
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|e| panic!("{signal:?} to {}: {e}", self.what));
    }

    /// Writes `text` to the process's stdin and flushes.
    pub fn write_stdin(&mut self, text: &str) {
        self.write_stdin_bytes(text.as_bytes());
    }

    /// Writes raw bytes (not necessarily UTF-8) to the process's stdin and flushes.
    pub fn write_stdin_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is a pipe and still open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("write to the stdin of {}: {e}", self.what));
    }

    /// Closes stdin (end of input for the process).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line not looked at yet, waiting at most `timeout`.
    pub fn next_stdout(&mut self, timeout: Duration) -> Next {
        self.stdout.next(Instant::now() + timeout)
    }

    /// The next stderr line not looked at yet, waiting at most `timeout`.
    pub fn next_stderr(&mut self, timeout: Duration) -> Next {
        self.stderr.next(Instant::now() + timeout)
    }

    /// Waits (bounded) for the first stdout line `pick` accepts; panics, quoting the output, at timeout or
    /// end of stream. Lines passed over are not looked at again by later waits.
    pub fn wait_stdout<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        self.wait_line(false, what, timeout, pick)
    }

    /// As [`Running::wait_stdout`], on stderr.
    pub fn wait_stderr<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        self.wait_line(true, what, timeout, pick)
    }

    fn wait_line<T>(
        &mut self,
        on_stderr: bool,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let stream = if on_stderr {
                &mut self.stderr
            } else {
                &mut self.stdout
            };
            match stream.next(deadline) {
                Next::Line(line) => {
                    if let Some(found) = pick(&line) {
                        return found;
                    }
                }
                Next::Eof => panic!(
                    "{what}: never came; the output ended; {}",
                    self.output_so_far()
                ),
                Next::Timeout => panic!("{what}: not within {timeout:?}; {}", self.output_so_far()),
            }
        }
    }

    /// stdout and stderr seen so far, for failure messages.
    pub fn output_so_far(&self) -> String {
        format!(
            "{}\nstdout:\n{}stderr:\n{}",
            self.what,
            self.stdout.text(),
            self.stderr.text()
        )
    }

    /// Whether the process has exited (reaping it when it has).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(child) => child.try_wait().ok().flatten().is_some(),
        }
    }

    /// Waits (bounded) for the process to exit and its output to end; on timeout kills it and panics.
    pub fn wait_exit(&mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("the process was already reaped");
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    // Paces re-checking the exit state under the deadline.
                    thread::sleep(Duration::from_millis(2));
                }
                Ok(None) => {
                    let pid = Pid::from_raw(child.id() as i32);
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = child.wait();
                    panic!(
                        "did not exit within {timeout:?}; killed it; {}",
                        self.output_so_far()
                    );
                }
                Err(e) => panic!("wait for {}: {e}", self.what),
            }
        };
        // The output ends when the process has gone (a grace period covers what is still in the pipes).
        let grace = deadline.max(Instant::now() + Duration::from_secs(2));
        let complete = self.stdout.drain(grace) && self.stderr.drain(grace);
        assert!(
            complete,
            "exited ({}) but its output did not end; {}",
            describe(status),
            self.output_so_far()
        );
        Finished {
            code: exit_code(status),
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let pid = Pid::from_raw(child.id() as i32);
                let _ = kill(pid, Signal::SIGKILL);
                let _ = child.wait();
            }
        }
    }
}

/// The exit code, or 128 + the signal number for a death by signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `exit code N` or `killed by signal N`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => format!("{status:?}"),
    }
}

/// Runs `udpd ARGS` with `stdin` as its input, to completion within `timeout` (killed and failed past
/// it); returns (exit code, stdout, stderr), a death by signal reading as 128 + the signal number.
pub fn run_to_end(args: &[&str], stdin: &[u8], timeout: Duration) -> (i32, String, String) {
    run_program_to_end(udpd_bin(), args, stdin, timeout)
}

/// [`run_to_end`] for any program (a script, tmux).
pub fn run_program_to_end(
    program: &str,
    args: &[&str],
    stdin: &[u8],
    timeout: Duration,
) -> (i32, String, String) {
    run_command_to_end(program, args, &[], stdin, timeout)
}

/// [`run_program_to_end`] with extra environment variables.
pub fn run_command_to_end(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
    timeout: Duration,
) -> (i32, String, String) {
    let mut running = Running::spawn_with_env(program, args, env, true);
    let input = stdin.to_vec();
    let mut pipe = running.stdin.take().expect("piped stdin");
    // A writer thread: a process that does not read its input cannot block the test.
    thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let finished = running.wait_exit(timeout);
    (finished.code, finished.stdout, finished.stderr)
}

/// Runs `udpd ARGS` (stdin empty) within `timeout`; (exit code, stdout, stderr).
pub fn run_udpd(args: &[&str], timeout: Duration) -> (i32, String, String) {
    run_to_end(args, b"", timeout)
}

/// Runs `udpd ARGS` as [`run_to_end`] does, with its address space capped at `max_mib` MiB (via the
/// shell's `ulimit -v`), for inputs that could make a broken build allocate without bound.
pub fn run_to_end_with_memory_cap(
    args: &[&str],
    max_mib: u64,
    timeout: Duration,
) -> (i32, String, String) {
    let script = format!("ulimit -v {} && exec \"$0\" \"$@\"", max_mib * 1024);
    let mut all = vec!["-c", script.as_str(), udpd_bin()];
    all.extend_from_slice(args);
    run_program_to_end("sh", &all, b"", timeout)
}
