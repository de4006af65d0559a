//! Instants as the output and the ledger keep them: microseconds since the
//! Unix epoch, written as RFC 3339 in UTC, and the UTC day that partitions
//! the tables.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::NaiveDate;

/// RFC 3339 in UTC with microseconds: `2026-11-21T10:00:00.123456Z`; empty
/// for an instant chrono cannot represent.
pub fn format_timestamp(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => String::new(),
    }
}

/// Now, formatted as [`format_timestamp`] does.
pub fn now_formatted() -> String {
    format_timestamp(chrono::Utc::now().timestamp_micros())
}

/// The UTC day of an instant.
pub fn partition_date(micros: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(micros).map_or(NaiveDate::MIN, |t| t.date_naive())
}

/// Microseconds since the epoch, as the ledger keeps instants.
pub fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// An instant the ledger kept, in microseconds since the epoch.
pub fn instant(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64)
}

/// When a generation started, from its `gen-<unix seconds>-…` ID, in
/// microseconds; `None` for an ID without such a prefix.
pub fn id_started_at(id: &str) -> Option<i64> {
    let rest = id.strip_prefix("gen-")?;
    let (secs, tail) = rest.split_once('-')?;
    let plausible = (9..=11).contains(&secs.len()) && !tail.is_empty();
    let secs: i64 = secs.parse().ok().filter(|_| plausible)?;
    secs.checked_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_through_micros_and_format_in_utc() {
        let at = UNIX_EPOCH + Duration::from_micros(1_763_719_200_123_456);
        assert_eq!(instant(micros(at)), at);
        assert_eq!(format_timestamp(micros(at)), "2025-11-21T10:00:00.123456Z");
        assert_eq!(
            partition_date(micros(at)),
            NaiveDate::from_ymd_opt(2025, 11, 21).unwrap()
        );
        assert_eq!(instant(-5), UNIX_EPOCH);
    }
}
