//! Per-request fault decisions, taken in a fixed order from authentication to truncation.

use std::time::Duration;

use super::config::SimConfig;
use super::dice::id_fraction;
use super::gate::{Gate, Limited, Moment, Quota};

const MISSING_SALT: u64 = 0x6D69_7373;
const FORBIDDEN_SALT: u64 = 0x6634_3033;
const CONTENT_MISSING_SALT: u64 = 0x6334_3034;

/// The 5xx statuses OpenRouter and its edge answer with.
pub(crate) const SERVER_ERRORS: [u16; 5] = [500, 502, 503, 524, 529];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Metadata,
    Content,
}

/// How a truncated 200 is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// `Content-Length` promises more than is sent, then the connection is cut.
    ShortBody,
    /// A complete HTTP answer whose JSON stops in the middle.
    BrokenJson,
}

/// What the server answers to one request.
#[derive(Debug)]
pub(crate) enum Outcome {
    Unauthorized,
    PaymentRequired,
    MissingId,
    RateLimited(Limited),
    Reset,
    ServerError(u16),
    NotFound,
    Forbidden,
    Truncated(Cut),
    Ok,
}

/// The parts of a request the decision looks at.
pub(crate) struct Request<'a> {
    /// 1-based arrival number over both endpoints.
    pub(crate) seq: u64,
    pub(crate) endpoint: Endpoint,
    /// The decoded `id` parameter, if any.
    pub(crate) id: Option<&'a str>,
    pub(crate) authorization: Option<&'a [u8]>,
}

impl SimConfig {
    /// The status the content endpoint always answers `id` with, chosen by
    /// the ID's hash whatever the request's dice say: 404 for `missing_rate`
    /// IDs, 403 for `content_forbidden_rate` ones, 404 for
    /// `content_missing_rate` ones; `None` when the content is served. Tests
    /// use it to know which IDs must end in the failures file.
    pub fn content_refusal(&self, id: &str) -> Option<u16> {
        self.refusal(Endpoint::Content, id)
    }

    fn refusal(&self, endpoint: Endpoint, id: &str) -> Option<u16> {
        if id_fraction(id, MISSING_SALT) < self.missing_rate {
            return Some(404);
        }
        if endpoint != Endpoint::Content {
            return None;
        }
        if id_fraction(id, FORBIDDEN_SALT) < self.content_forbidden_rate {
            return Some(403);
        }
        (id_fraction(id, CONTENT_MISSING_SALT) < self.content_missing_rate).then_some(404)
    }
}

/// The configured faults plus the rate-limit state they need.
pub(crate) struct Faults {
    config: SimConfig,
    expected_auth: Option<Vec<u8>>,
    gate: Option<Gate>,
}

impl Faults {
    pub(crate) fn new(config: SimConfig) -> Self {
        Self {
            expected_auth: config
                .api_key
                .as_ref()
                .map(|key| format!("Bearer {key}").into_bytes()),
            gate: Gate::new(&config),
            config,
        }
    }

    pub(crate) fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The delay before this request is answered; the first draw from the request's dice.
    pub(crate) fn latency(&self, dice: &mut fastrand::Rng) -> Duration {
        self.config.latency + self.config.latency_jitter.mul_f64(dice.f64())
    }

    /// Decides the answer. `dice` must be the request's own generator, after `latency`.
    pub(crate) fn decide(
        &self,
        req: &Request<'_>,
        dice: &mut fastrand::Rng,
        at: Moment,
    ) -> Outcome {
        let cfg = &self.config;
        if let Some(expected) = &self.expected_auth
            && req.authorization != Some(expected.as_slice())
        {
            return Outcome::Unauthorized;
        }
        if cfg.unauthorized_after.is_some_and(|n| req.seq > n) {
            return Outcome::Unauthorized;
        }
        if req.endpoint == Endpoint::Metadata
            && cfg.payment_required_after.is_some_and(|n| req.seq > n)
        {
            return Outcome::PaymentRequired;
        }
        let Some(id) = req.id.filter(|id| !id.is_empty()) else {
            return Outcome::MissingId;
        };
        if let Some(gate) = &self.gate
            && let Err(limited) = gate.check(req.seq, at)
        {
            return Outcome::RateLimited(limited);
        }
        // Drawn in a fixed order so the outcome depends only on the seed and `seq`.
        let (reset, error, code, truncate, short) = (
            dice.f64(),
            dice.f64(),
            dice.usize(..SERVER_ERRORS.len()),
            dice.f64(),
            dice.bool(),
        );
        if reset < cfg.reset_rate {
            return Outcome::Reset;
        }
        if error < cfg.error_rate {
            return Outcome::ServerError(SERVER_ERRORS[code]);
        }
        if cfg.is_pending(id, at.wall) {
            return Outcome::NotFound;
        }
        match cfg.refusal(req.endpoint, id) {
            Some(403) => return Outcome::Forbidden,
            Some(_) => return Outcome::NotFound,
            None => {}
        }
        if truncate < cfg.truncate_rate {
            return Outcome::Truncated(if short {
                Cut::ShortBody
            } else {
                Cut::BrokenJson
            });
        }
        Outcome::Ok
    }

    /// The `X-RateLimit-*` state every answer carries with `rate_headers`; None without it.
    pub(crate) fn quota(&self, at: Moment) -> Option<Quota> {
        if !self.config.rate_headers {
            return None;
        }
        self.gate.as_ref()?.quota(at)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use super::super::dice::request_dice;
    use super::*;

    fn decide(
        faults: &Faults,
        seq: u64,
        endpoint: Endpoint,
        id: &str,
        auth: Option<&str>,
    ) -> Outcome {
        let req = Request {
            seq,
            endpoint,
            id: Some(id),
            authorization: auth.map(str::as_bytes),
        };
        let mut dice = request_dice(faults.config.seed, seq);
        faults.latency(&mut dice);
        let now = Instant::now();
        faults.decide(&req, &mut dice, Moment::new(now, SystemTime::now(), now))
    }

    /// The metadata answer for `id` when the wall clock reads `unix` seconds.
    fn decide_at(faults: &Faults, id: &str, unix: u64) -> Outcome {
        let req = Request {
            seq: 1,
            endpoint: Endpoint::Metadata,
            id: Some(id),
            authorization: None,
        };
        let mut dice = request_dice(faults.config.seed, 1);
        faults.latency(&mut dice);
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(unix);
        faults.decide(&req, &mut dice, Moment::new(now, wall, now))
    }

    #[test]
    fn checks_run_in_documented_order() {
        let faults = Faults::new(SimConfig {
            api_key: Some("k".into()),
            payment_required_after: Some(1),
            error_rate: 1.0,
            ..SimConfig::default()
        });
        let meta = Endpoint::Metadata;
        assert!(matches!(
            decide(&faults, 1, meta, "x", None),
            Outcome::Unauthorized
        ));
        assert!(matches!(
            decide(&faults, 1, meta, "x", Some("Bearer nope")),
            Outcome::Unauthorized
        ));
        assert!(matches!(
            decide(&faults, 1, meta, "x", Some("Bearer k")),
            Outcome::ServerError(_)
        ));
        assert!(matches!(
            decide(&faults, 2, meta, "x", Some("Bearer k")),
            Outcome::PaymentRequired
        ));
        let content = decide(&faults, 2, Endpoint::Content, "x", Some("Bearer k"));
        assert!(matches!(content, Outcome::ServerError(_)));
        assert!(matches!(
            decide(&faults, 1, meta, "", Some("Bearer k")),
            Outcome::MissingId
        ));
    }

    #[test]
    fn server_errors_cover_every_status() {
        let faults = Faults::new(SimConfig {
            error_rate: 1.0,
            ..SimConfig::default()
        });
        let codes: BTreeSet<u16> = (1..200)
            .filter_map(
                |seq| match decide(&faults, seq, Endpoint::Metadata, "x", None) {
                    Outcome::ServerError(code) => Some(code),
                    _ => None,
                },
            )
            .collect();
        assert_eq!(codes, SERVER_ERRORS.into_iter().collect());
    }

    #[test]
    fn per_id_faults_are_stable_and_per_request_faults_vary() {
        let faults = Faults::new(SimConfig {
            missing_rate: 0.3,
            reset_rate: 0.5,
            ..SimConfig::default()
        });
        let missing = |id: &str| {
            (1..50).any(|seq| {
                matches!(
                    decide(&faults, seq, Endpoint::Metadata, id, None),
                    Outcome::NotFound
                )
            })
        };
        let ids: Vec<String> = (0..1_000).map(|i| format!("gen-{i}")).collect();
        let n = ids.iter().filter(|id| missing(id)).count();
        assert!((220..380).contains(&n), "{n}");
        let resets = (1..1_000)
            .filter(|&seq| {
                matches!(
                    decide(&faults, seq, Endpoint::Content, "a", None),
                    Outcome::Reset
                )
            })
            .count();
        assert!((400..600).contains(&resets), "{resets}");
    }

    #[test]
    fn young_generations_are_not_found() {
        let faults = Faults::new(SimConfig {
            young_not_found: Duration::from_secs(60),
            ..SimConfig::default()
        });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let young = format!("gen-{now}-AAAAAAAAAAAAAAAAAAAA");
        let old = format!("gen-{}-AAAAAAAAAAAAAAAAAAAA", now - 120);
        assert!(matches!(
            decide(&faults, 1, Endpoint::Metadata, &young, None),
            Outcome::NotFound
        ));
        assert!(matches!(
            decide(&faults, 2, Endpoint::Metadata, &old, None),
            Outcome::Ok
        ));
        assert!(matches!(
            decide(&faults, 3, Endpoint::Metadata, "gen-legacyid", None),
            Outcome::Ok
        ));
    }

    #[test]
    fn long_generations_are_not_found_until_they_end() {
        let faults = Faults::new(SimConfig {
            long_generation_share: 1.0,
            ..SimConfig::default()
        });
        let tail = "YmgZuzDAKrAywxh1aHQW";
        let duration = faults.config.generation_duration(tail).as_secs();
        assert!(duration > 0);
        let id = format!("gen-1764704027-{tail}");
        let ended = 1_764_704_027 + duration;
        assert!(matches!(
            decide_at(&faults, &id, ended - 1),
            Outcome::NotFound
        ));
        assert!(matches!(decide_at(&faults, &id, ended), Outcome::Ok));
        // The young window counts from the end of the generation.
        let faults = Faults::new(SimConfig {
            young_not_found: Duration::from_secs(60),
            ..faults.config.clone()
        });
        assert!(matches!(
            decide_at(&faults, &id, ended + 59),
            Outcome::NotFound
        ));
        assert!(matches!(decide_at(&faults, &id, ended + 60), Outcome::Ok));
    }

    #[test]
    fn content_only_faults_leave_metadata_alone() {
        let faults = Faults::new(SimConfig {
            content_forbidden_rate: 1.0,
            ..SimConfig::default()
        });
        assert!(matches!(
            decide(&faults, 1, Endpoint::Content, "x", None),
            Outcome::Forbidden
        ));
        assert!(matches!(
            decide(&faults, 2, Endpoint::Metadata, "x", None),
            Outcome::Ok
        ));
        let faults = Faults::new(SimConfig {
            truncate_rate: 1.0,
            ..SimConfig::default()
        });
        let cuts: BTreeSet<_> = (1..50)
            .map(|seq| format!("{:?}", decide(&faults, seq, Endpoint::Metadata, "x", None)))
            .collect();
        assert_eq!(cuts.len(), 2, "{cuts:?}");
    }
}
