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
    if exhausted {
        return reset_after(headers, now).map(|(wait, _)| wait);
    }
    None
}

/// What an answer's `X-RateLimit-*` headers announce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Announced {
    pub remaining: u64,
    /// `X-RateLimit-Limit`: the budget's size, when sent.
    pub limit: Option<u64>,
    /// `X-RateLimit-Reset` as a wait from now.
    pub reset: Option<Duration>,
    /// The reset came in whole seconds: rounded up, it may lie up to a
    /// second after the budget really comes back.
    pub reset_rounded: bool,
}

/// The budget an answer's `X-RateLimit-Remaining` (with `-Limit` and
/// `-Reset`) announces, with the reset as a wait from `now`; `None` when the
/// answer has no (readable) `X-RateLimit-Remaining`.
pub fn allowance(headers: &HeaderMap, now: SystemTime) -> Option<Announced> {
    let number = |name: &str| {
        let value = headers.get(name)?.to_str().ok()?.trim();
        // Some servers send a fraction of a token.
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let reset = reset_after(headers, now);
    Some(Announced {
        remaining: number("x-ratelimit-remaining")?.floor() as u64,
        limit: number("x-ratelimit-limit").map(|l| l.floor() as u64),
        reset: reset.map(|(wait, _)| wait),
        reset_rounded: reset.is_some_and(|(_, rounded)| rounded),
    })
}

/// How long until `X-RateLimit-Reset`: epoch seconds, epoch milliseconds, or
/// seconds from now (the unit is undocumented, so the size tells); and
/// whether it came in whole seconds.
fn reset_after(headers: &HeaderMap, now: SystemTime) -> Option<(Duration, bool)> {
    let reset = headers
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()?;
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
    let whole_seconds = reset < 1e12 && reset.fract() == 0.0;
    let wait = non_negative_secs(reset_secs - now_secs).unwrap_or(Duration::ZERO);
    Some((wait, whole_seconds))
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

/// At most this many 404s for one ID in one run: the window's tries (see
/// [`NotFoundWindow`]) number this many, so the bound only guards against a
/// clock that jumps back. After it the ID is left pending.
pub const NOT_FOUND_TRIES: u32 = 8;
/// How far in the future a `gen-<unix>-` prefix may lie (clock skew) and
/// still be trusted.
pub const PREFIX_SKEW: Duration = Duration::from_secs(300);
/// Prefixes before 2023-01-01 (before OpenRouter's IDs) are not trusted.
const PREFIX_EPOCH: Duration = Duration::from_secs(1_672_531_200);

/// When a 404 is final. OpenRouter answers 404 until a generation's metadata
/// is written, a few seconds after it *ends*; the `gen-<unix>-` prefix says
/// when it *started*, and a reasoning generation can run for many minutes.
/// So a 404 is final only once both the start (when trusted) and the first
/// 404 are more than the grace ago.
///
/// Until then the ID is asked again at `grace/64, grace/32, …, grace/2,
/// grace` after the window opened: eight requests in all, dense while a
/// fresh generation is most likely to appear, the last just past the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFoundWindow {
    opened: SystemTime,
    grace: Duration,
}

impl NotFoundWindow {
    /// The window for an ID whose generation `started` (from its prefix, if
    /// any) and whose first 404 came at `first_404`. A start in the future
    /// beyond [`PREFIX_SKEW`], or before 2023, is not trusted.
    pub fn new(started: Option<SystemTime>, first_404: SystemTime, grace: Duration) -> Self {
        let trusted =
            started.filter(|s| *s >= UNIX_EPOCH + PREFIX_EPOCH && *s <= first_404 + PREFIX_SKEW);
        NotFoundWindow {
            opened: trusted.map_or(first_404, |s| s.max(first_404)),
            grace,
        }
    }

    /// The wait before the next try after a 404 at `now`, or `None` when
    /// the 404 is final.
    pub fn next_try(&self, now: SystemTime) -> Option<Duration> {
        let end = self.opened + self.grace;
        if now >= end {
            return None;
        }
        let next = (0..NOT_FOUND_TRIES - 1)
            .rev()
            .map(|k| self.opened + self.grace / (1 << k))
            .find(|at| *at > now)
            .unwrap_or(end);
        let wait = next.duration_since(now).unwrap_or_default();
        // A little jitter, only ever later, so IDs read together spread out
        // and the last try still lands past the end.
        Some(wait + wait.mul_f64(0.05 * fastrand::f64()) + Duration::from_millis(1))
    }
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
    fn reads_the_budget_every_answer_announces() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_704_000);
        let budget = |pairs: &[(&'static str, &str)]| allowance(&headers(pairs), now);
        assert_eq!(
            budget(&[
                ("x-ratelimit-remaining", "7"),
                ("x-ratelimit-reset", "1764704003")
            ]),
            Some(Announced {
                remaining: 7,
                limit: None,
                reset: Some(Duration::from_secs(3)),
                reset_rounded: true,
            })
        );
        // A fraction of a token, a delay instead of an instant, no reset.
        assert_eq!(
            budget(&[
                ("x-ratelimit-remaining", "2.6"),
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-reset", "2")
            ]),
            Some(Announced {
                remaining: 2,
                limit: Some(10),
                reset: Some(Duration::from_secs(2)),
                reset_rounded: true,
            })
        );
        // Epoch milliseconds, or a fraction of a second, are not rounded.
        let fine = |reset: &str| {
            budget(&[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", reset)])
                .map(|b| (b.reset, b.reset_rounded))
        };
        assert_eq!(
            fine("1764704000250"),
            Some((Some(Duration::from_millis(250)), false))
        );
        assert_eq!(fine("0.5"), Some((Some(Duration::from_millis(500)), false)));
        let bare = budget(&[("x-ratelimit-remaining", "0")]);
        assert_eq!(
            bare.map(|b| (b.remaining, b.reset, b.reset_rounded)),
            Some((0, None, false))
        );
        assert_eq!(budget(&[("x-ratelimit-remaining", "-1")]), None);
        assert_eq!(budget(&[("x-ratelimit-limit", "100")]), None);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_jitter_stays_inside() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(backoff_ceiling(initial, max, 0), initial);
        assert_eq!(backoff_ceiling(initial, max, 3), Duration::from_millis(800));
        assert_eq!(backoff_ceiling(initial, max, 40), max);
        for _ in 0..1000 {
            assert!(full_jitter(max) <= max);
        }
    }

    #[test]
    fn a_404_is_final_only_when_start_and_first_404_are_past_the_grace() {
        let grace = Duration::from_secs(120);
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(1_764_704_000 + secs);
        // Started 15 minutes before its first 404: the prefix alone would
        // call it final at once; the first 404 keeps it open for the grace.
        let long = NotFoundWindow::new(Some(at(0)), at(900), grace);
        let mut now = at(900);
        let mut tries = 1;
        while let Some(wait) = long.next_try(now) {
            assert!(wait > Duration::ZERO);
            now += wait;
            tries += 1;
        }
        assert!(
            now >= at(1020),
            "final only past the grace from the first 404"
        );
        assert!(now < at(1020) + Duration::from_secs(8), "and soon after it");
        assert_eq!(tries, NOT_FOUND_TRIES, "eight requests in all");
        // A prefix in the future within the skew delays the end; beyond the
        // skew, or absurd, or absent, only the first 404 counts.
        let skewed = NotFoundWindow::new(Some(at(1060)), at(1000), grace);
        assert!(skewed.next_try(at(1125)).is_some());
        for started in [
            Some(at(86_400)),
            Some(UNIX_EPOCH + Duration::from_secs(99_999_999_999)),
            Some(UNIX_EPOCH),
            None,
        ] {
            let window = NotFoundWindow::new(started, at(1000), grace);
            assert!(window.next_try(at(1119)).is_some());
            assert_eq!(window.next_try(at(1120)), None, "{started:?}");
        }
        // With no grace, the first 404 is final.
        assert_eq!(
            NotFoundWindow::new(None, at(0), Duration::ZERO).next_try(at(0)),
            None
        );
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
