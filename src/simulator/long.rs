//! Long generations and when an ID becomes queryable: a hashed share of `gen-<unix>-` IDs ran
//! for a hashed part of `long_generation_max`, and nothing is served before it ended.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::SimConfig;
use super::dice::{id_fraction, id_tail, id_unix_seconds};

const LONG_SALT: u64 = 0x6C6F_6E67;
const DURATION_SALT: u64 = 0x6475_7261;

impl SimConfig {
    /// True when the generation behind `tail_or_id` ran long (a `long_generation_share` of
    /// IDs, chosen by a hash of the part after `gen-<unix>-`, or of the whole argument).
    pub fn is_long(&self, tail_or_id: &str) -> bool {
        if self.long_generation_share <= 0.0 {
            return false;
        }
        let tail = id_tail(tail_or_id).unwrap_or(tail_or_id);
        id_fraction(tail, LONG_SALT) < self.long_generation_share
    }

    /// How long the generation behind `id_or_tail` ran: zero unless it [is long](Self::is_long),
    /// else a hashed fraction of `long_generation_max` in whole seconds. A whole ID and its tail
    /// give the same answer, so a test can build `gen-{now - duration}-{tail}`, an ID whose
    /// generation has just ended.
    pub fn generation_duration(&self, id_or_tail: &str) -> Duration {
        if !self.is_long(id_or_tail) {
            return Duration::ZERO;
        }
        let tail = id_tail(id_or_tail).unwrap_or(id_or_tail);
        let max = self.long_generation_max.as_secs();
        Duration::from_secs((id_fraction(tail, DURATION_SALT) * max as f64) as u64)
    }

    /// A `gen-<unix>-` ID is not queryable before prefix + its generation's duration +
    /// `young_not_found`; other IDs always are.
    pub(crate) fn is_pending(&self, id: &str, wall: SystemTime) -> bool {
        let wait = self.generation_duration(id) + self.young_not_found;
        if wait.is_zero() {
            return false;
        }
        let Some(created) = id_unix_seconds(id) else {
            return false;
        };
        let now = wall
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        now - (created as f64) < wait.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(share: f64) -> SimConfig {
        SimConfig {
            long_generation_share: share,
            long_generation_max: Duration::from_secs(600),
            ..SimConfig::default()
        }
    }

    fn wall(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_share_of_tails_run_long_for_at_most_the_max() {
        let sim = config(0.25);
        let tails: Vec<String> = (0..4_000).map(|i| format!("T{i:019}")).collect();
        let long: Vec<&String> = tails.iter().filter(|t| sim.is_long(t)).collect();
        assert!((800..1_200).contains(&long.len()), "{}", long.len());
        for tail in &tails {
            let d = sim.generation_duration(tail);
            if !sim.is_long(tail) {
                assert_eq!(d, Duration::ZERO);
            }
            assert!(d < Duration::from_secs(600) && d.subsec_nanos() == 0);
        }
        let spread = long
            .iter()
            .filter(|t| sim.generation_duration(t) > Duration::from_secs(300))
            .count();
        assert!(spread > long.len() / 4, "durations spread over the max");
        assert!(!config(0.0).is_long(&tails[0]));
        assert!(config(1.0).is_long(&tails[0]));
    }

    #[test]
    fn whole_id_and_tail_give_the_same_duration() {
        let sim = config(1.0);
        let tail = "YmgZuzDAKrAywxh1aHQW";
        let d = sim.generation_duration(tail);
        assert!(!d.is_zero());
        assert_eq!(
            sim.generation_duration(&format!("gen-1764704027-{tail}")),
            d
        );
        assert_eq!(sim.generation_duration(&format!("gen-5-{tail}")), d);
        assert!(sim.is_long(&format!("gen-5-{tail}")));
    }

    #[test]
    fn long_generations_are_pending_until_they_end_plus_the_young_window() {
        let sim = SimConfig {
            young_not_found: Duration::from_secs(10),
            ..config(1.0)
        };
        let tail = "AAAAAAAAAAAAAAAAAAAA";
        let d = sim.generation_duration(tail).as_secs();
        let id = format!("gen-1000000-{tail}");
        assert!(sim.is_pending(&id, wall(1_000_000 + d + 9)));
        assert!(!sim.is_pending(&id, wall(1_000_000 + d + 10)));
        assert!(!sim.is_pending(tail, wall(0)), "no prefix, no wait");
        let short = config(0.0);
        assert!(
            !short.is_pending(&id, wall(1_000_000)),
            "nothing to wait for"
        );
        assert!(
            !short.is_pending(&id, wall(0)),
            "even from the future, as before"
        );
    }
}
