//! Every number the kernel imposes on a UDP datapath, in one place: batch, GSO, GRO and payload limits.

/// The most messages the kernel accepts in one `recvmmsg`/`sendmmsg` call (`UIO_MAXIOV`).
pub const MAX_BATCH: usize = 1024;

/// Most segments the kernel accepts in one `UDP_SEGMENT` (GSO) message (`UDP_MAX_SEGMENTS` on older kernels).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// Most payload bytes udpd puts in one GSO message: the train must fit one IP datagram with its headers.
pub const GSO_MAX_BYTES: usize = 65_000;

/// A receive slot large enough for any GRO-coalesced train (at most 64 KiB of UDP payload).
pub const GRO_SLOT: usize = 65_536;

/// Largest UDP payload over IPv4: 65,535 minus the 20-byte IP and 8-byte UDP headers.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Largest datagram a socket may ever hand us: the IPv6 limit (65,535 minus the 8-byte UDP header) and
/// then some, so that a `--max-datagram` of this size cuts nothing.
pub const MAX_DATAGRAM: usize = 65_535;

/// Bytes an IPv4 UDP datagram costs on the wire beyond its payload (IP and UDP headers).
pub const IPV4_UDP_OVERHEAD: usize = 28;

/// Bytes an IPv6 UDP datagram costs on the wire beyond its payload (IPv6 and UDP headers).
pub const IPV6_UDP_OVERHEAD: usize = 48;
