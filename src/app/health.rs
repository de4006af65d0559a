//! The daemon's health rule, on given instants: `/healthz` fails when the last
//! tick ended in an error, or when the daemon has gone quiet — no tick
//! finished and the running one moved no ID and got no answer — for three
//! intervals of its schedule (at least the longest a working tick can wait
//! without an answer). A tick that is slow but working stays healthy; one that
//! hangs does not stay healthy for ever.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Schedule, Settings};

/// How many scheduled ticks may pass without any activity.
const INTERVALS: usize = 3;

/// When quiet becomes stalled.
#[derive(Debug, Clone)]
pub struct HealthRule {
    schedule: Schedule,
    /// The shortest quiet that counts as stalled, whatever the schedule.
    floor: Duration,
}

/// What `/healthz` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    LastTickFailed,
    /// Nothing finished or moved since this instant.
    Stalled {
        since: DateTime<Utc>,
    },
}

impl HealthRule {
    pub fn new(schedule: Schedule, floor: Duration) -> HealthRule {
        HealthRule { schedule, floor }
    }

    /// The rule for a daemon run with `settings` (which has a schedule).
    /// The floor is the longest a working tick can go without an answer: a
    /// 429 pause, half the 404 window (its longest gap) or a shutdown,
    /// plus one request's timeout.
    pub fn for_settings(schedule: Schedule, settings: &Settings) -> HealthRule {
        let fetch = &settings.fetch;
        let wait = settings
            .shutdown_timeout
            .max(fetch.max_retry_after)
            .max(fetch.not_found_grace / 2);
        HealthRule::new(schedule, wait + fetch.timeout)
    }

    /// The instant after which a daemon quiet since `since` is stalled: the
    /// third scheduled tick after it, and no sooner than the floor.
    pub fn deadline(&self, since: DateTime<Utc>) -> DateTime<Utc> {
        let floor = chrono::Duration::from_std(self.floor)
            .ok()
            .and_then(|floor| since.checked_add_signed(floor))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut tick = since;
        for _ in 0..INTERVALS {
            match self.schedule.next_after(tick) {
                Some(next) => tick = next,
                // No later tick: only the floor applies.
                None => return floor,
            }
        }
        tick.max(floor)
    }

    /// The verdict at `now` for a daemon whose last activity (start, a tick's
    /// end, or a moving tick) was at `since`.
    pub fn verdict(
        &self,
        last_tick_failed: bool,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Verdict {
        if last_tick_failed {
            Verdict::LastTickFailed
        } else if now > self.deadline(since) {
            Verdict::Stalled { since }
        } else {
            Verdict::Healthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn rule(cron: &str, floor_secs: u64) -> HealthRule {
        HealthRule::new(
            Schedule::parse(cron).unwrap(),
            Duration::from_secs(floor_secs),
        )
    }

    #[test]
    fn quiet_for_three_intervals_is_stalled() {
        let every_5_min = rule("0 */5 * * * *", 30);
        let since = at("2030-01-01T12:01:00Z");
        // Ticks at 12:05, 12:10, 12:15: the third is the deadline.
        assert_eq!(every_5_min.deadline(since), at("2030-01-01T12:15:00Z"));
        let verdict = |now| every_5_min.verdict(false, since, at(now));
        assert_eq!(verdict("2030-01-01T12:14:59Z"), Verdict::Healthy);
        assert_eq!(verdict("2030-01-01T12:15:01Z"), Verdict::Stalled { since });
    }

    #[test]
    fn a_fast_schedule_waits_at_least_the_floor() {
        let every_second = rule("* * * * * *", 330);
        let since = at("2030-01-01T12:00:00Z");
        assert_eq!(every_second.deadline(since), at("2030-01-01T12:05:30Z"));
        assert_eq!(
            every_second.verdict(false, since, at("2030-01-01T12:05:00Z")),
            Verdict::Healthy,
            "three seconds without an answer is a 429 pause, not a hang"
        );
    }

    #[test]
    fn irregular_schedules_count_their_own_ticks() {
        // Weekdays at 09:00: quiet from Friday 10:00 is stalled after Wednesday 09:00.
        let weekdays = rule("0 0 9 * * MON-FRI", 30);
        let friday = at("2030-01-04T10:00:00Z");
        assert_eq!(weekdays.deadline(friday), at("2030-01-09T09:00:00Z"));
    }

    #[test]
    fn a_failed_tick_is_unhealthy_at_once() {
        let r = rule("0 */5 * * * *", 30);
        let since = at("2030-01-01T12:00:00Z");
        assert_eq!(r.verdict(true, since, since), Verdict::LastTickFailed);
    }

    #[test]
    fn the_floor_covers_a_429_pause_the_404_window_and_a_request() {
        let mut raw = crate::config::RawConfig {
            shutdown_timeout: Duration::from_secs(30),
            ..Default::default()
        };
        raw.fetch.max_retry_after = Duration::from_secs(300);
        raw.fetch.not_found_grace = Duration::from_secs(1200);
        raw.fetch.timeout = Duration::from_secs(30);
        raw.schedule.cron = Some("* * * * * *".into());
        let settings = Settings::resolve(&raw, None, |_| String::new()).unwrap();
        let schedule = settings.schedule.clone().unwrap();
        let rule = HealthRule::for_settings(schedule, &settings);
        assert_eq!(rule.floor, Duration::from_secs(600 + 30));
    }
}
