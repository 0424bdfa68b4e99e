//! CPU lists (`--cpus 0,2-3`): parsed and checked against the CPUs this process may use, with a range's
//! size known before it is ever expanded, so no list can make udpd allocate more than a few KiB.

use crate::config::kinds::Problem;

/// Most CPU ids one list may name, and most workers udpd starts whatever the source.
pub const MAX_CPUS: usize = 1024;

/// CPU ids at or above this are refused whatever the affinity mask says.
pub const CPU_ID_LIMIT: u64 = 1024 * 64;

/// CPU ids this process may run on (its affinity mask), in ascending order.
pub fn available_cpus() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .filter(|id| (*id as u64) < CPU_ID_LIMIT)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        ids = (0..n.min(MAX_CPUS)).collect();
    }
    ids
}

/// The CPUs workers are pinned to when no list is given: the available ones, at most [`MAX_CPUS`].
pub fn default_cpus() -> Vec<usize> {
    let mut ids = available_cpus();
    ids.truncate(MAX_CPUS);
    ids
}

/// Parses a CPU list such as `0,2-3` into ids, in the order given. Refuses reversed ranges, duplicates,
/// more than [`MAX_CPUS`] ids, and any id not in `allowed` (the affinity mask, ascending).
pub fn parse_cpu_list(text: &str, allowed: &[usize]) -> Result<Vec<usize>, Problem> {
    let number = |t: &str| t.trim().parse::<u64>().map_err(|_| Problem::OutOfRange);
    let mut ranges = Vec::new();
    let mut count: u64 = 0;
    for part in text.split(',') {
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (number(low)?, number(high)?),
            None => {
                let id = number(part)?;
                (id, id)
            }
        };
        if low > high {
            return Err(Problem::OutOfRange);
        }
        count = count.saturating_add(high - low).saturating_add(1);
        if count > MAX_CPUS as u64 {
            return Err(Problem::Refused(format!(
                "names more than {MAX_CPUS} CPUs: list at most {MAX_CPUS} (allowed: {})",
                format_cpu_list(allowed)
            )));
        }
        ranges.push((low, high));
    }
    // At most MAX_CPUS ids from here on: expanding is bounded.
    let mut ids = Vec::with_capacity(count as usize);
    for (low, high) in ranges {
        for id in low..=high {
            let usable = id < CPU_ID_LIMIT && allowed.binary_search(&(id as usize)).is_ok();
            if !usable {
                return Err(Problem::Refused(format!(
                    "CPU {id} is not one this process may use (allowed: {})",
                    format_cpu_list(allowed)
                )));
            }
            ids.push(id as usize);
        }
    }
    let mut seen = ids.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != ids.len() {
        return Err(Problem::Refused(
            "names a CPU twice: list each CPU once".to_string(),
        ));
    }
    Ok(ids)
}

/// Writes ids back as a list, in their order, with runs of consecutive ids as ranges: `[0,1,2,5]` → `0-2,5`.
pub fn format_cpu_list(ids: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut index = 0;
    while index < ids.len() {
        let start = ids[index];
        let mut end = start;
        while index + 1 < ids.len() && ids[index + 1] == end + 1 {
            index += 1;
            end += 1;
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        index += 1;
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: [usize; 2] = [0, 1];

    fn refusal(text: &str, allowed: &[usize]) -> String {
        match parse_cpu_list(text, allowed) {
            Err(Problem::Refused(why)) => why,
            other => panic!("{text}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn cpu_lists_parse_and_reject() {
        let many: Vec<usize> = (0..8).collect();
        assert_eq!(parse_cpu_list("0,2-3", &many).unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_cpu_list("5", &many).unwrap(), vec![5]);
        assert_eq!(parse_cpu_list("3, 0-1", &many).unwrap(), vec![3, 0, 1]);
        for bad in ["", "3-1", "a", "0,,2", "-1", "1-", "18446744073709551616"] {
            assert_eq!(
                parse_cpu_list(bad, &many),
                Err(Problem::OutOfRange),
                "{bad:?}"
            );
        }
        assert!(refusal("1,1", &many).contains("twice"));
    }

    #[test]
    fn ids_outside_the_mask_name_the_allowed_cpus() {
        let why = refusal("1024", &TWO);
        assert_eq!(
            why,
            "CPU 1024 is not one this process may use (allowed: 0-1)"
        );
        assert!(refusal("2", &TWO).starts_with("CPU 2 is not one"));
        assert!(refusal("65536", &[0, 65535]).starts_with("CPU 65536 is not one"));
        assert!(refusal("1,3", &[1, 2, 5]).contains("(allowed: 1-2,5)"));
    }

    #[test]
    fn huge_ranges_are_refused_by_size_before_any_expansion() {
        // The size message (not the mask message for CPU 2) proves the count was checked first; expanding
        // these would take 147 EB and 800 MB.
        for text in [
            "0-18446744073709551615",
            "0-99999999",
            "0-1500",
            "0-1023,2000",
        ] {
            let why = refusal(text, &TWO);
            assert!(
                why.starts_with("names more than 1024 CPUs"),
                "{text}: {why}"
            );
        }
        let repeated = vec!["0"; 2000].join(",");
        assert!(refusal(&repeated, &TWO).starts_with("names more than 1024 CPUs"));
        let all: Vec<usize> = (0..1024).collect();
        assert_eq!(parse_cpu_list("0-1023", &all).unwrap().len(), 1024);
    }

    #[test]
    fn lists_format_back_in_order() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(format_cpu_list(&[3, 0, 1]), "3,0-1");
        assert_eq!(format_cpu_list(&[7]), "7");
        let many: Vec<usize> = (0..8).collect();
        for ids in [vec![3, 0, 1], vec![0, 1, 2, 5], vec![6]] {
            assert_eq!(parse_cpu_list(&format_cpu_list(&ids), &many).unwrap(), ids);
        }
        assert!(!default_cpus().is_empty() && default_cpus().len() <= MAX_CPUS);
    }
}
