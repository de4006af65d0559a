//! Deterministic generation metadata: the same ID always yields the same record.

use chrono::{DateTime, Datelike, Timelike};

use super::details::{fill_extras, fill_routing, fill_timing, fill_usage};
use super::dice::{IdDice, id_unix_seconds};
use super::json::{Obj, push_dec, text};
use super::pricing::{MODELS, Money, Tokens};

pub use super::content::{SimContent, content, content_with_prompt};

const RECORD_SALT: u64 = 0x0067_656E_5F72_6563;
/// The last second chrono prints as a four-digit RFC 3339 year.
const MAX_RFC3339_SECS: i64 = 253_402_300_799;

/// Which "may be absent" keys this record leaves out of the JSON object entirely.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AbsentKeys {
    pub request_id: bool,
    pub session_id: bool,
    pub response_cache_source_id: bool,
}

/// One generation's metadata as the simulator serves it; money fields hold the exact JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimGeneration {
    pub id: String,
    pub created_at: String,
    pub model: Option<String>,
    pub provider_name: Option<String>,
    pub api_type: Option<String>,
    pub router: Option<String>,
    pub upstream_id: Option<String>,
    pub origin: Option<String>,
    pub external_user: Option<String>,
    pub session_id: Option<String>,
    pub request_id: Option<String>,
    pub workspace_id: Option<String>,
    pub preset_id: Option<String>,
    pub data_region: Option<String>,
    pub web_search_engine: Option<String>,
    pub finish_reason: Option<String>,
    pub native_finish_reason: Option<String>,
    pub service_tier: Option<String>,
    pub response_cache_source_id: Option<String>,
    pub http_referer: Option<String>,
    pub user_agent: Option<String>,
    pub app_id: Option<i64>,
    pub total_cost: Option<String>,
    pub usage: Option<String>,
    pub upstream_inference_cost: Option<String>,
    pub cache_discount: Option<String>,
    pub is_byok: Option<bool>,
    pub streamed: Option<bool>,
    pub cancelled: Option<bool>,
    pub tokens_prompt: Option<i64>,
    pub tokens_completion: Option<i64>,
    pub native_tokens_prompt: Option<i64>,
    pub native_tokens_completion: Option<i64>,
    pub native_tokens_completion_images: Option<i64>,
    pub native_tokens_reasoning: Option<i64>,
    pub native_tokens_cached: Option<i64>,
    pub num_media_prompt: Option<i64>,
    pub num_input_audio_prompt: Option<i64>,
    pub num_media_completion: Option<i64>,
    pub num_search_results: Option<i64>,
    pub num_fetches: Option<i64>,
    pub latency: Option<f64>,
    pub generation_time: Option<f64>,
    pub moderation_latency: Option<f64>,
    /// Raw JSON text of the provider attempts array.
    pub provider_responses: Option<String>,
    /// Fields outside the API table, as (name, raw JSON text), written in this order.
    pub unknown: Vec<(String, String)>,
    /// Keys missing from the JSON object (their values above are then `None`).
    pub absent: AbsentKeys,
}

/// RFC 3339 creation time: the ID's second when it has one, else a hash-chosen instant in 2025.
fn created_at(id: &str, d: &mut IdDice) -> String {
    let micros = d.below(1_000_000);
    let zone = if d.percent(50) { "Z" } else { "+00:00" };
    let in_2025 = 1_735_689_600 + d.below(365 * 86_400) as i64;
    let secs = id_unix_seconds(id)
        .filter(|s| (0..=MAX_RFC3339_SECS).contains(s))
        .unwrap_or(in_2025);
    // Field accessors instead of a strftime pattern: this runs once per served record.
    let Some(t) = DateTime::from_timestamp(secs, 0) else {
        return text("2025-01-01T00:00:00.", |out| {
            push_dec(out, micros, 6);
            out.push_str(zone);
        });
    };
    // The year is 1970 to 9999: `secs` is in range and not negative.
    let year = u64::try_from(t.year()).unwrap_or(0);
    let parts = [
        (year, 4, '-'),
        (u64::from(t.month()), 2, '-'),
        (u64::from(t.day()), 2, 'T'),
        (u64::from(t.hour()), 2, ':'),
        (u64::from(t.minute()), 2, ':'),
        (u64::from(t.second()), 2, '.'),
    ];
    text("", |out| {
        for (value, width, then) in parts {
            push_dec(out, value, width);
            out.push(then);
        }
        push_dec(out, micros, 6);
        out.push_str(zone);
    })
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// Builds the record for `id`; it depends on nothing but the ID.
pub fn generation(id: &str) -> SimGeneration {
    let mut d = IdDice::new(id, RECORD_SALT);
    let model = d.pick_ref(MODELS);
    let bare = d.below(50) == 0;
    let created_at = created_at(id, &mut d);
    let absent = AbsentKeys {
        request_id: d.percent(25),
        session_id: d.percent(40),
        response_cache_source_id: d.percent(60),
    };
    let tokens = Tokens::draw(&mut d, model);
    let is_byok = d.percent(8);
    let money = Money::draw(&mut d, &tokens, model, is_byok);
    let origin = d.pick(&[
        "https://openrouter.ai/",
        "",
        "https://example-app.dev/",
        "http://localhost:3000/",
    ]);
    let region = match d.below(100) {
        0..80 => "global",
        80..92 => "europe",
        _ => "us",
    };
    let mut g = SimGeneration {
        id: id.to_owned(),
        created_at,
        model: some(model.slug),
        origin: some(origin),
        data_region: some(region),
        is_byok: Some(is_byok),
        total_cost: Some(money.total.clone()),
        usage: Some(money.total.clone()),
        absent,
        ..SimGeneration::default()
    };
    if !bare {
        fill_routing(&mut g, &mut d, model);
        fill_usage(&mut g, &mut d, model, &tokens, money);
        fill_timing(&mut g, &mut d, &tokens);
        fill_extras(&mut g, &mut d, model);
    }
    g
}

fn s(v: &Option<String>) -> Option<&str> {
    v.as_deref()
}

impl SimGeneration {
    /// The `data` object exactly as the metadata endpoint serves it.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(1_600);
        self.write_json(&mut out);
        out
    }

    /// Appends the `data` object to `out` (the server's allocation-light path).
    pub fn write_json(&self, out: &mut String) {
        let mut o = Obj::open(out);
        o.str("id", &self.id);
        o.opt_str("upstream_id", s(&self.upstream_id));
        o.opt_raw("total_cost", s(&self.total_cost));
        o.opt_raw("cache_discount", s(&self.cache_discount));
        o.opt_raw("upstream_inference_cost", s(&self.upstream_inference_cost));
        o.str("created_at", &self.created_at);
        o.opt_str("model", s(&self.model));
        o.opt_i64("app_id", self.app_id);
        o.opt_bool("streamed", self.streamed);
        o.opt_bool("cancelled", self.cancelled);
        o.opt_str("provider_name", s(&self.provider_name));
        o.opt_f64("latency", self.latency);
        o.opt_f64("moderation_latency", self.moderation_latency);
        o.opt_f64("generation_time", self.generation_time);
        o.opt_str("finish_reason", s(&self.finish_reason));
        self.write_counts(&mut o);
        o.opt_str("origin", s(&self.origin));
        o.opt_raw("usage", s(&self.usage));
        for (name, raw) in &self.unknown {
            o.raw_named(name, raw);
        }
        o.opt_bool("is_byok", self.is_byok);
        o.opt_str("native_finish_reason", s(&self.native_finish_reason));
        o.opt_str("external_user", s(&self.external_user));
        o.opt_str("api_type", s(&self.api_type));
        o.opt_str("router", s(&self.router));
        o.opt_raw("provider_responses", s(&self.provider_responses));
        o.opt_str("user_agent", s(&self.user_agent));
        o.opt_str("http_referer", s(&self.http_referer));
        if !self.absent.request_id {
            o.opt_str("request_id", s(&self.request_id));
        }
        if !self.absent.session_id {
            o.opt_str("session_id", s(&self.session_id));
        }
        o.opt_str("workspace_id", s(&self.workspace_id));
        o.opt_str("preset_id", s(&self.preset_id));
        o.opt_str("data_region", s(&self.data_region));
        o.opt_str("web_search_engine", s(&self.web_search_engine));
        o.opt_str("service_tier", s(&self.service_tier));
        if !self.absent.response_cache_source_id {
            o.opt_str(
                "response_cache_source_id",
                s(&self.response_cache_source_id),
            );
        }
        o.close();
    }

    /// The token and media counts, where the API puts them in the object.
    fn write_counts(&self, o: &mut Obj<'_>) {
        o.opt_i64("tokens_prompt", self.tokens_prompt);
        o.opt_i64("tokens_completion", self.tokens_completion);
        o.opt_i64("native_tokens_prompt", self.native_tokens_prompt);
        o.opt_i64("native_tokens_completion", self.native_tokens_completion);
        o.opt_i64(
            "native_tokens_completion_images",
            self.native_tokens_completion_images,
        );
        o.opt_i64("native_tokens_reasoning", self.native_tokens_reasoning);
        o.opt_i64("native_tokens_cached", self.native_tokens_cached);
        o.opt_i64("num_media_prompt", self.num_media_prompt);
        o.opt_i64("num_input_audio_prompt", self.num_input_audio_prompt);
        o.opt_i64("num_media_completion", self.num_media_completion);
        o.opt_i64("num_search_results", self.num_search_results);
        o.opt_i64("num_fetches", self.num_fetches);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn ids(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| match i % 3 {
            0 => format!("gen-{}-{:020}", 1_700_000_000 + i * 37, i),
            1 => format!("gen-old{i:024}"),
            _ => format!("weird id {i} / ü"),
        })
    }

    #[test]
    fn same_id_gives_same_record() {
        for id in ids(200) {
            assert_eq!(generation(&id), generation(&id));
            assert_eq!(generation(&id).to_json(), generation(&id).to_json());
        }
        assert_ne!(
            generation("gen-1-a").to_json(),
            generation("gen-1-b").to_json()
        );
    }

    fn check_str(obj: &Value, key: &str, expected: &Option<String>) {
        assert_eq!(
            obj.get(key).and_then(Value::as_str),
            expected.as_deref(),
            "{key}"
        );
    }

    #[test]
    fn every_record_is_well_formed_and_matches_its_fields() {
        for id in ids(10_000) {
            let g = generation(&id);
            let text = g.to_json();
            let obj: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(obj["id"], id.as_str());
            check_str(&obj, "created_at", &Some(g.created_at.clone()));
            check_str(&obj, "model", &g.model);
            check_str(&obj, "user_agent", &g.user_agent);
            check_str(&obj, "http_referer", &g.http_referer);
            check_str(&obj, "request_id", &g.request_id);
            for key in [
                "id",
                "created_at",
                "model",
                "origin",
                "data_region",
                "is_byok",
                "total_cost",
                "usage",
            ] {
                assert!(!obj[key].is_null(), "{key} null in {text}");
            }
            for (key, raw) in [
                ("total_cost", &g.total_cost),
                ("usage", &g.usage),
                ("cache_discount", &g.cache_discount),
            ] {
                let raw = raw.as_deref().unwrap_or("null");
                assert!(
                    text.contains(&format!("\"{key}\":{raw},")),
                    "{key} {raw} in {text}"
                );
            }
            assert_eq!(g.total_cost, g.usage);
            assert_eq!(obj["tokens_prompt"].as_i64(), g.tokens_prompt);
            assert_eq!(obj["latency"].as_f64(), g.latency);
            assert_eq!(obj.get("request_id").is_none(), g.absent.request_id);
            assert_eq!(obj.get("session_id").is_none(), g.absent.session_id);
            assert_eq!(
                obj.get("response_cache_source_id").is_none(),
                g.absent.response_cache_source_id
            );
            if let Some(raw) = &g.provider_responses {
                let attempts: Vec<Value> = serde_json::from_str(raw).expect("array");
                assert!(
                    attempts
                        .iter()
                        .all(|a| a["status"].is_i64() && a["provider_name"].is_string())
                );
            }
            for (name, raw) in &g.unknown {
                let value: Value = serde_json::from_str(raw).expect("raw unknown value");
                assert_eq!(obj[name], value);
            }
        }
    }

    #[test]
    fn created_at_uses_the_id_second() {
        let g = generation("gen-1795255200-AAAAAAAAAAAAAAAAAAAA");
        let parsed = DateTime::parse_from_rfc3339(&g.created_at).expect("rfc3339");
        assert_eq!(parsed.timestamp(), 1_795_255_200);
        assert!(g.created_at.starts_with("2026-11-21T10:00:00."));
        let old = DateTime::parse_from_rfc3339(
            &generation("gen-3bhGkxlo4XFrqiabUM7NDtwDzWwG").created_at,
        )
        .expect("rfc3339");
        assert!((1_735_689_600..1_767_225_600).contains(&old.timestamp()));
        let huge = generation("gen-99999999999999-x");
        assert!(DateTime::parse_from_rfc3339(&huge.created_at).is_ok());
    }

    #[test]
    fn odd_money_texts_nulls_and_unknown_fields_all_occur() {
        let records: Vec<_> = ids(10_000).map(|id| generation(&id)).collect();
        for odd in [
            "0.30000000000000004",
            "3e-7",
            "1.2345678901234567",
            "0",
            "2.5E-5",
        ] {
            let n = records
                .iter()
                .filter(|g| g.total_cost.as_deref() == Some(odd))
                .count();
            assert!((40..200).contains(&n), "{odd}: {n}");
        }
        let bare = records
            .iter()
            .filter(|g| g.provider_name.is_none() && g.latency.is_none())
            .count();
        assert!((100..350).contains(&bare), "bare {bare}");
        let with_unknown = records.iter().filter(|g| !g.unknown.is_empty()).count();
        assert!(
            (4_000..6_000).contains(&with_unknown),
            "unknown {with_unknown}"
        );
        assert!(records.iter().any(|g| g.absent.session_id));
        assert!(records.iter().any(|g| g.response_cache_source_id.is_some()));
        assert!(
            records
                .iter()
                .any(|g| g.latency.is_some_and(|l| l.fract() == 0.5))
        );
        assert!(records.iter().any(|g| {
            g.cache_discount
                .as_deref()
                .is_some_and(|c| c.starts_with('-'))
        }));
        let zulu = records
            .iter()
            .filter(|g| g.created_at.ends_with('Z'))
            .count();
        assert!((4_000..6_000).contains(&zulu));
    }
}
