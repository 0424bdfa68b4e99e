//! Which addresses the worker sockets bind: the listen address, and for the IPv4 wildcard also each
//! local IPv4 address found at start.
//!
//! A socket bound to `0.0.0.0` must learn each request's destination (`IP_PKTINFO` on every receive)
//! and name it as the reply's source (on every send), so that a multi-homed host answers from the
//! address the client sent to. A socket bound to one address needs neither: the kernel delivers to it
//! every datagram for that address (the more specific bind wins) and its replies leave from it. So a
//! wildcard listen also binds one socket group per local address; the wildcard group stays, with packet
//! info, for addresses added after start (and those left out here).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// At most this many local addresses get their own sockets; a host with more keeps only the wildcard
/// (each group is one thread per worker).
pub const MAX_ADDRESS_GROUPS: usize = 8;

/// The socket groups a server binds, each with one socket per worker: the listen address first, then
/// the local addresses split off it. Replies from a split group need no packet info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketGroups {
    listen: SocketAddr,
    split: Vec<Ipv4Addr>,
}

impl SocketGroups {
    /// Only the listen address.
    pub fn only(listen: SocketAddr) -> SocketGroups {
        SocketGroups {
            listen,
            split: Vec::new(),
        }
    }

    /// The groups for `listen` when the host has the IPv4 addresses `found`: with the IPv4 wildcard and
    /// `split` on, one group per usable address (unicast, not link-local, at most
    /// [`MAX_ADDRESS_GROUPS`]; with more, none), besides the wildcard. Also says, when some were left
    /// out, why (one line).
    pub fn plan(
        listen: SocketAddr,
        split: bool,
        found: &[Ipv4Addr],
    ) -> (SocketGroups, Option<String>) {
        if !split || !splits(listen) {
            return (SocketGroups::only(listen), None);
        }
        let mut usable: Vec<Ipv4Addr> = found.iter().copied().filter(is_splittable).collect();
        usable.sort();
        usable.dedup();
        if usable.len() > MAX_ADDRESS_GROUPS {
            let note = format!(
                "{} local IPv4 addresses (more than {MAX_ADDRESS_GROUPS}): every request is served by the wildcard socket, with packet info",
                usable.len()
            );
            return (SocketGroups::only(listen), Some(note));
        }
        (
            SocketGroups {
                listen,
                split: usable,
            },
            None,
        )
    }

    /// The listen address followed by the split addresses, each with the listen port (`port`, once the
    /// first socket has picked one for port 0).
    pub fn addresses(&self, port: u16) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.listen.ip())
            .chain(self.split.iter().map(|&ip| IpAddr::V4(ip)))
            .map(move |ip| SocketAddr::new(ip, port))
    }

    /// How many groups (the listen address counts, so never none).
    pub fn count(&self) -> usize {
        1 + self.split.len()
    }

    /// Only the listen address.
    pub fn is_only_listen(&self) -> bool {
        self.split.is_empty()
    }

    /// Drops the split addresses `keep` refuses (those that could not be bound).
    pub fn retain(&mut self, keep: impl Fn(Ipv4Addr) -> bool) {
        self.split.retain(|&ip| keep(ip));
    }

    /// The split addresses.
    pub fn split(&self) -> &[Ipv4Addr] {
        &self.split
    }

    /// The groups that sockets handed over on reload were bound to (`bound`, group after group, one
    /// socket per worker each, the listen address first), or why they cannot serve `listen` with
    /// `workers` workers.
    pub fn of_inherited(
        listen: SocketAddr,
        workers: usize,
        bound: &[SocketAddr],
    ) -> std::result::Result<SocketGroups, String> {
        let mut distinct: Vec<SocketAddr> = Vec::new();
        for at in bound {
            if !distinct.contains(at) {
                distinct.push(*at);
            }
        }
        let before = bound.len() / distinct.len().max(1);
        if before != workers {
            return Err(format!(
                "reload refused: --workers changed from {before} to {workers}, which needs other sockets: restart udpd to apply it"
            ));
        }
        let port_ok = |at: &SocketAddr| listen.port() == 0 || at.port() == listen.port();
        let first = bound[0];
        if first.ip() != listen.ip() || !port_ok(&first) {
            return Err(format!(
                "reload refused: the listen address changed from {first} to {listen}, which needs new sockets: restart udpd to apply it"
            ));
        }
        let mut split = Vec::new();
        for (index, group) in bound.chunks(workers).enumerate() {
            let at = group[0];
            if group.iter().any(|other| *other != at) || at.port() != first.port() {
                return Err(format!(
                    "reload refused: the handed-over sockets are not {workers} per address (--workers changed?): restart udpd to apply it"
                ));
            }
            if index == 0 {
                continue;
            }
            let wildcard = splits(listen);
            match at.ip() {
                IpAddr::V4(ip) if wildcard && is_splittable(&ip) && !split.contains(&ip) => {
                    split.push(ip)
                }
                ip if ip == listen.ip() || matches!(ip, IpAddr::V4(ip) if split.contains(&ip)) => {
                    return Err(format!(
                        "reload refused: the handed-over sockets are not {workers} per address (--workers changed?): restart udpd to apply it"
                    ))
                }
                _ => {
                    return Err(format!(
                        "reload refused: a handed-over socket is bound to {at}, which {listen} does not cover: restart udpd to apply it"
                    ))
                }
            }
        }
        Ok(SocketGroups { listen, split })
    }
}

/// Whether a listen address is one that splits into local addresses: the IPv4 wildcard.
pub fn splits(listen: SocketAddr) -> bool {
    listen.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

/// Whether `ip` may have its own socket group: a unicast address whose replies need no interface
/// named (link-local addresses may repeat on several interfaces, so they stay on the wildcard).
fn is_splittable(ip: &Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_link_local())
}

/// The IPv4 addresses of the interfaces that are up (empty if they cannot be listed: the wildcard
/// then serves everything).
pub fn local_ipv4_addresses() -> Vec<Ipv4Addr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter(|interface| {
            interface
                .flags
                .contains(nix::net::if_::InterfaceFlags::IFF_UP)
        })
        .filter_map(|interface| Some(interface.address?.as_sockaddr_in()?.ip()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn the_wildcard_splits_into_its_usable_local_addresses() {
        let listen: SocketAddr = "0.0.0.0:9999".parse().unwrap();
        let found = [
            v4("10.0.0.5"),
            v4("127.0.0.1"),
            v4("169.254.1.1"),
            v4("10.0.0.5"),
            v4("0.0.0.0"),
        ];
        let (groups, note) = SocketGroups::plan(listen, true, &found);
        assert_eq!(note, None);
        let bound: Vec<SocketAddr> = groups.addresses(9999).collect();
        let expected: Vec<SocketAddr> = ["0.0.0.0:9999", "10.0.0.5:9999", "127.0.0.1:9999"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert_eq!(bound, expected);
        assert_eq!(groups.count(), 3);
    }

    #[test]
    fn only_the_ipv4_wildcard_splits_and_only_when_asked() {
        let found = [v4("127.0.0.1")];
        for listen in ["127.0.0.1:9", "[::]:9", "[::1]:9"] {
            let listen: SocketAddr = listen.parse().unwrap();
            let (groups, _) = SocketGroups::plan(listen, true, &found);
            assert!(groups.is_only_listen(), "{listen}");
        }
        let wildcard: SocketAddr = "0.0.0.0:9".parse().unwrap();
        assert!(SocketGroups::plan(wildcard, false, &found)
            .0
            .is_only_listen());
        assert!(SocketGroups::plan(wildcard, true, &[]).0.is_only_listen());
    }

    #[test]
    fn too_many_addresses_keep_only_the_wildcard_and_say_so() {
        let found: Vec<Ipv4Addr> = (1..=MAX_ADDRESS_GROUPS as u8 + 1)
            .map(|i| Ipv4Addr::new(10, 0, 0, i))
            .collect();
        let (groups, note) = SocketGroups::plan("0.0.0.0:9".parse().unwrap(), true, &found);
        assert!(groups.is_only_listen());
        assert!(note.unwrap().contains("more than 8"));
        let (groups, note) = SocketGroups::plan(
            "0.0.0.0:9".parse().unwrap(),
            true,
            &found[..MAX_ADDRESS_GROUPS],
        );
        assert_eq!((groups.count(), note), (MAX_ADDRESS_GROUPS + 1, None));
    }

    #[test]
    fn inherited_sockets_give_back_their_groups_or_a_reason() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        let listen = at("0.0.0.0:9");
        let bound = [
            at("0.0.0.0:9"),
            at("0.0.0.0:9"),
            at("127.0.0.1:9"),
            at("127.0.0.1:9"),
        ];
        let groups = SocketGroups::of_inherited(listen, 2, &bound).unwrap();
        assert_eq!(groups.split(), &[v4("127.0.0.1")]);
        // An older udpd handed over only the wildcard: adopted as it is.
        assert!(SocketGroups::of_inherited(listen, 2, &bound[..2])
            .unwrap()
            .is_only_listen());
        let refused = |workers, bound: &[SocketAddr], listen| {
            SocketGroups::of_inherited(listen, workers, bound).unwrap_err()
        };
        assert!(refused(3, &bound, listen).contains("--workers changed from 2 to 3"));
        assert!(refused(1, &bound, listen).contains("--workers changed from 2 to 1"));
        assert!(refused(1, &bound[..3], listen).contains("not 1 per address"));
        assert!(refused(2, &bound, at("127.0.0.1:9")).contains("listen address changed"));
        assert!(refused(2, &bound, at("0.0.0.0:10")).contains("listen address changed"));
        let mixed = [at("0.0.0.0:9"), at("127.0.0.1:9")];
        assert!(refused(2, &mixed, listen).contains("--workers changed from 1 to 2"));
        let shuffled = [
            at("0.0.0.0:9"),
            at("127.0.0.1:9"),
            at("0.0.0.0:9"),
            at("127.0.0.1:9"),
        ];
        assert!(refused(2, &shuffled, listen).contains("not 2 per address"));
        let v6 = [at("[::]:9"), at("[::1]:9")];
        assert!(refused(1, &v6, at("[::]:9")).contains("does not cover"));
    }
}
