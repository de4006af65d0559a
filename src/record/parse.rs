//! Lenient parsing of a `GET /generation` answer into a [`Generation`].
//!
//! Only `id` is required. A field that is null or missing is `None`; a field
//! whose value has an unexpected type is kept, unchanged, in `extra` rather than
//! dropped. Money is read from the number's text, never through `f64`, and a
//! money value that cannot be stored exactly is an error, not a rounding.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::Generation;
use crate::money::{Money, MoneyError};

/// Why an answer could not be turned into a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("answer body is not a JSON object: {0}")]
    NotJson(String),
    #[error("answer has no `data` object")]
    NoData,
    #[error("answer has no string `id`")]
    NoId,
    #[error("answer is for `{found}`, not for the requested ID")]
    IdMismatch { found: String },
    #[error("field `{field}`: {source}")]
    Money {
        field: &'static str,
        source: MoneyError,
    },
}

impl ParseError {
    /// A cut or garbled body is worth fetching again; a well-formed answer with
    /// unusable content is not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ParseError::NotJson(_) | ParseError::NoData | ParseError::NoId
        )
    }
}

#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// Parses an answer body for `requested_id`, stamping `run_id` and `exported_at`.
pub fn parse_generation(
    body: &str,
    requested_id: &str,
    run_id: &str,
    exported_at: i64,
) -> Result<Generation, ParseError> {
    let envelope: Envelope<'_> =
        serde_json::from_str(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let data = envelope.data.ok_or(ParseError::NoData)?;
    let FieldList(map) = serde_json::from_str(data.get()).map_err(|_| ParseError::NoData)?;
    let mut f = Fields::new(map);

    let id = f
        .text("id")
        .filter(|id| !id.is_empty())
        .ok_or(ParseError::NoId)?;
    if id != requested_id {
        return Err(ParseError::IdMismatch { found: id });
    }
    let mut g = Generation {
        id,
        created_at: f.timestamp("created_at"),
        model: f.text("model"),
        provider_name: f.text("provider_name"),
        api_type: f.text("api_type"),
        router: f.text("router"),
        upstream_id: f.text("upstream_id"),
        origin: f.text("origin"),
        app_id: f.int("app_id"),
        external_user: f.text("external_user"),
        session_id: f.text("session_id"),
        request_id: f.text("request_id"),
        workspace_id: f.text("workspace_id"),
        preset_id: f.text("preset_id"),
        data_region: f.text("data_region"),
        total_cost: f.money("total_cost")?,
        usage: f.money("usage")?,
        upstream_inference_cost: f.money("upstream_inference_cost")?,
        cache_discount: f.money("cache_discount")?,
        is_byok: f.bool("is_byok"),
        tokens_prompt: f.int("tokens_prompt"),
        tokens_completion: f.int("tokens_completion"),
        native_tokens_prompt: f.int("native_tokens_prompt"),
        native_tokens_completion: f.int("native_tokens_completion"),
        native_tokens_completion_images: f.int("native_tokens_completion_images"),
        native_tokens_reasoning: f.int("native_tokens_reasoning"),
        native_tokens_cached: f.int("native_tokens_cached"),
        num_media_prompt: f.int("num_media_prompt"),
        num_input_audio_prompt: f.int("num_input_audio_prompt"),
        num_media_completion: f.int("num_media_completion"),
        num_search_results: f.int("num_search_results"),
        num_fetches: f.int("num_fetches"),
        web_search_engine: f.text("web_search_engine"),
        latency_ms: f.float("latency"),
        generation_time_ms: f.float("generation_time"),
        moderation_latency_ms: f.float("moderation_latency"),
        streamed: f.bool("streamed"),
        cancelled: f.bool("cancelled"),
        finish_reason: f.text("finish_reason"),
        native_finish_reason: f.text("native_finish_reason"),
        service_tier: f.text("service_tier"),
        response_cache_source_id: f.text("response_cache_source_id"),
        provider_responses: f.json("provider_responses"),
        extra: None,
        run_id: run_id.to_owned(),
        exported_at,
    };
    g.extra = f.into_extra();
    Ok(g)
}

/// An object's fields in order, keys borrowed from the body where they need no
/// unescaping. About 45 fields, so a vector beats a map here.
struct FieldList<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for FieldList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = FieldList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(48));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    fields.push((key.0, map.next_value()?));
                }
                Ok(FieldList(fields))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A key, borrowed unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// The answer's fields not yet taken, and the known ones that had the wrong type.
struct Fields<'a> {
    map: Vec<(Cow<'a, str>, &'a RawValue)>,
    mismatched: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Fields<'a> {
    /// The last of repeated keys wins, as in a map; earlier ones are dropped
    /// here, once, so each `take` finds at most one entry. Answers almost
    /// never repeat a key, so the check is a sort of key hashes, and the
    /// exact comparison runs only when two hashes match.
    fn new(mut map: Vec<(Cow<'a, str>, &'a RawValue)>) -> Fields<'a> {
        let mut hashes: Vec<u64> = map
            .iter()
            .map(|(k, _)| xxhash_rust::xxh3::xxh3_64(k.as_bytes()))
            .collect();
        hashes.sort_unstable();
        if hashes.windows(2).any(|w| w[0] == w[1]) {
            let mut at = map.len();
            while at > 0 {
                at -= 1;
                let later = map[at + 1..].iter().any(|(k, _)| *k == map[at].0);
                if later {
                    map.remove(at);
                }
            }
        }
        Fields {
            map,
            mismatched: Vec::new(),
        }
    }

    /// Takes `key`; `None` when absent or null.
    fn take(&mut self, key: &str) -> Option<&'a RawValue> {
        let at = self.map.iter().rposition(|(k, _)| k == key)?;
        let (_, raw) = self.map.swap_remove(at);
        Some(raw).filter(|raw| raw.get() != "null")
    }

    /// Takes `key` and converts it, keeping the raw value in `extra` when the
    /// conversion fails.
    fn convert<T>(
        &mut self,
        key: &'static str,
        convert: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let raw = self.take(key)?;
        let value = convert(raw.get());
        if value.is_none() {
            self.mismatched.push((Cow::Borrowed(key), raw));
        }
        value
    }

    fn text(&mut self, key: &'static str) -> Option<String> {
        // Enums are open strings, and a number where a string was expected is
        // still the value the API meant.
        self.convert(key, |raw| match raw.as_bytes().first() {
            Some(b'"') => serde_json::from_str(raw).ok(),
            Some(b'[' | b'{') | None => None,
            Some(_) => Some(raw.to_owned()),
        })
    }

    fn int(&mut self, key: &'static str) -> Option<i64> {
        self.convert(key, |raw| {
            let text = unquote(raw)?;
            text.parse::<i64>().ok().or_else(|| {
                let float: f64 = text.parse().ok()?;
                let integral = float.fract() == 0.0 && float.abs() < 9.0e15;
                integral.then_some(float as i64)
            })
        })
    }

    fn float(&mut self, key: &'static str) -> Option<f64> {
        self.convert(key, |raw| {
            unquote(raw)?.parse::<f64>().ok().filter(|f| f.is_finite())
        })
    }

    fn bool(&mut self, key: &'static str) -> Option<bool> {
        self.convert(key, |raw| match unquote(raw)? {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }

    fn timestamp(&mut self, key: &'static str) -> Option<i64> {
        self.convert(key, |raw| {
            let text: String = serde_json::from_str(raw).ok()?;
            let parsed = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
            Some(parsed.timestamp_micros())
        })
    }

    fn json(&mut self, key: &'static str) -> Option<String> {
        self.take(key).map(|raw| raw.get().to_owned())
    }

    /// Money must be exact: a value that is not a number, or that needs more
    /// than 18 decimals, fails the record instead of being guessed.
    fn money(&mut self, key: &'static str) -> Result<Option<Money>, ParseError> {
        let Some(raw) = self.take(key) else {
            return Ok(None);
        };
        let text = unquote(raw.get()).unwrap_or(raw.get());
        Money::parse(text)
            .map(Some)
            .map_err(|source| ParseError::Money { field: key, source })
    }

    /// The leftovers as one JSON object, keys sorted, values byte for byte as
    /// the API sent them; null values are left out.
    fn into_extra(self) -> Option<String> {
        // A null carries nothing worth a place in `extra`.
        let mut rest: Vec<(Cow<'_, str>, &RawValue)> = self
            .map
            .into_iter()
            .filter(|(_, raw)| raw.get() != "null")
            .collect();
        rest.extend(self.mismatched);
        if rest.is_empty() {
            return None;
        }
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::from("{");
        for (i, (key, raw)) in rest.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Serialising a `&str` cannot fail.
            out.push_str(&serde_json::to_string(key).unwrap_or_default());
            out.push(':');
            out.push_str(raw.get());
        }
        out.push('}');
        Some(out)
    }
}

/// A scalar's text: numbers and literals as they are, strings without quotes
/// (only when they need no unescaping). `None` for objects and arrays.
fn unquote(raw: &str) -> Option<&str> {
    match raw.as_bytes().first()? {
        b'[' | b'{' => None,
        b'"' => raw
            .strip_prefix('"')?
            .strip_suffix('"')
            .filter(|s| !s.contains('\\')),
        _ => Some(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &str) -> Result<Generation, ParseError> {
        parse_generation(&format!(r#"{{"data":{data}}}"#), "gen-1", "run", 7)
    }

    #[test]
    fn money_is_exact_and_unknown_fields_land_in_extra() {
        let g = parse(
            r#"{"id":"gen-1","total_cost":0.30000000000000004,"usage":3e-7,"cache_discount":"0.5",
               "zeta":{"a":1.10},"alpha":[1,2],"tokens_prompt":"many","gone":null,"created_at":"2024-07-15T23:33:19.433273+00:00"}"#,
        )
        .unwrap();
        assert_eq!(g.total_cost.unwrap().to_string(), "0.30000000000000004");
        assert_eq!(g.usage.unwrap().to_string(), "0.0000003");
        assert_eq!(g.cache_discount.unwrap().to_string(), "0.5");
        assert_eq!(g.tokens_prompt, None);
        assert_eq!(
            g.extra.as_deref(),
            Some(r#"{"alpha":[1,2],"tokens_prompt":"many","zeta":{"a":1.10}}"#)
        );
        assert_eq!(g.created_at, Some(1_721_086_399_433_273));
    }

    #[test]
    fn every_nullable_field_may_be_null_or_missing() {
        let g = parse(r#"{"id":"gen-1","model":null,"app_id":null,"total_cost":null}"#).unwrap();
        assert_eq!(
            g,
            Generation {
                id: "gen-1".into(),
                run_id: "run".into(),
                exported_at: 7,
                ..Default::default()
            }
        );
    }

    #[test]
    fn the_last_of_repeated_keys_wins_and_earlier_ones_vanish() {
        let g = parse(
            r#"{"id":"gen-1","model":"a","x":1,"model":"b","x":2,"total_cost":1,"total_cost":null}"#,
        )
        .unwrap();
        assert_eq!(g.model.as_deref(), Some("b"));
        assert_eq!(g.total_cost, None);
        assert_eq!(g.extra.as_deref(), Some(r#"{"x":2}"#));
    }

    #[test]
    fn lenient_scalars() {
        let g = parse(
            r#"{"id":"gen-1","app_id":12.0,"latency":"1234.5","streamed":"true","upstream_id":42}"#,
        )
        .unwrap();
        assert_eq!(g.app_id, Some(12));
        assert_eq!(g.latency_ms, Some(1234.5));
        assert_eq!(g.streamed, Some(true));
        assert_eq!(g.upstream_id.as_deref(), Some("42"));
        assert_eq!(g.extra, None);
    }

    #[test]
    fn bad_answers_are_classified() {
        assert!(
            parse_generation("{\"data\":{\"id\":\"gen", "gen-1", "r", 0)
                .unwrap_err()
                .is_transient()
        );
        assert!(
            parse_generation("<html>", "gen-1", "r", 0)
                .unwrap_err()
                .is_transient()
        );
        assert_eq!(parse("null").unwrap_err(), ParseError::NoData);
        assert_eq!(parse(r#"{"model":"x"}"#).unwrap_err(), ParseError::NoId);
        let mismatch = parse(r#"{"id":"gen-2"}"#).unwrap_err();
        assert!(!mismatch.is_transient());
        let money = parse(r#"{"id":"gen-1","total_cost":1e-30}"#).unwrap_err();
        assert!(matches!(
            money,
            ParseError::Money {
                field: "total_cost",
                ..
            }
        ));
        assert!(!money.is_transient());
        assert!(parse(r#"{"id":"gen-1","usage":{"usd":1}}"#).is_err());
    }
}
