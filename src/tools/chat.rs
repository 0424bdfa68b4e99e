//! `udpd chat`: a line chat over UDP between named peers, one port each, from a terminal or a pipe.

use std::collections::HashSet;
use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::error::{Error, Result};
use crate::tools::show::escape_payload;
use crate::tools::zone::{clock, Zone};

/// Flags of `udpd chat`.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Address and port to receive messages on (and send from), e.g. 0.0.0.0:7000; port 0 picks one.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// A person to talk to, NAME=ADDR (repeatable); the first one is who typed lines go to at start.
    #[arg(long = "peer", value_name = "NAME=ADDR")]
    pub peers: Vec<String>,
}

const HELP: &str =
    "type a line to send it; /to NAME (or /to ADDR) switches peer, /add NAME=ADDR adds one, \
/peers lists them, /quit leaves (so does end of input); start a line with // to send a leading /";

/// The address book and who typed lines go to.
#[derive(Debug, Default)]
struct Peers {
    list: Vec<(String, SocketAddr)>,
    current: Option<usize>,
}

impl Peers {
    fn name_of(&self, addr: SocketAddr) -> Option<&str> {
        self.list
            .iter()
            .find(|(_, a)| *a == addr)
            .map(|(name, _)| name.as_str())
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|(n, _)| n == name)
    }

    /// Adds a peer (the first one added becomes current); names must be unique.
    fn add(&mut self, name: String, addr: SocketAddr) -> std::result::Result<(), String> {
        if self.index_of(&name).is_some() {
            return Err(format!("there is already a peer named {name}"));
        }
        self.list.push((name, addr));
        if self.current.is_none() {
            self.current = Some(self.list.len() - 1);
        }
        Ok(())
    }

    fn prompt(&self) -> String {
        match self.current {
            Some(i) => format!("{}> ", self.list[i].0),
            None => "(no peer)> ".to_string(),
        }
    }
}

/// Parses `NAME=ADDR`: a name without spaces, `=` or a leading `/`, and an IP:PORT or HOST:PORT.
fn parse_peer(text: &str) -> std::result::Result<(String, SocketAddr), String> {
    let bad = || format!("peer {text:?} is not NAME=ADDR: use e.g. alice=127.0.0.1:7000");
    let (name, addr) = text.split_once('=').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() || name.starts_with('/') || name.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let addr = crate::config::resolve_target(addr.trim(), &format!("peer {name}"))
        .map_err(|error| error.to_string())?;
    Ok((name.to_string(), addr))
}

pub fn run(args: ChatArgs) -> Result<()> {
    let listen = crate::config::parse_listen(&args.listen)?;
    let mut peers = Peers::default();
    let mut seen = HashSet::new();
    for text in &args.peers {
        let (name, addr) = parse_peer(text).map_err(|m| Error::usage(format!("--peer: {m}")))?;
        if !seen.insert(name.clone()) {
            return Err(Error::usage(format!(
                "--peer {name} is given twice: each name must be unique"
            )));
        }
        peers.add(name, addr).map_err(Error::usage)?;
    }
    let socket = UdpSocket::bind(listen).map_err(|e| {
        Error::runtime(format!(
            "cannot listen on {listen}: {e} (pick another port, or 0 for any free one)"
        ))
    })?;
    let local = socket
        .local_addr()
        .map_err(|e| Error::runtime(format!("cannot read the chat socket's address: {e}")))?;
    let interactive = io::stdin().is_terminal();
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "listening on {local}");
        if interactive {
            let _ = writeln!(out, "{HELP}");
        }
        let _ = out.flush();
    }
    let peers = Arc::new(Mutex::new(peers));
    let receiver = socket
        .try_clone()
        .map_err(|e| Error::runtime(format!("cannot share the chat socket: {e}")))?;
    let zone = Zone::local();
    {
        let peers = Arc::clone(&peers);
        std::thread::Builder::new()
            .name("chat-recv".into())
            .spawn(move || receive(receiver, peers, zone, interactive))
            .map_err(|e| Error::runtime(format!("cannot start the receiving thread: {e}")))?;
    }
    type_lines(&socket, &peers, interactive)
}

/// The socket reader: prints every incoming message as `[HH:MM:SS] NAME: text` until the process ends.
fn receive(socket: UdpSocket, peers: Arc<Mutex<Peers>>, zone: Zone, interactive: bool) {
    let mut buf = vec![0u8; crate::sys::limits::MAX_DATAGRAM];
    loop {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            // An earlier message hit a closed port (ICMP), or a signal: neither ends the chat.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                eprintln!("udpd chat: receiving stopped: {e}");
                return;
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let (name, prompt) = {
            let peers = peers.lock().unwrap_or_else(PoisonError::into_inner);
            let name = peers
                .name_of(from)
                .map_or_else(|| from.to_string(), str::to_string);
            (name, peers.prompt())
        };
        let line = format!(
            "[{}] {name}: {}",
            clock(now + i64::from(zone.offset_at(now))),
            escape_payload(&buf[..len])
        );
        let mut out = io::stdout().lock();
        let _ = if interactive {
            // Clear the prompt line, print the message, then show the prompt again.
            write!(out, "\r\x1b[K{line}\n{prompt}")
        } else {
            writeln!(out, "{line}")
        };
        let _ = out.flush();
    }
}

/// The stdin reader: sends typed lines to the current peer and runs the `/` commands.
fn type_lines(socket: &UdpSocket, peers: &Mutex<Peers>, interactive: bool) -> Result<()> {
    let stdin = io::stdin();
    let mut line = Vec::new();
    let say = |text: &str| {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    loop {
        if interactive {
            let prompt = peers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .prompt();
            let mut out = io::stdout().lock();
            let _ = write!(out, "{prompt}");
            let _ = out.flush();
        }
        line.clear();
        let read = stdin
            .lock()
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::runtime(format!("reading stdin failed: {e}")))?;
        if read == 0 {
            if interactive {
                say("");
            }
            return Ok(());
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        // Commands are read as text; a message goes out as typed, bytes that are not UTF-8 included (the
        // other side shows them escaped).
        let text = String::from_utf8_lossy(&line);
        let text = text.as_ref();
        let (command, rest) = match text.split_once(char::is_whitespace) {
            Some((command, rest)) => (command, rest.trim()),
            None => (text, ""),
        };
        let message = match command {
            "" if rest.is_empty() => continue,
            "/quit" | "/exit" => return Ok(()),
            "/help" => {
                say(HELP);
                continue;
            }
            "/peers" => {
                let peers = peers.lock().unwrap_or_else(PoisonError::into_inner);
                if peers.list.is_empty() {
                    say("no peers yet: /add NAME=ADDR");
                }
                for (i, (name, addr)) in peers.list.iter().enumerate() {
                    let mark = if peers.current == Some(i) {
                        " (current)"
                    } else {
                        ""
                    };
                    say(&format!("  {name} {addr}{mark}"));
                }
                continue;
            }
            "/to" => {
                let mut peers = peers.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(i) = peers.index_of(rest) {
                    peers.current = Some(i);
                    say(&format!("now talking to {rest}"));
                } else if let Ok(addr) = rest.parse::<SocketAddr>() {
                    let i = match peers.list.iter().position(|(_, a)| *a == addr) {
                        Some(i) => i,
                        None => {
                            peers.list.push((addr.to_string(), addr));
                            peers.list.len() - 1
                        }
                    };
                    peers.current = Some(i);
                    say(&format!("now talking to {}", peers.list[i].0));
                } else {
                    say(&format!(
                        "no peer named {rest:?}: /peers lists them, /add NAME=ADDR adds one"
                    ));
                }
                continue;
            }
            "/add" => {
                let mut peers = peers.lock().unwrap_or_else(PoisonError::into_inner);
                match parse_peer(rest).and_then(|(name, addr)| peers.add(name, addr)) {
                    Ok(()) => say(&format!("added {rest}")),
                    Err(message) => say(&message),
                }
                continue;
            }
            _ if text.starts_with("//") => &line[1..],
            _ if text.starts_with('/') => {
                say(&format!("unknown command {command}: {HELP}"));
                continue;
            }
            _ => &line[..],
        };
        let target = {
            let peers = peers.lock().unwrap_or_else(PoisonError::into_inner);
            peers.current.map(|i| peers.list[i].clone())
        };
        let Some((name, addr)) = target else {
            say("no peer to send to: /add NAME=ADDR or /to ADDR first");
            continue;
        };
        if let Err(e) = socket.send_to(message, addr) {
            say(&format!("sending to {name} ({addr}) failed: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject() {
        let (name, addr) = parse_peer("alice=127.0.0.1:7000").unwrap();
        assert_eq!(name, "alice");
        assert_eq!(addr, "127.0.0.1:7000".parse().unwrap());
        assert!(parse_peer("bob=[::1]:1").is_ok());
        for bad in [
            "alice",
            "=1.2.3.4:5",
            "a b=1.2.3.4:5",
            "/x=1.2.3.4:5",
            "c=nowhere",
        ] {
            assert!(parse_peer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn first_peer_is_current_and_names_are_unique() {
        let mut peers = Peers::default();
        assert_eq!(peers.prompt(), "(no peer)> ");
        peers
            .add("a".into(), "127.0.0.1:1".parse().unwrap())
            .unwrap();
        peers
            .add("b".into(), "127.0.0.1:2".parse().unwrap())
            .unwrap();
        assert!(peers
            .add("a".into(), "127.0.0.1:3".parse().unwrap())
            .is_err());
        assert_eq!(peers.prompt(), "a> ");
        assert_eq!(peers.name_of("127.0.0.1:2".parse().unwrap()), Some("b"));
        assert_eq!(peers.name_of("127.0.0.1:9".parse().unwrap()), None);
    }
}
