//! Retry rules: which answers are worth another try, how long a 429 asks us to
//! wait, and the backoff between tries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// Statuses that are transient: server errors, gateway and edge timeouts,
/// provider overload. 501 and 505 will not change on a retry.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 500 | 502..=504 | 520..=524 | 529)
}

/// The wait a 429 (or 503) announces: the first of `retry-after-ms`,
/// `Retry-After` (seconds or HTTP-date) and, when `X-RateLimit-Remaining` is 0,
/// `X-RateLimit-Reset` (epoch seconds, epoch milliseconds, or seconds from now).
pub fn announced_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return non_negative_secs(ms / 1000.0);
    }
    if let Some(value) = header("retry-after") {
        if let Ok(secs) = value.parse::<f64>() {
            return non_negative_secs(secs);
        }
        if let Ok(at) = httpdate::parse_http_date(value) {
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    let exhausted = header("x-ratelimit-remaining").is_some_and(|v| v == "0");
    if exhausted
        && let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<f64>().ok())
    {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let reset_secs = match reset {
            r if r >= 1e12 => r / 1000.0,
            r if r >= 1e9 => r,
            // A small number is a delay, not an instant.
            r => now_secs + r,
        };
        return non_negative_secs(reset_secs - now_secs).or(Some(Duration::ZERO));
    }
    None
}

fn non_negative_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite()).then(|| Duration::from_secs_f64(secs.clamp(0.0, 1e9)))
}

/// Exponential backoff: `initial · 2^retry`, capped at `max`.
pub fn backoff_ceiling(initial: Duration, max: Duration, retry: u32) -> Duration {
    initial.saturating_mul(1u32 << retry.min(20)).min(max)
}

/// Full jitter: uniform in `[0, ceiling]`, so retrying clients spread out.
pub fn full_jitter(ceiling: Duration) -> Duration {
    ceiling.mul_f64(fastrand::f64())
}

/// Equal jitter: uniform in `[ceiling/2, ceiling]`, for waits that must not
/// collapse to zero (the 404 window).
pub fn equal_jitter(ceiling: Duration) -> Duration {
    ceiling / 2 + (ceiling / 2).mul_f64(fastrand::f64())
}

/// When a generation was created, from its `gen-<unix seconds>-…` ID.
pub fn created_from_id(id: &str) -> Option<SystemTime> {
    let rest = id.strip_prefix("gen-")?;
    let (secs, tail) = rest.split_once('-')?;
    let plausible = (9..=11).contains(&secs.len()) && !tail.is_empty();
    let secs: u64 = secs.parse().ok().filter(|_| plausible)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn reads_every_429_header_style() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_704_000);
        let w = |pairs: &[(&'static str, &str)]| announced_wait(&headers(pairs), now);
        assert_eq!(
            w(&[("retry-after-ms", "250")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(w(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(w(&[("retry-after", &date)]), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(w(&[("retry-after", &past)]), Some(Duration::ZERO));
        let reset = |v: &str| w(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", v)]);
        assert_eq!(reset("1764704005"), Some(Duration::from_secs(5)));
        assert_eq!(reset("1764704005500"), Some(Duration::from_millis(5500)));
        assert_eq!(reset("2"), Some(Duration::from_secs(2)));
        assert_eq!(reset("1764703000"), Some(Duration::ZERO));
        // Reset without an exhausted budget is not a wait; ms header wins over the rest.
        assert_eq!(
            w(&[
                ("x-ratelimit-remaining", "5"),
                ("x-ratelimit-reset", "1764704005")
            ]),
            None
        );
        assert_eq!(
            w(&[("retry-after-ms", "10"), ("retry-after", "9")]),
            Some(Duration::from_millis(10))
        );
        assert_eq!(w(&[("retry-after", "soon")]), None);
        assert_eq!(w(&[]), None);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_jitter_stays_inside() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(backoff_ceiling(initial, max, 0), initial);
        assert_eq!(backoff_ceiling(initial, max, 3), Duration::from_millis(800));
        assert_eq!(backoff_ceiling(initial, max, 40), max);
        for _ in 0..1000 {
            assert!(full_jitter(max) <= max);
            let e = equal_jitter(max);
            assert!(e >= max / 2 && e <= max);
        }
    }

    #[test]
    fn creation_time_from_id() {
        assert_eq!(
            created_from_id("gen-1764704027-YmgZuzDAKrAywxh1aHQW"),
            Some(UNIX_EPOCH + Duration::from_secs(1_764_704_027))
        );
        assert_eq!(created_from_id("gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG"), None);
        assert_eq!(created_from_id("gen-12-x"), None);
    }
}
