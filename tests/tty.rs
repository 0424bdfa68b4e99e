//! What a person sees: `udpd client` in a real terminal (tmux), typing a line and reading the reply.

mod common;

use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

use common::{run_command_to_end, skip_or_fail, tool_runs};

/// Longest wait for any one thing to appear on the screen.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest any one tmux command may take.
const TMUX_TIMEOUT: Duration = Duration::from_secs(10);

/// What a tmux command returned: exit code, stdout, stderr.
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A tmux server of our own (its own socket file), killed and its socket removed on drop.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    /// Runs `tmux -S SOCKET ARGS` (bounded).
    fn run(&self, args: &[&str]) -> Output {
        let socket = self.socket.to_str().expect("a UTF-8 socket path");
        let mut all = vec!["-S", socket];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = run_command_to_end(
            "tmux",
            &all,
            &[("TERM", "xterm-256color")],
            b"",
            TMUX_TIMEOUT,
        );
        Output {
            code,
            stdout,
            stderr,
        }
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "udpd"]).stdout
    }

    /// Polls the screen until `want` holds, bounded by [`SCREEN_TIMEOUT`]; returns the screen.
    fn wait_for(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen();
            if want(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never appeared; screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[test]
fn interactive_client_shows_a_prompt_and_the_reply() {
    if !tool_runs("tmux", &["-V"]) {
        return skip_or_fail("tmux is not installed (apt-get install -y tmux)");
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let addr = server.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..len].to_ascii_uppercase(), from);
        }
    });
    let tmux = Tmux {
        socket: std::env::temp_dir().join(format!("udpd-tty-test-{}.sock", std::process::id())),
    };
    // The shell reports the client's exit status on the screen once it is gone.
    let command = format!(
        "{} client {addr}; echo \"[udpd client exited with status $?]\"; sleep 60",
        env!("CARGO_BIN_EXE_udpd")
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "udpd",
        "-x",
        "120",
        "-y",
        "30",
        &command,
    ]);
    assert_eq!(started.code, 0, "tmux: {}", started.stderr);

    let screen = tmux.wait_for("the prompt", |s| s.lines().any(|l| l == ">" || l == "> "));
    assert!(
        screen.contains(&format!("talking to {addr}")),
        "the client says where it talks to:\n{screen}"
    );
    tmux.run(&["send-keys", "-t", "udpd", "hello terminal", "Enter"]);
    let reply = format!("reply from {addr} (14 bytes, ");
    let screen = tmux.wait_for("the reply", |s| s.contains(&reply));
    let line = screen.lines().find(|l| l.contains(&reply)).unwrap();
    assert!(line.ends_with("ms): HELLO TERMINAL"), "{line}");
    assert!(
        screen.lines().any(|l| l == "> hello terminal"),
        "the typed line follows the prompt:\n{screen}"
    );
    // Another prompt after the reply, then Ctrl-D ends the client cleanly.
    tmux.wait_for("a second prompt", |s| {
        let after = s.split(&reply).nth(1).unwrap_or("");
        after.lines().any(|l| l.trim_end() == ">")
    });
    tmux.run(&["send-keys", "-t", "udpd", "C-d"]);
    tmux.wait_for("the client's exit status", |s| {
        s.lines().any(|l| l == "[udpd client exited with status 0]")
    });
}
