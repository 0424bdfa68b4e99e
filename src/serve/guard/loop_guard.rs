//! The loop guard's two tests: source ports that must never be answered (our own port, and a bit set of
//! port 0 and the listed ports) and source addresses that no real sender can have.

use std::net::IpAddr;

/// A set of ports, one bit each up to the highest port in the set: O(1) membership, and no memory read
/// at all for a port above the highest (most clients' ephemeral ports, with the default list).
#[derive(Clone)]
pub struct PortSet {
    /// Bit `port & 63` of word `port >> 6`; as many words as the highest port needs (at most 1,024).
    bits: Box<[u64]>,
}

impl PortSet {
    pub fn new(ports: impl IntoIterator<Item = u16>) -> Self {
        let ports: Vec<u16> = ports.into_iter().collect();
        let words = ports
            .iter()
            .max()
            .map_or(0, |&max| usize::from(max >> 6) + 1);
        let mut bits = vec![0u64; words].into_boxed_slice();
        for port in ports {
            bits[usize::from(port >> 6)] |= 1 << (port & 63);
        }
        PortSet { bits }
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits
            .get(usize::from(port >> 6))
            .is_some_and(|word| word & (1 << (port & 63)) != 0)
    }

    /// How many ports are in the set.
    pub fn len(&self) -> usize {
        self.bits
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The source ports the loop guard refuses: our own (a reply to it could be answered by a copy of
/// ourselves) and a set of port 0 and the listed ones. Our port is compared on its own, so that the set
/// ends at the highest listed port (11,211 by default) however high our port is.
#[derive(Clone, Debug)]
pub struct LoopPorts {
    own: u16,
    listed: PortSet,
}

impl LoopPorts {
    pub fn new(own: u16, listed: impl IntoIterator<Item = u16>) -> Self {
        LoopPorts {
            own,
            listed: PortSet::new(std::iter::once(0).chain(listed)),
        }
    }

    #[inline]
    pub fn refuses(&self, port: u16) -> bool {
        port == self.own || self.listed.contains(port)
    }
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports = (0..=u16::MAX).filter(|&port| self.contains(port));
        f.debug_set().entries(ports).finish()
    }
}

/// Whether `ip` (already canonical: IPv4-mapped IPv6 given as IPv4) cannot be the source of a real
/// datagram, so that a datagram claiming it is forged: the unspecified address (0.0.0.0, ::), multicast
/// (224.0.0.0/4, ff00::/8) and the IPv4 limited broadcast 255.255.255.255.
#[inline]
pub fn impossible_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::guard::canonical;

    #[test]
    fn a_port_set_holds_exactly_its_ports() {
        let set = PortSet::new([0, 7, 63, 64, 65_535]);
        for port in [0, 7, 63, 64, 65_535] {
            assert!(set.contains(port), "{port}");
        }
        for port in [1, 6, 8, 62, 65, 65_534] {
            assert!(!set.contains(port), "{port}");
        }
        assert_eq!(set.len(), 5);
        let low = PortSet::new([7, 11_211]);
        for port in [7, 11_211] {
            assert!(low.contains(port), "{port}");
        }
        for port in [0, 8, 11_210, 11_212, 11_264, 32_768, 65_535] {
            assert!(!low.contains(port), "{port}");
        }
        assert!(PortSet::new([]).is_empty());
        assert_eq!(format!("{:?}", PortSet::new([9, 3])), "{3, 9}");
    }

    #[test]
    fn loop_ports_refuse_port_zero_our_port_and_the_listed_ones_only() {
        let ports = LoopPorts::new(47_000, [53, 11_211]);
        for port in [0, 53, 11_211, 47_000] {
            assert!(ports.refuses(port), "{port}");
        }
        for port in [1, 52, 54, 11_212, 32_768, 46_999, 47_001, 65_535] {
            assert!(!ports.refuses(port), "{port}");
        }
        // Our own port far above the list does not stretch the set.
        assert_eq!(ports.listed.bits.len(), usize::from(11_211u16 >> 6) + 1);
    }

    #[test]
    fn impossible_sources_are_recognised_in_every_form() {
        for text in [
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.255",
            "255.255.255.255",
            "::",
            "ff02::1",
            "ff0e::1",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.251",
            "::ffff:255.255.255.255",
        ] {
            let ip = canonical(text.parse().unwrap());
            assert!(impossible_source(ip), "{text}");
        }
        for text in [
            "127.0.0.1",
            "10.0.0.1",
            "192.0.2.255",
            "223.255.255.255",
            "::1",
            "2001:db8::1",
            "fe80::1",
            "::ffff:192.0.2.1",
        ] {
            let ip = canonical(text.parse().unwrap());
            assert!(!impossible_source(ip), "{text}");
        }
    }
}
