//! What the gate puts on the wire: a 429's timing headers in the configured style, and the
//! `X-RateLimit-*` triple `rate_headers` adds to every answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::super::config::RateLimitStyle;
use super::{Limited, Quota};

pub(crate) const MILLI: u128 = 1_000_000;
pub(crate) const SECOND: u128 = 1_000_000_000;

/// Rounds `d` up to a whole multiple of `unit` nanoseconds.
pub(crate) fn ceil_to(d: Duration, unit: u128) -> Duration {
    let nanos = d.as_nanos().div_ceil(unit) * unit;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Rounds a wall-clock instant up to a whole multiple of `unit` since the epoch.
pub(crate) fn ceil_wall(t: SystemTime, unit: u128) -> SystemTime {
    UNIX_EPOCH + ceil_to(t.duration_since(UNIX_EPOCH).unwrap_or_default(), unit)
}

impl Limited {
    /// The timing headers of this 429 in the configured style.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let epoch = self
            .window
            .wall_end
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let reset = |value: String| {
            vec![
                ("x-ratelimit-limit", self.limit.to_string()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", value),
            ]
        };
        match self.style {
            RateLimitStyle::RetryAfterMs => {
                let ms = ceil_to(self.remaining, MILLI).as_millis();
                vec![("retry-after-ms", ms.to_string())]
            }
            RateLimitStyle::RetryAfterSeconds => {
                let secs = ceil_to(self.remaining, SECOND).as_secs();
                vec![("retry-after", secs.to_string())]
            }
            RateLimitStyle::RetryAfterDate => {
                vec![("retry-after", httpdate::fmt_http_date(self.window.wall_end))]
            }
            RateLimitStyle::ResetSeconds => reset(epoch.as_secs().to_string()),
            RateLimitStyle::ResetMillis => reset(epoch.as_millis().to_string()),
            RateLimitStyle::Bare => Vec::new(),
        }
    }
}

impl Quota {
    /// `X-RateLimit-Limit`, `-Remaining` (0 on a 429, whatever the limiter holds) and `-Reset`
    /// in epoch seconds, rounded up.
    pub(crate) fn headers(&self, refused: bool) -> [(&'static str, String); 3] {
        let reset = ceil_wall(self.reset, SECOND)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let remaining = if refused { 0 } else { self.remaining };
        [
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", reset.to_string()),
        ]
    }
}
