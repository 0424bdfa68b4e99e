//! Forged UDP/IPv4 datagrams for the hostile tests: the packet bytes (IP and UDP headers with their
//! checksums) are built in safe code and sent through an IPPROTO_RAW socket (root only).

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};

/// A raw IPv4 socket that sends whole IP packets (IPPROTO_RAW implies IP_HDRINCL).
pub struct RawSender {
    fd: OwnedFd,
    next_id: std::cell::Cell<u16>,
}

impl RawSender {
    /// Opens the raw socket; `Err(EPERM)` without CAP_NET_RAW.
    pub fn open() -> Result<RawSender, Errno> {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::empty(),
            SockProtocol::Raw,
        )?;
        Ok(RawSender {
            fd,
            next_id: std::cell::Cell::new(1),
        })
    }

    /// Sends one UDP datagram from the forged `source` to `destination`.
    pub fn send(&self, source: SocketAddrV4, destination: SocketAddrV4, payload: &[u8]) {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let packet = udp_ipv4_packet(source, destination, payload, id);
        let to = SockaddrIn::from(destination);
        let sent = sendto(self.fd.as_raw_fd(), &packet, &to, MsgFlags::empty())
            .unwrap_or_else(|e| panic!("raw send {source} -> {destination}: {e}"));
        assert_eq!(sent, packet.len(), "raw send must take the whole packet");
    }
}

/// An IPv4 packet carrying one UDP datagram, with valid IP and UDP checksums.
pub fn udp_ipv4_packet(
    source: SocketAddrV4,
    destination: SocketAddrV4,
    payload: &[u8],
    id: u16,
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let total16 = u16::try_from(total).expect("a forged packet fits one IPv4 packet");
    let mut packet = Vec::with_capacity(total);
    // IPv4 header: version 4, IHL 5, no TOS; don't-fragment; TTL 64; protocol 17 (UDP).
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&total16.to_be_bytes());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
    packet.extend_from_slice(&source.ip().octets());
    packet.extend_from_slice(&destination.ip().octets());
    let header_sum = internet_checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&header_sum.to_be_bytes());
    // UDP header and payload.
    let udp_start = packet.len();
    packet.extend_from_slice(&source.port().to_be_bytes());
    packet.extend_from_slice(&destination.port().to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12 + udp_len);
    pseudo.extend_from_slice(&source.ip().octets());
    pseudo.extend_from_slice(&destination.ip().octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    pseudo.extend_from_slice(&packet[udp_start..]);
    let udp_sum = match internet_checksum(&pseudo) {
        0 => 0xFFFF, // 0 means "no checksum" in UDP over IPv4
        sum => sum,
    };
    packet[udp_start + 6..udp_start + 8].copy_from_slice(&udp_sum.to_be_bytes());
    packet
}

/// The RFC 1071 one's-complement checksum of `bytes`.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}
