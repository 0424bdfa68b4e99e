//! Reading the kernel's numbers from `/proc`: a sysctl by name and the UDP counters of `/proc/net/snmp{,6}`.

/// Reads a `/proc/sys` integer by its sysctl name.
pub fn read_sysctl(name: &str) -> std::result::Result<u64, String> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.trim()
        .parse()
        .map_err(|_| format!("{path} holds {:?}, not a number", text.trim()))
}

/// The `Udp:` counter `field` from `/proc/net/snmp` text (a header line of names, then a line of values).
pub fn snmp_counter(snmp: &str, field: &str) -> Option<u64> {
    let mut lines = snmp.lines().filter(|line| line.starts_with("Udp:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let index = names.split_whitespace().position(|name| name == field)?;
    values.split_whitespace().nth(index)?.parse().ok()
}

/// The `Udp6FIELD` counter from `/proc/net/snmp6` text (one `name value` pair per line).
pub fn snmp6_counter(snmp6: &str, field: &str) -> Option<u64> {
    let key = format!("Udp6{field}");
    snmp6.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then(|| parts.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
        Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
        Udp: 100 2 7 90 7 3\n";

    #[test]
    fn snmp_counters_are_found_by_name() {
        assert_eq!(snmp_counter(SNMP, "RcvbufErrors"), Some(7));
        assert_eq!(snmp_counter(SNMP, "SndbufErrors"), Some(3));
        assert_eq!(snmp_counter(SNMP, "Nope"), None);
        assert_eq!(
            snmp6_counter(
                "Udp6InDatagrams 5\nUdp6RcvbufErrors   \t 4\n",
                "RcvbufErrors"
            ),
            Some(4)
        );
    }

    #[test]
    fn a_missing_sysctl_is_explained() {
        let error = read_sysctl("net.core.no_such_sysctl").unwrap_err();
        assert!(
            error.contains("/proc/sys/net/core/no_such_sysctl"),
            "{error}"
        );
    }
}
