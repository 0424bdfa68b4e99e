//! The local time of day for chat stamps: `HH:MM:SS`, and the zone's UTC offsets read from its TZif file.

/// `HH:MM:SS` of a time of day given as seconds (already shifted to local time).
pub fn clock(local_secs: i64) -> String {
    let day = local_secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", day / 3600, day / 60 % 60, day % 60)
}

/// The local time zone's UTC offsets, read from a TZif file (`$TZ` or `/etc/localtime`); UTC when there is none.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// (transition time in Unix seconds, index into `offsets`), ascending.
    transitions: Vec<(i64, usize)>,
    /// UTC offsets in seconds, one per local time type.
    offsets: Vec<i32>,
}

impl Zone {
    pub fn local() -> Zone {
        let path = match std::env::var("TZ") {
            Ok(tz) if tz.is_empty() || tz.starts_with("UTC") || tz.starts_with("GMT") => {
                return Zone::default()
            }
            Ok(tz) => {
                let tz = tz.trim_start_matches(':');
                if tz.starts_with('/') {
                    tz.to_string()
                } else {
                    format!("/usr/share/zoneinfo/{tz}")
                }
            }
            Err(_) => "/etc/localtime".to_string(),
        };
        std::fs::read(path)
            .ok()
            .and_then(|data| Zone::parse(&data))
            .unwrap_or_default()
    }

    /// Parses the transitions and offsets of a TZif file (the 64-bit block when the file has one).
    pub fn parse(data: &[u8]) -> Option<Zone> {
        let be32 = |at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
        };
        let block = |start: usize, time_size: usize| -> Option<(Zone, usize)> {
            if data.get(start..start + 4)? != b"TZif" {
                return None;
            }
            let count = |i: usize| be32(start + 20 + 4 * i).map(|n| n as usize);
            let (isut, isstd, leap, times, types, chars) = (
                count(0)?,
                count(1)?,
                count(2)?,
                count(3)?,
                count(4)?,
                count(5)?,
            );
            let mut at = start + 44;
            let mut transitions = Vec::with_capacity(times);
            for i in 0..times {
                let bytes = data.get(at + i * time_size..at + (i + 1) * time_size)?;
                let time = if time_size == 8 {
                    i64::from_be_bytes(bytes.try_into().ok()?)
                } else {
                    i64::from(i32::from_be_bytes(bytes.try_into().ok()?))
                };
                transitions.push((time, 0));
            }
            at += times * time_size;
            for (i, transition) in transitions.iter_mut().enumerate() {
                transition.1 = usize::from(*data.get(at + i)?);
            }
            at += times;
            let offsets = (0..types)
                .map(|i| be32(at + 6 * i).map(|n| n as i32))
                .collect::<Option<Vec<i32>>>()?;
            at += 6 * types + chars + leap * (time_size + 4) + isstd + isut;
            if offsets.is_empty() || transitions.iter().any(|&(_, i)| i >= offsets.len()) {
                return None;
            }
            Some((
                Zone {
                    transitions,
                    offsets,
                },
                at,
            ))
        };
        let (v1, end) = block(0, 4)?;
        if data.get(4).is_some_and(|&version| version >= b'2') {
            if let Some((v2, _)) = block(end, 8) {
                return Some(v2);
            }
        }
        Some(v1)
    }

    /// UTC offset in seconds at Unix time `t`.
    pub fn offset_at(&self, t: i64) -> i32 {
        let index = match self.transitions.partition_point(|&(time, _)| time <= t) {
            0 => 0,
            n => self.transitions[n - 1].1,
        };
        self.offsets.get(index).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_wraps_days() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(86_400 + 3_600 * 13 + 60 * 7 + 9), "13:07:09");
        assert_eq!(clock(-1), "23:59:59");
    }

    #[test]
    fn tzif_offsets_follow_transitions() {
        // A minimal version-1 TZif file: two types (+0 and +3600), one transition at t=1000 to +3600.
        let mut data = b"TZif\0".to_vec();
        data.extend([0u8; 15]);
        for count in [0u32, 0, 0, 1, 2, 4] {
            data.extend(count.to_be_bytes());
        }
        data.extend(1000i32.to_be_bytes());
        data.push(1);
        data.extend(0i32.to_be_bytes());
        data.extend([0, 0]);
        data.extend(3600i32.to_be_bytes());
        data.extend([1, 0]);
        data.extend(b"UTC\0");
        let zone = Zone::parse(&data).unwrap();
        assert_eq!(zone.offset_at(999), 0);
        assert_eq!(zone.offset_at(1000), 3600);
        assert_eq!(zone.offset_at(5000), 3600);
        assert!(Zone::parse(b"nonsense").is_none());
        assert_eq!(Zone::default().offset_at(42), 0);
    }
}
