//! The guard stage's settings as typed values: loop guard ports, amplification cap, per-source rate
//! limit and ACLs, each parsed from the text a person types (flags and the TOML file use the same parsers).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Ports that answer anything sent to them (echo, daytime, chargen, ...) or amplify (DNS, NTP, SSDP,
/// memcached, ...): a reply to one of them could start a loop or make udpd a reflector.
pub const DEFAULT_LOOP_GUARD_PORTS: [u16; 14] = [
    7, 13, 17, 19, 37, 53, 111, 123, 137, 161, 389, 1900, 5353, 11211,
];

/// Default `--max-amplification`: the factor RFC 9000 allows toward an unvalidated address.
pub const DEFAULT_MAX_AMPLIFICATION: f64 = 3.0;

/// Default `--limit-prefix`: sources are limited per /32 (IPv4) and per /56 (IPv6).
pub const DEFAULT_LIMIT_PREFIX: (u8, u8) = (32, 56);

/// Default `--limit-table`: buckets per worker (fixed at start; memory does not grow with sources).
pub const DEFAULT_LIMIT_TABLE: usize = 65_536;

/// What the guard stage checks before the handler sees a datagram.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Refuse to answer port 0, our own port, our own address and port, and `loop_guard_ports`.
    pub loop_guard: bool,
    pub loop_guard_ports: Vec<u16>,
    /// Largest reply-to-request ratio in whole-packet bytes; `None` turns the cap off.
    pub max_amplification: Option<f64>,
    /// Per-source token bucket; `None` when off.
    pub limit: Option<RateLimit>,
    /// Prefix lengths that make one "source" for the limiter: (IPv4, IPv6).
    pub limit_prefix: (u8, u8),
    /// Buckets per worker.
    pub limit_table: usize,
    /// Count what the limiter would refuse, but answer it.
    pub limit_dry_run: bool,
    /// Sources allowed and denied; the most specific match wins (deny on a tie); a source no rule
    /// matches is allowed when `allow` is empty and denied otherwise (allow-list mode).
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            loop_guard: true,
            loop_guard_ports: DEFAULT_LOOP_GUARD_PORTS.to_vec(),
            max_amplification: Some(DEFAULT_MAX_AMPLIFICATION),
            limit: None,
            limit_prefix: DEFAULT_LIMIT_PREFIX,
            limit_table: DEFAULT_LIMIT_TABLE,
            limit_dry_run: false,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// An address block such as `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address, with the host bits cleared.
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this block. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_u32(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_u128(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The network mask of an IPv4 prefix length (0 to 32; longer counts as 32).
pub fn mask_u32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

/// The network mask of an IPv6 prefix length (0 to 128; longer counts as 128).
pub fn mask_u128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not an address block: use e.g. 192.0.2.0/24, 2001:db8::/32 or 198.51.100.7")
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & mask_u32(prefix)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & mask_u128(prefix)).into()),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A token bucket: `rate` datagrams per second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub rate: u32,
    pub burst: u32,
}

/// Largest `--limit` rate or burst (per source, per second).
pub const MAX_LIMIT: u32 = 100_000_000;

impl FromStr for RateLimit {
    type Err = String;

    /// `RATE` or `RATE/BURST`, both whole numbers from 1; the burst defaults to the rate.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not a rate limit: use RATE or RATE/BURST in datagrams per second, e.g. 200/50 (1 to {MAX_LIMIT})")
        };
        let number = |t: &str| {
            t.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
        };
        let (rate, burst) = match text.split_once('/') {
            Some((rate, burst)) => (
                number(rate).ok_or_else(bad)?,
                number(burst).ok_or_else(bad)?,
            ),
            None => {
                let rate = number(text).ok_or_else(bad)?;
                (rate, rate)
            }
        };
        Ok(RateLimit { rate, burst })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.rate, self.burst)
    }
}

/// Parses a port list such as `7,19,53` (an empty text means no ports).
pub fn parse_port_list(text: &str) -> Result<Vec<u16>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|part| {
            part.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("{text:?} is not a port list: use ports from 1 to 65535 separated by commas, e.g. 7,19,53")
            })
        })
        .collect()
}

/// Parses `--limit-prefix V4/V6`, e.g. `32/56` (IPv4 1 to 32, IPv6 1 to 128).
pub fn parse_prefix_pair(text: &str) -> Result<(u8, u8), String> {
    let bad = || {
        format!("{text:?} is not a prefix pair: use V4/V6 lengths such as 32/56 (IPv4 1-32, IPv6 1-128)")
    };
    let (v4, v6) = text.split_once('/').ok_or_else(bad)?;
    let v4 = v4
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(bad)?;
    let v6 = v6
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=128).contains(p))
        .ok_or_else(bad)?;
    Ok((v4, v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_normalise_and_match() {
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let host: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(host.prefix, 128);
        assert!(host.contains("2001:db8::1".parse().unwrap()));
        assert!(!host.contains("2001:db8::2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "nope",
            "1.2.3.4/x",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_limits_and_lists_parse() {
        assert_eq!(
            "200/50".parse::<RateLimit>().unwrap(),
            RateLimit {
                rate: 200,
                burst: 50
            }
        );
        assert_eq!(
            "10".parse::<RateLimit>().unwrap(),
            RateLimit {
                rate: 10,
                burst: 10
            }
        );
        for bad in ["0", "1/0", "x", "", "200000000", "5/"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
        assert_eq!(parse_port_list("7, 19,53").unwrap(), vec![7, 19, 53]);
        assert_eq!(parse_port_list("").unwrap(), Vec::<u16>::new());
        assert!(parse_port_list("0").is_err() && parse_port_list("70000").is_err());
        assert_eq!(parse_prefix_pair("24/48").unwrap(), (24, 48));
        assert!(parse_prefix_pair("33/48").is_err() && parse_prefix_pair("24").is_err());
    }
}
