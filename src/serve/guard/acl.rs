//! Source ACLs: `allow` and `deny` address blocks, the most specific match wins, compiled into two small
//! sorted tables (IPv4, IPv6) that a datagram walks without allocating.
//!
//! Semantics, in full:
//! - Of all blocks (allow and deny) that contain the source, the longest prefix decides.
//! - A deny and an allow of the same length that both contain it: deny wins.
//! - No block contains it: allowed when the allow list is empty (deny-list mode), denied when the
//!   allow list has any entry (allow-list mode: only what is allowed gets answered, in both families —
//!   an allow list of IPv4 blocks alone denies every IPv6 source).
//! - IPv4-mapped IPv6 sources (`::ffff:a.b.c.d`) are matched as the IPv4 address they carry.

use std::net::IpAddr;

use crate::config::guard::{mask_u128, mask_u32, Cidr};

/// One block, as the bits it fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule<T> {
    network: T,
    mask: T,
    prefix: u8,
    allow: bool,
}

impl<T: Copy + std::ops::BitAnd<Output = T>> Rule<T> {
    fn new(network: T, mask: T, cidr: &Cidr, allow: bool) -> Self {
        Rule {
            network: network & mask,
            mask,
            prefix: cidr.prefix,
            allow,
        }
    }
}

/// The compiled ACL.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    v4: Vec<Rule<u32>>,
    v6: Vec<Rule<u128>>,
    /// What a source no rule matches gets.
    default_allow: bool,
}

impl Acl {
    pub fn new(allow: &[Cidr], deny: &[Cidr]) -> Self {
        let mut acl = Acl {
            v4: Vec::new(),
            v6: Vec::new(),
            default_allow: allow.is_empty(),
        };
        let rules = deny
            .iter()
            .map(|cidr| (cidr, false))
            .chain(allow.iter().map(|cidr| (cidr, true)));
        for (cidr, allow) in rules {
            match cidr.network {
                IpAddr::V4(net) => acl.v4.push(Rule::new(
                    u32::from(net),
                    mask_u32(cidr.prefix),
                    cidr,
                    allow,
                )),
                IpAddr::V6(net) => acl.v6.push(Rule::new(
                    u128::from(net),
                    mask_u128(cidr.prefix),
                    cidr,
                    allow,
                )),
            }
        }
        // Longest prefix first; at equal length deny (false) before allow (true): the first match decides.
        acl.v4
            .sort_by_key(|rule| (std::cmp::Reverse(rule.prefix), rule.allow));
        acl.v6
            .sort_by_key(|rule| (std::cmp::Reverse(rule.prefix), rule.allow));
        acl.v4.dedup_by_key(|rule| (rule.network, rule.prefix));
        acl.v6.dedup_by_key(|rule| (rule.network, rule.prefix));
        acl
    }

    /// Whether the ACL lets everything through (no rules at all): the guard can skip it.
    pub fn is_open(&self) -> bool {
        self.default_allow && self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` (already canonical: IPv4-mapped IPv6 given as IPv4) may be answered.
    #[inline]
    pub fn allows(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => first_match(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => first_match(&self.v6, u128::from(v6)),
        }
        .unwrap_or(self.default_allow)
    }
}

#[inline]
fn first_match<T>(rules: &[Rule<T>], ip: T) -> Option<bool>
where
    T: Copy + PartialEq + std::ops::BitAnd<Output = T>,
{
    rules
        .iter()
        .find(|rule| ip & rule.mask == rule.network)
        .map(|rule| rule.allow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::guard::canonical;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|text| text.parse().unwrap()).collect()
    }

    fn allows(acl: &Acl, ip: &str) -> bool {
        acl.allows(canonical(ip.parse().unwrap()))
    }

    #[test]
    fn no_rules_allow_everything() {
        let acl = Acl::new(&[], &[]);
        assert!(acl.is_open());
        assert!(allows(&acl, "192.0.2.1") && allows(&acl, "2001:db8::1"));
    }

    #[test]
    fn deny_list_mode_denies_only_what_it_lists() {
        let acl = Acl::new(&[], &cidrs(&["192.0.2.0/24", "2001:db8::/32"]));
        assert!(!acl.is_open());
        assert!(!allows(&acl, "192.0.2.77"));
        assert!(!allows(&acl, "::ffff:192.0.2.77"), "mapped matches IPv4");
        assert!(!allows(&acl, "2001:db8:1::5"));
        assert!(allows(&acl, "192.0.3.1"));
        assert!(allows(&acl, "2001:db9::1"));
    }

    #[test]
    fn the_most_specific_block_wins_either_way() {
        let acl = Acl::new(
            &cidrs(&["10.1.2.0/24", "2001:db8:1::/48"]),
            &cidrs(&["10.0.0.0/8", "10.1.2.3", "2001:db8::/32"]),
        );
        assert!(!allows(&acl, "10.9.9.9"), "only the /8 deny matches");
        assert!(allows(&acl, "10.1.2.4"), "the /24 allow beats the /8 deny");
        assert!(
            !allows(&acl, "10.1.2.3"),
            "the /32 deny beats the /24 allow"
        );
        assert!(allows(&acl, "2001:db8:1::9"));
        assert!(!allows(&acl, "2001:db8:2::9"));
    }

    #[test]
    fn at_equal_length_deny_wins() {
        let acl = Acl::new(&cidrs(&["192.0.2.0/24"]), &cidrs(&["192.0.2.0/24"]));
        assert!(!allows(&acl, "192.0.2.1"));
        let acl = Acl::new(&cidrs(&["::/0"]), &cidrs(&["::/0"]));
        assert!(!allows(&acl, "2001:db8::1"));
    }

    #[test]
    fn allow_list_mode_denies_what_no_block_allows_in_both_families() {
        let acl = Acl::new(&cidrs(&["127.0.0.0/8"]), &[]);
        assert!(allows(&acl, "127.0.0.1"));
        assert!(allows(&acl, "::ffff:127.0.0.1"));
        assert!(!allows(&acl, "192.0.2.1"));
        assert!(!allows(&acl, "::1"), "no IPv6 block is allowed");
        let acl = Acl::new(&cidrs(&["0.0.0.0/0"]), &cidrs(&["192.0.2.0/24"]));
        assert!(allows(&acl, "198.51.100.1") && !allows(&acl, "192.0.2.1"));
    }

    #[test]
    fn masks_cover_the_edges() {
        assert_eq!(mask_u32(0), 0);
        assert_eq!(mask_u32(1), 0x8000_0000);
        assert_eq!(mask_u32(32), u32::MAX);
        assert_eq!(mask_u32(99), u32::MAX);
        assert_eq!(mask_u128(0), 0);
        assert_eq!(mask_u128(56), u128::MAX << 72);
        assert_eq!(mask_u128(128), u128::MAX);
    }
}
