//! `udpd chat`: two real instances talking to each other through pipes, plus strangers, commands and exit.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{Next, Running};

/// Longest wait for any one expected line.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `udpd chat` driven through pipes; killed on drop unless it exited.
struct Chat {
    process: Running,
    seen: Vec<String>,
    addr: SocketAddr,
}

impl Chat {
    fn start(peers: &[String]) -> Chat {
        let mut args = vec!["chat", "--listen", "127.0.0.1:0"];
        for peer in peers {
            args.extend(["--peer", peer.as_str()]);
        }
        let mut chat = Chat {
            process: Running::udpd_with_stdin(&args),
            seen: Vec::new(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let line = chat.expect(|line| line.starts_with("listening on "));
        chat.addr = line["listening on ".len()..].parse().expect("an address");
        assert_ne!(chat.addr.port(), 0);
        chat
    }

    fn type_line(&mut self, line: &str) {
        self.process.write_stdin(&format!("{line}\n"));
    }

    /// Closes stdin: end of input, which chat takes as /quit.
    fn end_input(&mut self) {
        self.process.close_stdin();
    }

    /// Waits (bounded) for a stdout line matching `want` and returns it.
    fn expect(&mut self, want: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| want(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.process.next_stdout(left) {
                Next::Line(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Next::Eof | Next::Timeout => {
                    panic!("expected line never came; stdout so far: {:?}", self.seen)
                }
            }
        }
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    fn wait_exit(&mut self) -> i32 {
        self.process.wait_exit(LINE_TIMEOUT).code
    }
}

/// Checks `[HH:MM:SS] NAME: TEXT`.
fn assert_message(line: &str, name: &str, text: &str) {
    let bytes = line.as_bytes();
    assert!(
        line.len() > 11
            && bytes[0] == b'['
            && bytes[3] == b':'
            && bytes[6] == b':'
            && bytes[9] == b']'
            && line[1..9].chars().filter(char::is_ascii_digit).count() == 6,
        "no [HH:MM:SS] stamp in {line:?}"
    );
    assert_eq!(&line[11..], format!("{name}: {text}"), "in {line:?}");
}

#[test]
fn two_chats_see_each_other_by_name() {
    let mut alice = Chat::start(&[]);
    let mut bob = Chat::start(&[format!("alice={}", alice.addr)]);
    alice.type_line(&format!("/add bob={}", bob.addr));
    alice.expect(|l| l.starts_with("added bob="));
    alice.type_line("hello bob");
    let line = bob.expect(|l| l.contains("hello bob"));
    assert_message(&line, "alice", "hello bob");
    bob.type_line("hi alice, ça va?");
    let line = alice.expect(|l| l.contains("hi alice"));
    assert_message(&line, "bob", "hi alice, ça va?");
    // End of input on the pipe is /quit.
    bob.end_input();
    assert_eq!(bob.wait_exit(), 0);
    alice.type_line("/quit");
    assert_eq!(alice.wait_exit(), 0);
}

#[test]
fn strangers_are_shown_by_address_and_can_be_answered() {
    let mut chat = Chat::start(&[]);
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    let from = stranger.local_addr().unwrap();
    stranger.send_to(b"who is this?\x07", chat.addr).unwrap();
    let line = chat.expect(|l| l.contains("who is this?"));
    assert_message(&line, &from.to_string(), "who is this?\\u{7}");
    chat.type_line(&format!("/to {from}"));
    chat.expect(|l| l == format!("now talking to {from}"));
    chat.type_line("//slash at the start");
    let mut buf = [0u8; 256];
    let (len, sender) = stranger
        .recv_from(&mut buf)
        .expect("the reply to the stranger");
    assert_eq!(sender, chat.addr, "replies leave from the listening port");
    assert_eq!(&buf[..len], b"/slash at the start");
}

#[test]
fn to_switches_peer_and_peers_lists_them() {
    let one = UdpSocket::bind("127.0.0.1:0").unwrap();
    let two = UdpSocket::bind("127.0.0.1:0").unwrap();
    for socket in [&one, &two] {
        socket.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    }
    let (a1, a2) = (one.local_addr().unwrap(), two.local_addr().unwrap());
    let mut chat = Chat::start(&[format!("one={a1}"), format!("two={a2}")]);
    chat.type_line("/peers");
    chat.expect(|l| l == format!("  one {a1} (current)"));
    chat.expect(|l| l == format!("  two {a2}"));
    chat.type_line("to the first");
    chat.type_line("/to two");
    chat.expect(|l| l == "now talking to two");
    chat.type_line("to the second");
    chat.type_line("/to nobody");
    chat.expect(|l| l.starts_with("no peer named \"nobody\""));
    chat.type_line("/bogus");
    chat.expect(|l| l.starts_with("unknown command /bogus"));
    let mut buf = [0u8; 256];
    let (len, from) = one.recv_from(&mut buf).expect("message to peer one");
    assert_eq!((&buf[..len], from), (&b"to the first"[..], chat.addr));
    let (len, _) = two.recv_from(&mut buf).expect("message to peer two");
    assert_eq!(&buf[..len], b"to the second");
    chat.type_line("/quit");
    assert_eq!(chat.wait_exit(), 0);
}

#[test]
fn bad_peers_are_usage_errors() {
    for args in [
        vec!["--listen", "127.0.0.1:0", "--peer", "alice"],
        vec![
            "--listen",
            "127.0.0.1:0",
            "--peer",
            "a=127.0.0.1:1",
            "--peer",
            "a=127.0.0.1:2",
        ],
        vec!["--listen", "nowhere"],
    ] {
        let mut all = vec!["chat"];
        all.extend_from_slice(&args);
        let (code, _, stderr) = common::run_to_end(&all, b"", LINE_TIMEOUT);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("udpd: error: "), "{stderr}");
    }
}

#[test]
fn a_line_that_is_not_utf8_is_sent_as_typed_and_the_chat_goes_on() {
    let mut bob = Chat::start(&[]);
    let mut alice = Chat::start(&[format!("bob={}", bob.addr)]);
    alice.process.write_stdin_bytes(b"caf\xe9 \xff!\n");
    alice.type_line("still here");
    let strange = bob.expect(|line| line.ends_with("caf\\xe9 \\xff!"));
    let from = alice.addr.to_string();
    assert_message(&strange, &from, "caf\\xe9 \\xff!");
    let after = bob.expect(|line| line.ends_with("still here"));
    assert_message(&after, &from, "still here");
    alice.type_line("/quit");
    assert_eq!(alice.wait_exit(), 0);
}
