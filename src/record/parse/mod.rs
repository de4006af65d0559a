//! Lenient parsing of a `GET /generation` answer into a [`Generation`].
//!
//! Only `id` is required. A field that is null or missing is `None`; a field
//! whose value has an unexpected type is kept, unchanged, in `extra` rather than
//! dropped. Money is read from the number's text, never through `f64`, and a
//! money value that cannot be stored exactly is an error, not a rounding.

mod fields;

use super::Generation;
use crate::money::MoneyError;
use fields::{Envelope, Fields};

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

/// Parses an answer body for `requested_id`, stamping `run_id` and `exported_at`.
pub fn parse_generation(
    body: &str,
    requested_id: &str,
    run_id: &str,
    exported_at: i64,
) -> Result<Generation, ParseError> {
    let Envelope(data) =
        serde_json::from_str(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let mut f = data.ok_or(ParseError::NoData)?;

    let id = f
        .text(Key::Id)
        .filter(|id| !id.is_empty())
        .ok_or(ParseError::NoId)?;
    if id != requested_id {
        return Err(ParseError::IdMismatch { found: id });
    }
    let mut g = read_columns(&mut f, id, run_id, exported_at)?;
    g.extra = f.into_extra();
    Ok(g)
}

/// Takes every field that has a column out of `f`, leaving the rest for
/// `extra`.
fn read_columns(
    f: &mut Fields<'_>,
    id: String,
    run_id: &str,
    exported_at: i64,
) -> Result<Generation, ParseError> {
    Ok(Generation {
        id,
        created_at: f.timestamp(Key::CreatedAt),
        model: f.text(Key::Model),
        provider_name: f.text(Key::ProviderName),
        api_type: f.text(Key::ApiType),
        router: f.text(Key::Router),
        upstream_id: f.text(Key::UpstreamId),
        origin: f.text(Key::Origin),
        app_id: f.int(Key::AppId),
        external_user: f.text(Key::ExternalUser),
        session_id: f.text(Key::SessionId),
        request_id: f.text(Key::RequestId),
        workspace_id: f.text(Key::WorkspaceId),
        preset_id: f.text(Key::PresetId),
        data_region: f.text(Key::DataRegion),
        total_cost: f.money(Key::TotalCost)?,
        usage: f.money(Key::Usage)?,
        upstream_inference_cost: f.money(Key::UpstreamInferenceCost)?,
        cache_discount: f.money(Key::CacheDiscount)?,
        is_byok: f.bool(Key::IsByok),
        tokens_prompt: f.int(Key::TokensPrompt),
        tokens_completion: f.int(Key::TokensCompletion),
        native_tokens_prompt: f.int(Key::NativeTokensPrompt),
        native_tokens_completion: f.int(Key::NativeTokensCompletion),
        native_tokens_completion_images: f.int(Key::NativeTokensCompletionImages),
        native_tokens_reasoning: f.int(Key::NativeTokensReasoning),
        native_tokens_cached: f.int(Key::NativeTokensCached),
        num_media_prompt: f.int(Key::NumMediaPrompt),
        num_input_audio_prompt: f.int(Key::NumInputAudioPrompt),
        num_media_completion: f.int(Key::NumMediaCompletion),
        num_search_results: f.int(Key::NumSearchResults),
        num_fetches: f.int(Key::NumFetches),
        web_search_engine: f.text(Key::WebSearchEngine),
        latency_ms: f.float(Key::Latency),
        generation_time_ms: f.float(Key::GenerationTime),
        moderation_latency_ms: f.float(Key::ModerationLatency),
        streamed: f.bool(Key::Streamed),
        cancelled: f.bool(Key::Cancelled),
        finish_reason: f.text(Key::FinishReason),
        native_finish_reason: f.text(Key::NativeFinishReason),
        service_tier: f.text(Key::ServiceTier),
        response_cache_source_id: f.text(Key::ResponseCacheSourceId),
        provider_responses: f.json(Key::ProviderResponses),
        extra: None,
        run_id: run_id.to_owned(),
        exported_at,
    })
}

/// Declares the answer fields that have a column, each with its JSON name.
macro_rules! known_keys {
    ($($variant:ident = $name:literal,)*) => {
        /// An answer field with a column of its own.
        #[derive(Debug, Clone, Copy)]
        enum Key { $($variant,)* }

        impl Key {
            const COUNT: usize = [$($name,)*].len();

            fn name(self) -> &'static str {
                match self { $(Key::$variant => $name,)* }
            }

            fn from_name(name: &str) -> Option<Key> {
                match name { $($name => Some(Key::$variant),)* _ => None }
            }
        }
    };
}

known_keys! {
    Id = "id",
    CreatedAt = "created_at",
    Model = "model",
    ProviderName = "provider_name",
    ApiType = "api_type",
    Router = "router",
    UpstreamId = "upstream_id",
    Origin = "origin",
    AppId = "app_id",
    ExternalUser = "external_user",
    SessionId = "session_id",
    RequestId = "request_id",
    WorkspaceId = "workspace_id",
    PresetId = "preset_id",
    DataRegion = "data_region",
    TotalCost = "total_cost",
    Usage = "usage",
    UpstreamInferenceCost = "upstream_inference_cost",
    CacheDiscount = "cache_discount",
    IsByok = "is_byok",
    TokensPrompt = "tokens_prompt",
    TokensCompletion = "tokens_completion",
    NativeTokensPrompt = "native_tokens_prompt",
    NativeTokensCompletion = "native_tokens_completion",
    NativeTokensCompletionImages = "native_tokens_completion_images",
    NativeTokensReasoning = "native_tokens_reasoning",
    NativeTokensCached = "native_tokens_cached",
    NumMediaPrompt = "num_media_prompt",
    NumInputAudioPrompt = "num_input_audio_prompt",
    NumMediaCompletion = "num_media_completion",
    NumSearchResults = "num_search_results",
    NumFetches = "num_fetches",
    WebSearchEngine = "web_search_engine",
    Latency = "latency",
    GenerationTime = "generation_time",
    ModerationLatency = "moderation_latency",
    Streamed = "streamed",
    Cancelled = "cancelled",
    FinishReason = "finish_reason",
    NativeFinishReason = "native_finish_reason",
    ServiceTier = "service_tier",
    ResponseCacheSourceId = "response_cache_source_id",
    ProviderResponses = "provider_responses",
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
            r#"{"id":"gen-1","model":"a","x":1,"model":"b","x":2,"total_cost":1,"total_cost":null,"y":3,"y":null}"#,
        )
        .unwrap();
        assert_eq!(g.model.as_deref(), Some("b"));
        assert_eq!(g.total_cost, None);
        assert_eq!(g.extra.as_deref(), Some(r#"{"x":2}"#));
    }

    #[test]
    fn escaped_keys_and_strings_are_unescaped() {
        let g = parse(
            r#"{"i\u0064":"gen-1","model":"a\"b\u00e9","created_at":"2024-07-15T23:33:19Z","q\"k":1,"plain":2}"#,
        )
        .unwrap();
        assert_eq!(g.model.as_deref(), Some("a\"bé"));
        assert_eq!(g.extra.as_deref(), Some(r#"{"plain":2,"q\"k":1}"#));
        assert_eq!(g.created_at, Some(1_721_086_399_000_000));
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
        for data in ["null", "[1,{}]", r#""gen-1""#, "7", "true"] {
            assert_eq!(parse(data).unwrap_err(), ParseError::NoData, "{data}");
        }
        assert_eq!(
            parse_generation("{}", "gen-1", "r", 0).unwrap_err(),
            ParseError::NoData
        );
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
