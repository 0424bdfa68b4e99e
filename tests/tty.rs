//! What a person sees: `udpd client` in a real terminal (tmux), typing a line and reading the reply.

use std::net::UdpSocket;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

/// Longest wait for any one thing to appear on the screen.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(15);

/// A tmux server of our own (its own socket file), killed and its socket removed on drop.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "udpd"]).stdout)
            .into_owned()
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

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn interactive_client_shows_a_prompt_and_the_reply() {
    if !tmux_available() {
        println!("skipped: tmux is not installed (apt-get install -y tmux)");
        return;
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
    assert!(
        started.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&started.stderr)
    );

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
