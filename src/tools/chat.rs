//! `udpd chat`: a line chat over UDP between named peers, one port each, from a terminal or a pipe.

use std::collections::HashSet;
use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::error::{Error, Result};
use crate::tools::client::escape_payload;

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
    let addr = addr.trim();
    let addr = match addr.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) if addr.contains(':') => addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(bad)?,
        Err(_) => return Err(bad()),
    };
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
    let mut buf = vec![0u8; 65_536];
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
    let mut line = String::new();
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
            .read_line(&mut line)
            .map_err(|e| Error::runtime(format!("reading stdin failed: {e}")))?;
        if read == 0 {
            if interactive {
                say("");
            }
            return Ok(());
        }
        let text = line.trim_end_matches(['\n', '\r']);
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
            _ if text.starts_with("//") => &text[1..],
            _ if text.starts_with('/') => {
                say(&format!("unknown command {command}: {HELP}"));
                continue;
            }
            _ => text,
        };
        let target = {
            let peers = peers.lock().unwrap_or_else(PoisonError::into_inner);
            peers.current.map(|i| peers.list[i].clone())
        };
        let Some((name, addr)) = target else {
            say("no peer to send to: /add NAME=ADDR or /to ADDR first");
            continue;
        };
        if let Err(e) = socket.send_to(message.as_bytes(), addr) {
            say(&format!("sending to {name} ({addr}) failed: {e}"));
        }
    }
}

/// `HH:MM:SS` of a time of day given as seconds (already shifted to local time).
fn clock(local_secs: i64) -> String {
    let day = local_secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", day / 3600, day / 60 % 60, day % 60)
}

/// The local time zone's UTC offsets, read from a TZif file (`$TZ` or `/etc/localtime`); UTC when there is none.
#[derive(Debug, Clone, Default)]
struct Zone {
    /// (transition time in Unix seconds, index into `offsets`), ascending.
    transitions: Vec<(i64, usize)>,
    /// UTC offsets in seconds, one per local time type.
    offsets: Vec<i32>,
}

impl Zone {
    fn local() -> Zone {
        let path = match std::env::var("TZ") {
            Ok(tz) if tz.is_empty() || tz.starts_with("UTC") || tz.starts_with("GMT") => {
                return Zone::default()
            }
            Ok(tz) => {
                let tz = tz.trim_start_matches(':');
                if tz.starts_with('/') {
                    tz.to_string()
                } else {
                    format!("/usr/share/zoneinfo/{tz}")
                }
            }
            Err(_) => "/etc/localtime".to_string(),
        };
        std::fs::read(path)
            .ok()
            .and_then(|data| Zone::parse(&data))
            .unwrap_or_default()
    }

    /// Parses the transitions and offsets of a TZif file (the 64-bit block when the file has one).
    fn parse(data: &[u8]) -> Option<Zone> {
        let be32 = |at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
        };
        let block = |start: usize, time_size: usize| -> Option<(Zone, usize)> {
            if data.get(start..start + 4)? != b"TZif" {
                return None;
            }
            let count = |i: usize| be32(start + 20 + 4 * i).map(|n| n as usize);
            let (isut, isstd, leap, times, types, chars) = (
                count(0)?,
                count(1)?,
                count(2)?,
                count(3)?,
                count(4)?,
                count(5)?,
            );
            let mut at = start + 44;
            let mut transitions = Vec::with_capacity(times);
            for i in 0..times {
                let bytes = data.get(at + i * time_size..at + (i + 1) * time_size)?;
                let time = if time_size == 8 {
                    i64::from_be_bytes(bytes.try_into().ok()?)
                } else {
                    i64::from(i32::from_be_bytes(bytes.try_into().ok()?))
                };
                transitions.push((time, 0));
            }
            at += times * time_size;
            for (i, transition) in transitions.iter_mut().enumerate() {
                transition.1 = usize::from(*data.get(at + i)?);
            }
            at += times;
            let offsets = (0..types)
                .map(|i| be32(at + 6 * i).map(|n| n as i32))
                .collect::<Option<Vec<i32>>>()?;
            at += 6 * types + chars + leap * (time_size + 4) + isstd + isut;
            if offsets.is_empty() || transitions.iter().any(|&(_, i)| i >= offsets.len()) {
                return None;
            }
            Some((
                Zone {
                    transitions,
                    offsets,
                },
                at,
            ))
        };
        let (v1, end) = block(0, 4)?;
        if data.get(4).is_some_and(|&version| version >= b'2') {
            if let Some((v2, _)) = block(end, 8) {
                return Some(v2);
            }
        }
        Some(v1)
    }

    /// UTC offset in seconds at Unix time `t`.
    fn offset_at(&self, t: i64) -> i32 {
        let index = match self.transitions.partition_point(|&(time, _)| time <= t) {
            0 => 0,
            n => self.transitions[n - 1].1,
        };
        self.offsets.get(index).copied().unwrap_or(0)
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

    #[test]
    fn clock_wraps_days() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(86_400 + 3_600 * 13 + 60 * 7 + 9), "13:07:09");
        assert_eq!(clock(-1), "23:59:59");
    }

    #[test]
    fn tzif_offsets_follow_transitions() {
        // A minimal version-1 TZif file: two types (+0 and +3600), one transition at t=1000 to +3600.
        let mut data = b"TZif\0".to_vec();
        data.extend([0u8; 15]);
        for count in [0u32, 0, 0, 1, 2, 4] {
            data.extend(count.to_be_bytes());
        }
        data.extend(1000i32.to_be_bytes());
        data.push(1);
        data.extend(0i32.to_be_bytes());
        data.extend([0, 0]);
        data.extend(3600i32.to_be_bytes());
        data.extend([1, 0]);
        data.extend(b"UTC\0");
        let zone = Zone::parse(&data).unwrap();
        assert_eq!(zone.offset_at(999), 0);
        assert_eq!(zone.offset_at(1000), 3600);
        assert_eq!(zone.offset_at(5000), 3600);
        assert!(Zone::parse(b"nonsense").is_none());
        assert_eq!(Zone::default().offset_at(42), 0);
    }
}
