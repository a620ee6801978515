//! Times in the audit trail: RFC 3339 in UTC with milliseconds (`2025-03-01T12:00:00.123Z`), the
//! form journald, jq and every SIEM read, and what `log --summary` compares as text. Pure: the
//! caller passes the time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`; times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01, by the era arithmetic of 400-year
/// cycles (146,097 days each), which needs no table and no loop.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of the era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of the era, 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

/// Whole seconds a span covers, at least one: "in 10 s".
pub fn seconds(from: SystemTime, to: SystemTime) -> u64 {
    let span = to.duration_since(from).unwrap_or(Duration::ZERO);
    (span.as_secs() + u64::from(span.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn known_instants() {
        // Values as `date -u -d @SECS +%FT%T` prints them.
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_709_210_096, 123)), "2024-02-29T12:34:56.123Z");
        assert_eq!(rfc3339(at(1_735_689_599, 999)), "2024-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let mut prev = civil_from_days(0);
        for d in 1..150_000 {
            let (y, m, day) = civil_from_days(d);
            let next_day = (y, m, day) == (prev.0, prev.1, prev.2 + 1);
            let next_month = day == 1 && ((y, m) == (prev.0, prev.1 + 1) || (y, m) == (prev.0 + 1, 1));
            assert!(next_day || next_month, "{prev:?} -> {:?}", (y, m, day));
            prev = (y, m, day);
        }
        assert_eq!(prev, (2380, 9, 7), "149,999 days after 1970-01-01");
    }

    #[test]
    fn spans_round_up_to_whole_seconds() {
        assert_eq!(seconds(at(10, 0), at(20, 0)), 10);
        assert_eq!(seconds(at(10, 0), at(10, 1)), 1);
        assert_eq!(seconds(at(10, 0), at(19, 500)), 10);
        assert_eq!(seconds(at(10, 0), at(9, 0)), 1);
    }
}
