//! Reads the kernel's UDP socket tables (`/proc/net/udp`, `/proc/net/udp6`) for what no socket option
//! tells: the drop count of one of our sockets at exit, and whether other sockets already serve a port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

const TABLES: [&str; 2] = ["/proc/net/udp", "/proc/net/udp6"];

/// One row of a table: the local address, the socket's inode and its drop counter.
struct Row {
    local: SocketAddr,
    inode: u64,
    drops: u64,
}

/// Parses one line after the header:
/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops`.
fn parse_row(line: &str) -> Option<Row> {
    let columns: Vec<&str> = line.split_whitespace().collect();
    if columns.len() < 13 {
        return None;
    }
    Some(Row {
        local: parse_hex_address(columns[1])?,
        inode: columns[9].parse().ok()?,
        drops: columns[12].parse().ok()?,
    })
}

/// `0100007F:270F` (IPv4, the address as a host-order hex u32) or 32 hex digits of four host-order u32
/// words (IPv6), then the port in hex.
fn parse_hex_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            let mut octets = [0u8; 16];
            for (k, chunk) in octets.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(k * 8..k * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn rows() -> impl Iterator<Item = Row> {
    TABLES.iter().flat_map(|table| {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        text.lines()
            .skip(1)
            .filter_map(parse_row)
            .collect::<Vec<_>>()
    })
}

/// The kernel's drop counter for the socket behind `fd` (`drops` column).
///
/// `SO_RXQ_OVFL` reports drops only on the next datagram received, so drops after the last one are seen
/// only here. Returns `None` when the socket cannot be found.
pub fn socket_drops(fd: BorrowedFd<'_>) -> Option<u64> {
    let inode = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()
        .map(|meta| std::os::unix::fs::MetadataExt::ino(&meta))?;
    rows().find(|row| row.inode == inode).map(|row| row.drops)
}

/// Whether binding `a` and `b` would make them share datagrams: the same port, and the same address or
/// a wildcard on either side (an IPv6 wildcard covers IPv4 too, as a dual-stack socket does).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (x, y) = (canonical(a.ip()), canonical(b.ip()));
    let wildcard_covers =
        |w: IpAddr, other: IpAddr| w.is_unspecified() && (w.is_ipv6() || other.is_ipv4());
    a.port() == b.port() && (x == y || wildcard_covers(x, y) || wildcard_covers(y, x))
}

/// How many UDP sockets of this network namespace already serve addresses that `addr` would share.
pub fn sockets_sharing(addr: SocketAddr) -> usize {
    rows().filter(|row| overlaps(row.local, addr)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_addresses_parse() {
        let line = "  1: 0100007F:270F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 7";
        let row = parse_row(line).unwrap();
        assert_eq!(row.local, "127.0.0.1:9999".parse().unwrap());
        assert_eq!((row.inode, row.drops), (12345, 7));
        let v6 = parse_hex_address("00000000000000000000000001000000:0035").unwrap();
        assert_eq!(v6, "[::1]:53".parse().unwrap());
        assert!(parse_row("garbage").is_none());
        assert!(parse_hex_address("zz:1").is_none());
    }

    #[test]
    fn sharing_means_same_port_and_same_or_wildcard_address() {
        let addr = |t: &str| t.parse::<SocketAddr>().unwrap();
        assert!(overlaps(addr("127.0.0.1:9"), addr("127.0.0.1:9")));
        assert!(overlaps(addr("0.0.0.0:9"), addr("127.0.0.2:9")));
        assert!(overlaps(addr("[::]:9"), addr("127.0.0.1:9")));
        assert!(overlaps(addr("[::ffff:127.0.0.1]:9"), addr("127.0.0.1:9")));
        assert!(!overlaps(addr("127.0.0.1:9"), addr("127.0.0.2:9")));
        assert!(!overlaps(addr("127.0.0.1:9"), addr("127.0.0.1:10")));
        assert!(!overlaps(addr("0.0.0.0:9"), addr("[::1]:9")));
    }

    #[test]
    fn a_bound_socket_is_seen_sharing_its_port() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        assert!(sockets_sharing(local) >= 1);
        assert!(
            sockets_sharing(
                "0.0.0.0:0"
                    .parse::<SocketAddr>()
                    .map(|mut a| {
                        a.set_port(local.port());
                        a
                    })
                    .unwrap()
            ) >= 1
        );
    }
}
