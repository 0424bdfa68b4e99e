//! Reading the kernel's numbers from `/proc`: a sysctl by name, the UDP counters of `/proc/net/snmp{,6}`
//! and the per-CPU times of `/proc/stat`.

use std::collections::BTreeMap;

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

/// One CPU's time since boot from `/proc/stat`, in clock ticks, in the three parts a load check needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Running anything: user, nice, system, irq and softirq time (guest time is part of user).
    pub busy: u64,
    /// Idle or waiting for I/O.
    pub idle: u64,
    /// Taken by the hypervisor for other guests while this CPU had work (`steal`).
    pub steal: u64,
}

impl CpuTimes {
    /// What changed from `earlier` to `self` (zero where a counter went backwards).
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            busy: self.busy.saturating_sub(earlier.busy),
            idle: self.idle.saturating_sub(earlier.idle),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }

    /// Every tick counted.
    pub fn total(&self) -> u64 {
        self.busy + self.idle + self.steal
    }
}

/// The `cpuN` lines of `/proc/stat` text, by CPU id (the summary `cpu` line and malformed lines are skipped;
/// a line missing the later fields of older kernels counts them as zero).
pub fn cpu_times(stat: &str) -> BTreeMap<usize, CpuTimes> {
    stat.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?.strip_prefix("cpu")?.parse().ok()?;
            let ticks: Vec<u64> = fields.map_while(|field| field.parse().ok()).collect();
            let tick = |i: usize| ticks.get(i).copied().unwrap_or(0);
            (ticks.len() >= 4).then(|| {
                let times = CpuTimes {
                    busy: tick(0) + tick(1) + tick(2) + tick(5) + tick(6),
                    idle: tick(3) + tick(4),
                    steal: tick(7),
                };
                (id, times)
            })
        })
        .collect()
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
    fn cpu_times_split_busy_idle_and_steal() {
        let stat = "cpu  9 9 9 9 9 9 9 9 0 0\n\
            cpu0 10 1 20 300 4 5 6 7 3 0\n\
            cpu1 1 0 1 50\n\
            cpu2 x y\n\
            intr 12345\n";
        let times = cpu_times(stat);
        assert_eq!(times.len(), 2, "{times:?}");
        assert_eq!(
            times[&0],
            CpuTimes {
                busy: 10 + 1 + 20 + 5 + 6,
                idle: 304,
                steal: 7
            }
        );
        assert_eq!(
            times[&1],
            CpuTimes {
                busy: 2,
                idle: 50,
                steal: 0
            }
        );
        let later = CpuTimes {
            busy: 50,
            idle: 300,
            steal: 9,
        };
        assert_eq!(
            later.since(&times[&0]),
            CpuTimes {
                busy: 8,
                idle: 0,
                steal: 2
            }
        );
        assert_eq!(later.total(), 359);
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
