//! Byte layouts the kernel speaks: socket addresses and control messages, encoded and decoded in safe code.
//!
//! Everything here reads and writes plain byte arrays with `from_ne_bytes`/`to_ne_bytes`, never casts
//! pointers, so a malformed or unaligned control message can at worst be ignored, never misread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Room for any socket address (`sockaddr_storage`), aligned as the kernel wants it.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct NameBuf(pub [u8; 128]);

impl Default for NameBuf {
    fn default() -> Self {
        NameBuf([0; 128])
    }
}

/// Size of a `sockaddr_in6`, the largest address udpd ever keeps.
pub const PEER_LEN_MAX: usize = 28;

/// A peer's socket address exactly as the kernel gave it, cheap to copy and to compare (for reply grouping).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PeerAddr {
    bytes: [u8; PEER_LEN_MAX],
    len: u8,
}

impl Default for PeerAddr {
    fn default() -> Self {
        PeerAddr {
            bytes: [0; PEER_LEN_MAX],
            len: 0,
        }
    }
}

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

impl PeerAddr {
    /// Copies the address out of a kernel-filled address buffer of which the kernel wrote `len` bytes:
    /// a `sockaddr_in` (16 bytes) or a `sockaddr_in6` (28); `None` when the length or family is not IP.
    #[inline]
    pub fn from_name(name: &NameBuf, len: usize) -> Option<PeerAddr> {
        if !(2..=PEER_LEN_MAX).contains(&len) {
            return None;
        }
        let family = u16::from_ne_bytes([name.0[0], name.0[1]]);
        let mut bytes = [0u8; PEER_LEN_MAX];
        // Fixed-size copies (no call to a copy of variable length); the rest stays zero, so equal
        // addresses compare equal whatever the buffer held before.
        let len = if family == AF_INET && len >= 16 {
            bytes[..16].copy_from_slice(&name.0[..16]);
            16
        } else if family == AF_INET6 && len >= 28 {
            bytes.copy_from_slice(&name.0[..28]);
            28
        } else {
            return None;
        };
        Some(PeerAddr { bytes, len })
    }

    /// Encodes a standard socket address the way the kernel expects it in `msg_name`.
    pub fn from_socket_addr(addr: SocketAddr) -> PeerAddr {
        let mut bytes = [0u8; PEER_LEN_MAX];
        match addr {
            SocketAddr::V4(v4) => {
                bytes[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
                bytes[2..4].copy_from_slice(&v4.port().to_be_bytes());
                bytes[4..8].copy_from_slice(&v4.ip().octets());
                PeerAddr { bytes, len: 16 }
            }
            SocketAddr::V6(v6) => {
                bytes[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
                bytes[2..4].copy_from_slice(&v6.port().to_be_bytes());
                bytes[4..8].copy_from_slice(&v6.flowinfo().to_be_bytes());
                bytes[8..24].copy_from_slice(&v6.ip().octets());
                bytes[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
                PeerAddr { bytes, len: 28 }
            }
        }
    }

    /// Decodes into a standard socket address (IPv4-mapped IPv6 addresses stay IPv6, as the socket sees them).
    pub fn to_socket_addr(&self) -> SocketAddr {
        let b = &self.bytes;
        let port = u16::from_be_bytes([b[2], b[3]]);
        if self.len as usize == 16 {
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            SocketAddr::V4(SocketAddrV4::new(ip, port))
        } else {
            let flowinfo = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[8..24]);
            let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(octets),
                port,
                flowinfo,
                scope,
            ))
        }
    }

    /// A cheap summary of the address: equal addresses have equal fingerprints, so two addresses with
    /// different fingerprints differ (and equal fingerprints still need [`PartialEq`] to tell).
    #[inline]
    pub fn fingerprint(&self) -> u64 {
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&self.bytes[at..at + 8]);
            u64::from_ne_bytes(bytes)
        };
        // Family, port and IPv4 address in the first word; the rest of an IPv6 address in the others.
        word(0) ^ word(8).rotate_left(16) ^ word(16).rotate_left(32) ^ u64::from(self.len)
    }

    /// The raw bytes to hand the kernel as `msg_name`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Whether no address is held (the kernel gave none, or the message goes out on a connected socket).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An aligned control-message buffer of `N` bytes.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct CmsgBuf<const N: usize>(pub [u8; N]);

impl<const N: usize> Default for CmsgBuf<N> {
    fn default() -> Self {
        CmsgBuf([0; N])
    }
}

/// `sizeof(struct cmsghdr)` on 64-bit Linux: a `size_t` length then two `int`s.
const CMSG_HEADER: usize = 16;

const fn cmsg_align(len: usize) -> usize {
    (len + 7) & !7
}

/// `CMSG_SPACE(data_len)`.
pub const fn cmsg_space(data_len: usize) -> usize {
    CMSG_HEADER + cmsg_align(data_len)
}

/// Payload sizes of the control messages udpd asks for or sends (`linux/in.h`, `linux/in6.h`, `linux/udp.h`).
const TIMESPEC_LEN: usize = 16;
/// `struct scm_timestamping`: software, (deprecated), hardware stamps.
const TIMESTAMPING_LEN: usize = 3 * TIMESPEC_LEN;
const IN_PKTINFO_LEN: usize = 12;
const IN6_PKTINFO_LEN: usize = 20;
const GRO_SIZE_LEN: usize = 4;
const RXQ_OVFL_LEN: usize = 4;
const GSO_SIZE_LEN: usize = 2;

/// Control-message space for one received datagram: everything a socket may have been asked to attach at
/// once (timestamp, both packet infos on a dual-stack socket, GRO segment size, drop counter).
pub const RECV_CMSG_SPACE: usize = cmsg_space(TIMESTAMPING_LEN)
    + cmsg_space(IN_PKTINFO_LEN)
    + cmsg_space(IN6_PKTINFO_LEN)
    + cmsg_space(GRO_SIZE_LEN)
    + cmsg_space(RXQ_OVFL_LEN);

/// Control-message space for one sent message: the larger packet info (IPv6) plus a GSO segment size.
/// [`encode_send_control`] never writes more, so it cannot overflow.
pub const SEND_CMSG_SPACE: usize = cmsg_space(IN6_PKTINFO_LEN) + cmsg_space(GSO_SIZE_LEN);

const _: () = assert!(cmsg_space(IN_PKTINFO_LEN) <= cmsg_space(IN6_PKTINFO_LEN));

/// What the control messages of one received datagram said; every field is optional because the
/// kernel attaches each only when it applies (no GRO size for a lone datagram, no drop counter before the first drop).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvControl {
    /// Kernel receive time (`SO_TIMESTAMPING` software stamp, or `SO_TIMESTAMPNS`), nanoseconds since
    /// the Unix epoch, `CLOCK_REALTIME`.
    pub rx_time_ns: Option<u64>,
    /// The address the datagram was sent to (`IP_PKTINFO` / `IPV6_PKTINFO`): the reply's source.
    pub local_ip: Option<IpAddr>,
    /// Interface the datagram arrived on (from the same packet-info message), 0 when unknown.
    pub ifindex: u32,
    /// Size of each coalesced segment when the buffer holds several datagrams (`UDP_GRO`).
    pub segment_size: Option<u16>,
    /// The socket's cumulative count of datagrams the kernel dropped (`SO_RXQ_OVFL`).
    pub kernel_drops: Option<u32>,
}

/// Decodes the control messages the kernel wrote into `buf[..len]` into `out` (reset first, and
/// written where it is kept: no copy of the result); unknown or short messages are skipped.
#[inline]
pub fn decode_recv_control(buf: &[u8], len: usize, out: &mut RecvControl) {
    *out = RecvControl::default();
    let buf = &buf[..len.min(buf.len())];
    let mut offset = 0;
    while offset + CMSG_HEADER <= buf.len() {
        let cmsg_len = usize::from_ne_bytes(buf[offset..offset + 8].try_into().unwrap_or([0; 8]));
        let level = i32::from_ne_bytes(buf[offset + 8..offset + 12].try_into().unwrap_or([0; 4]));
        let kind = i32::from_ne_bytes(buf[offset + 12..offset + 16].try_into().unwrap_or([0; 4]));
        // `offset + CMSG_HEADER <= buf.len()` holds here, so the subtraction cannot wrap; a lying
        // `cmsg_len` (up to usize::MAX) must not overflow the sum.
        if cmsg_len < CMSG_HEADER || cmsg_len > buf.len() - offset {
            break;
        }
        let data = &buf[offset + CMSG_HEADER..offset + cmsg_len];
        decode_one(level, kind, data, out);
        offset += cmsg_align(cmsg_len);
    }
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn read_i64(data: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_ne_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn decode_one(level: i32, kind: i32, data: &[u8], out: &mut RecvControl) {
    match (level, kind) {
        // SO_TIMESTAMPNS gives one timespec; SO_TIMESTAMPING three, the software stamp first (all
        // zero when the packet was not stamped on arrival).
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS | libc::SO_TIMESTAMPING) => {
            if let (Some(sec), Some(nsec)) = (read_i64(data, 0), read_i64(data, 8)) {
                // A time past year 2554 does not fit in u64 nanoseconds: ignore it rather than wrap.
                out.rx_time_ns = u64::try_from(sec)
                    .ok()
                    .zip(u64::try_from(nsec).ok())
                    .and_then(|(sec, nsec)| sec.checked_mul(1_000_000_000)?.checked_add(nsec))
                    .filter(|&ns| ns > 0);
            }
        }
        (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => out.kernel_drops = read_u32(data, 0),
        (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
            // struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
            if let Some(addr) = data.get(8..12) {
                out.ifindex = read_u32(data, 0).unwrap_or(0);
                out.local_ip = Some(IpAddr::V4(Ipv4Addr::new(
                    addr[0], addr[1], addr[2], addr[3],
                )));
            }
        }
        (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
            // struct in6_pktinfo { in6_addr ipi6_addr; int ipi6_ifindex; }
            if let Some(addr) = data.get(0..16) {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(addr);
                out.local_ip = Some(IpAddr::V6(Ipv6Addr::from(octets)));
                out.ifindex = read_u32(data, 16).unwrap_or(0);
            }
        }
        (libc::SOL_UDP, libc::UDP_GRO) => {
            if let Some(size) = read_u32(data, 0) {
                out.segment_size = u16::try_from(size).ok().filter(|&s| s > 0);
            }
        }
        _ => {}
    }
}

/// What one outgoing message needs in its control buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendControl {
    /// Source address to send from (`IP_PKTINFO` / `IPV6_PKTINFO`), for sockets bound to a wildcard address.
    pub source_ip: Option<IpAddr>,
    /// Interface for IPv6 packet info (needed for link-local peers), 0 to let routing choose.
    pub ifindex: u32,
    /// GSO segment size (`UDP_SEGMENT`); 0 sends the message as one datagram.
    pub segment_size: u16,
}

/// Writes one control message at `offset`; returns the offset after it, or `None` if it would not fit.
fn put_cmsg(buf: &mut [u8], offset: usize, level: i32, kind: i32, data: &[u8]) -> Option<usize> {
    let space = cmsg_space(data.len());
    let end = offset.checked_add(space)?;
    if end > buf.len() {
        return None;
    }
    let cmsg_len = CMSG_HEADER + data.len();
    buf[offset..offset + 8].copy_from_slice(&cmsg_len.to_ne_bytes());
    buf[offset + 8..offset + 12].copy_from_slice(&level.to_ne_bytes());
    buf[offset + 12..offset + 16].copy_from_slice(&kind.to_ne_bytes());
    buf[offset + CMSG_HEADER..offset + cmsg_len].copy_from_slice(data);
    buf[offset + cmsg_len..end].fill(0);
    Some(end)
}

/// Encodes `control` into `buf` and returns the number of bytes used (`msg_controllen`).
///
/// Infallible by construction: the buffer is [`SEND_CMSG_SPACE`] bytes, the compile-time sum of the
/// largest packet info and a segment size, which is all that is ever written.
pub fn encode_send_control(control: &SendControl, buf: &mut CmsgBuf<SEND_CMSG_SPACE>) -> usize {
    let buf = &mut buf.0[..];
    let mut used = 0;
    // Each `put_cmsg` below fits: together they take at most SEND_CMSG_SPACE bytes, which is `buf.len()`.
    match control.source_ip {
        Some(IpAddr::V4(ip)) => {
            let mut info = [0u8; IN_PKTINFO_LEN];
            info[4..8].copy_from_slice(&ip.octets()); // ipi_spec_dst: the source to use
            used = put_cmsg(buf, used, libc::IPPROTO_IP, libc::IP_PKTINFO, &info).unwrap_or(used);
        }
        Some(IpAddr::V6(ip)) => {
            let mut info = [0u8; IN6_PKTINFO_LEN];
            info[0..16].copy_from_slice(&ip.octets());
            info[16..20].copy_from_slice(&control.ifindex.to_ne_bytes());
            used =
                put_cmsg(buf, used, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info).unwrap_or(used);
        }
        None => {}
    }
    if control.segment_size > 0 {
        let size: [u8; GSO_SIZE_LEN] = control.segment_size.to_ne_bytes();
        used = put_cmsg(buf, used, libc::SOL_UDP, libc::UDP_SEGMENT, &size).unwrap_or(used);
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addr_round_trips_v4_and_v6() {
        for text in [
            "127.0.0.1:9999",
            "[::1]:443",
            "[fe80::1%3]:53",
            "10.1.2.3:0",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let peer = PeerAddr::from_socket_addr(addr);
            assert_eq!(peer.to_socket_addr(), addr, "{text}");
            let mut name = NameBuf::default();
            name.0[..peer.as_bytes().len()].copy_from_slice(peer.as_bytes());
            assert_eq!(
                PeerAddr::from_name(&name, peer.as_bytes().len()),
                Some(peer)
            );
        }
    }

    #[test]
    fn peer_addr_ignores_what_the_buffer_held_past_the_address() {
        let v4 = PeerAddr::from_socket_addr("10.1.2.3:53".parse().unwrap());
        let mut name = NameBuf([0xee; 128]);
        name.0[..16].copy_from_slice(v4.as_bytes());
        let seen = PeerAddr::from_name(&name, 16).unwrap();
        assert_eq!(seen, v4);
        assert_eq!(seen.fingerprint(), v4.fingerprint());
        // A short IPv6 name is refused, not read past what the kernel wrote.
        let v6 = PeerAddr::from_socket_addr("[::1]:53".parse().unwrap());
        name.0[..28].copy_from_slice(v6.as_bytes());
        assert_eq!(PeerAddr::from_name(&name, 20), None);
        assert_eq!(PeerAddr::from_name(&name, 28), Some(v6));
    }

    #[test]
    fn fingerprints_tell_most_addresses_apart() {
        let peers: Vec<PeerAddr> = (0..2000u32)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0x0a00_0000 + (i % 500));
                PeerAddr::from_socket_addr(SocketAddr::from((ip, 1000 + (i / 500) as u16)))
            })
            .chain((0..100u16).map(|port| {
                PeerAddr::from_socket_addr(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)))
            }))
            .collect();
        let distinct: std::collections::HashSet<u64> =
            peers.iter().map(PeerAddr::fingerprint).collect();
        assert_eq!(distinct.len(), peers.len());
        let again = PeerAddr::from_socket_addr("10.0.0.7:1000".parse().unwrap());
        assert_eq!(again.fingerprint(), peers[7].fingerprint());
    }

    #[test]
    fn peer_addr_rejects_non_ip_names() {
        let mut name = NameBuf::default();
        name.0[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(PeerAddr::from_name(&name, 16), None);
        assert_eq!(PeerAddr::from_name(&name, 200), None);
    }

    /// What the decoder makes of `buf[..len]`.
    fn decoded(buf: &[u8], len: usize) -> RecvControl {
        let mut out = RecvControl::default();
        decode_recv_control(buf, len, &mut out);
        out
    }

    /// Builds a receive-side control buffer the way the kernel would, for the decoder tests.
    fn build(messages: &[(i32, i32, Vec<u8>)]) -> (CmsgBuf<RECV_CMSG_SPACE>, usize) {
        let mut buf = CmsgBuf::<RECV_CMSG_SPACE>::default();
        let mut used = 0;
        for (level, kind, data) in messages {
            used = put_cmsg(&mut buf.0, used, *level, *kind, data).unwrap();
        }
        (buf, used)
    }

    #[test]
    fn decodes_every_receive_message_kind() {
        let mut ts = Vec::new();
        ts.extend_from_slice(&5i64.to_ne_bytes());
        ts.extend_from_slice(&7i64.to_ne_bytes());
        let mut pktinfo = vec![0u8; 12];
        pktinfo[0..4].copy_from_slice(&2u32.to_ne_bytes());
        pktinfo[8..12].copy_from_slice(&[127, 0, 0, 2]);
        let (buf, len) = build(&[
            (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, ts),
            (libc::IPPROTO_IP, libc::IP_PKTINFO, pktinfo),
            (libc::SOL_UDP, libc::UDP_GRO, 1200u32.to_ne_bytes().to_vec()),
            (
                libc::SOL_SOCKET,
                libc::SO_RXQ_OVFL,
                42u32.to_ne_bytes().to_vec(),
            ),
        ]);
        let control = decoded(&buf.0, len);
        assert_eq!(control.rx_time_ns, Some(5_000_000_007));
        assert_eq!(control.local_ip, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(control.ifindex, 2);
        assert_eq!(control.segment_size, Some(1200));
        assert_eq!(control.kernel_drops, Some(42));
    }

    #[test]
    fn takes_the_software_stamp_of_timestamping_and_none_when_it_is_zero() {
        let stamps = |software: (i64, i64)| {
            let mut data = Vec::new();
            for (sec, nsec) in [software, (0, 0), (9, 9)] {
                data.extend_from_slice(&sec.to_ne_bytes());
                data.extend_from_slice(&nsec.to_ne_bytes());
            }
            let (buf, len) = build(&[(libc::SOL_SOCKET, libc::SO_TIMESTAMPING, data)]);
            decoded(&buf.0, len).rx_time_ns
        };
        assert_eq!(stamps((3, 4)), Some(3_000_000_004));
        // Not stamped on arrival (only a hardware stamp, or none): no receive time.
        assert_eq!(stamps((0, 0)), None);
    }

    #[test]
    fn decodes_ipv6_pktinfo_and_ignores_garbage() {
        let mut info = vec![0u8; 20];
        info[15] = 1;
        info[16..20].copy_from_slice(&1u32.to_ne_bytes());
        let (mut buf, len) = build(&[(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)]);
        let control = decoded(&buf.0, len);
        assert_eq!(control.local_ip, Some("::1".parse().unwrap()));
        assert_eq!(control.ifindex, 1);
        // A header claiming more bytes than were written stops decoding instead of reading past the end.
        buf.0[0..8].copy_from_slice(&10_000usize.to_ne_bytes());
        assert_eq!(decoded(&buf.0, len), RecvControl::default());
    }

    #[test]
    fn lying_lengths_and_huge_timestamps_are_ignored_not_wrapped() {
        // A header claiming usize::MAX bytes must stop decoding, not overflow `offset + len`.
        let mut buf = vec![0u8; 32];
        buf[0..8].copy_from_slice(&16usize.to_ne_bytes());
        buf[16..24].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(decoded(&buf, 32), RecvControl::default());
        let mut ts = Vec::new();
        ts.extend_from_slice(&i64::MAX.to_ne_bytes());
        ts.extend_from_slice(&0i64.to_ne_bytes());
        let (buf, len) = build(&[(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, ts)]);
        assert_eq!(decoded(&buf.0, len).rx_time_ns, None);
    }

    #[test]
    fn encodes_within_send_space_and_round_trips_pktinfo() {
        let mut buf = CmsgBuf::<SEND_CMSG_SPACE>::default();
        let control = SendControl {
            source_ip: Some("::1".parse().unwrap()),
            ifindex: 1,
            segment_size: 1400,
        };
        let used = encode_send_control(&control, &mut buf);
        assert_eq!(
            used, SEND_CMSG_SPACE,
            "the largest message fills the space exactly"
        );
        let decoded = decoded(&buf.0, used);
        assert_eq!(decoded.local_ip, control.source_ip);
        assert_eq!(decoded.ifindex, 1);
        let none = encode_send_control(&SendControl::default(), &mut buf);
        assert_eq!(none, 0);
        assert!(put_cmsg(&mut [0u8; 8], 0, 1, 2, &[0u8; 4]).is_none());
    }
}
