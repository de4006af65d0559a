//! The typed generation record: one row of the `generations` table, built from a
//! `GET /generation` answer.
//!
//! Parsing lives in [`parse`]; this file holds the record and its column table.
//! [`content`] is the `content` table's row, from a `GET /generation/content` answer;
//! [`focus`] the `focus` table's, derived from a generation's row (`cells`).

mod cells;
mod content;
mod failure;
mod focus;
mod parse;

pub use content::{Content, ContentError, parse_content};
pub use failure::{FailureRow, IdStatus, Reason};
pub use focus::{Focus, FocusAccount};
pub use parse::{ParseError, parse_generation};

use crate::money::Money;
use crate::schema::{Column, ColumnType as T, Row, Value};

/// One generation's metadata, typed, with every field but `id` optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generation {
    pub id: String,
    /// Microseconds since the epoch, UTC.
    pub created_at: Option<i64>,
    pub model: Option<String>,
    pub provider_name: Option<String>,
    pub api_type: Option<String>,
    pub router: Option<String>,
    pub upstream_id: Option<String>,
    pub origin: Option<String>,
    pub app_id: Option<i64>,
    pub external_user: Option<String>,
    pub session_id: Option<String>,
    pub request_id: Option<String>,
    pub workspace_id: Option<String>,
    pub preset_id: Option<String>,
    pub data_region: Option<String>,
    pub total_cost: Option<Money>,
    pub usage: Option<Money>,
    pub upstream_inference_cost: Option<Money>,
    pub cache_discount: Option<Money>,
    pub is_byok: Option<bool>,
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
    pub web_search_engine: Option<String>,
    pub latency_ms: Option<f64>,
    pub generation_time_ms: Option<f64>,
    pub moderation_latency_ms: Option<f64>,
    pub streamed: Option<bool>,
    pub cancelled: Option<bool>,
    pub finish_reason: Option<String>,
    pub native_finish_reason: Option<String>,
    pub service_tier: Option<String>,
    pub response_cache_source_id: Option<String>,
    /// The `provider_responses` array as JSON text.
    pub provider_responses: Option<String>,
    /// Every field of the answer without a column of its own (and any known field
    /// whose value had an unexpected type), as a JSON object in text.
    pub extra: Option<String>,
    pub run_id: String,
    /// Microseconds since the epoch, UTC.
    pub exported_at: i64,
}

macro_rules! col {
    ($name:ident, $ty:expr) => {
        Column {
            name: stringify!($name),
            ty: $ty,
            nullable: true,
            get: |g: &Generation| g.$name.as_deref().into(),
        }
    };
    ($name:ident, $ty:expr, copy) => {
        Column {
            name: stringify!($name),
            ty: $ty,
            nullable: true,
            get: |g: &Generation| g.$name.into(),
        }
    };
}

const COLUMNS: &[Column<Generation>] = &[
    Column {
        name: "id",
        ty: T::Text,
        nullable: false,
        get: |g| Value::Text(&g.id),
    },
    Column {
        name: "created_at",
        ty: T::Timestamp,
        nullable: true,
        get: |g| g.created_at.map_or(Value::Null, Value::Timestamp),
    },
    col!(model, T::Text),
    col!(provider_name, T::Text),
    col!(api_type, T::Text),
    col!(router, T::Text),
    col!(upstream_id, T::Text),
    col!(origin, T::Text),
    col!(app_id, T::Int, copy),
    col!(external_user, T::Text),
    col!(session_id, T::Text),
    col!(request_id, T::Text),
    col!(workspace_id, T::Text),
    col!(preset_id, T::Text),
    col!(data_region, T::Text),
    col!(total_cost, T::Money, copy),
    col!(usage, T::Money, copy),
    col!(upstream_inference_cost, T::Money, copy),
    col!(cache_discount, T::Money, copy),
    col!(is_byok, T::Bool, copy),
    col!(tokens_prompt, T::Int, copy),
    col!(tokens_completion, T::Int, copy),
    col!(native_tokens_prompt, T::Int, copy),
    col!(native_tokens_completion, T::Int, copy),
    col!(native_tokens_completion_images, T::Int, copy),
    col!(native_tokens_reasoning, T::Int, copy),
    col!(native_tokens_cached, T::Int, copy),
    col!(num_media_prompt, T::Int, copy),
    col!(num_input_audio_prompt, T::Int, copy),
    col!(num_media_completion, T::Int, copy),
    col!(num_search_results, T::Int, copy),
    col!(num_fetches, T::Int, copy),
    col!(web_search_engine, T::Text),
    col!(latency_ms, T::Float, copy),
    col!(generation_time_ms, T::Float, copy),
    col!(moderation_latency_ms, T::Float, copy),
    col!(streamed, T::Bool, copy),
    col!(cancelled, T::Bool, copy),
    col!(finish_reason, T::Text),
    col!(native_finish_reason, T::Text),
    col!(service_tier, T::Text),
    col!(response_cache_source_id, T::Text),
    col!(provider_responses, T::Json),
    col!(extra, T::Json),
    Column {
        name: "run_id",
        ty: T::Text,
        nullable: false,
        get: |g| Value::Text(&g.run_id),
    },
    Column {
        name: "exported_at",
        ty: T::Timestamp,
        nullable: false,
        get: |g| Value::Timestamp(g.exported_at),
    },
];

impl Row for Generation {
    const COLUMNS: &'static [Column<Self>] = COLUMNS;
    const TABLE: &'static str = "generations";
    const PRUNING_COLUMNS: &'static [&'static str] = &[
        "created_at",
        "model",
        "provider_name",
        "app_id",
        "exported_at",
    ];
    const UNIQUE_COLUMNS: &'static [&'static str] = &[
        "id",
        "created_at",
        "upstream_id",
        "request_id",
        "provider_responses",
        "extra",
        "exported_at",
    ];

    /// The UTC day of `created_at`; a record without one is filed under the day
    /// it was exported, so it is never dropped.
    fn partition_micros(&self) -> i64 {
        self.created_at.unwrap_or(self.exported_at)
    }

    fn created_micros(&self) -> Option<i64> {
        self.created_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::column_names;

    #[test]
    fn columns_follow_the_contract_order() {
        let expected = "id, created_at, model, provider_name, api_type, router, upstream_id, origin, app_id, \
            external_user, session_id, request_id, workspace_id, preset_id, data_region, total_cost, usage, \
            upstream_inference_cost, cache_discount, is_byok, tokens_prompt, tokens_completion, \
            native_tokens_prompt, native_tokens_completion, native_tokens_completion_images, \
            native_tokens_reasoning, native_tokens_cached, num_media_prompt, num_input_audio_prompt, \
            num_media_completion, num_search_results, num_fetches, web_search_engine, latency_ms, \
            generation_time_ms, moderation_latency_ms, streamed, cancelled, finish_reason, \
            native_finish_reason, service_tier, response_cache_source_id, provider_responses, extra, run_id, \
            exported_at";
        assert_eq!(column_names::<Generation>().join(", "), expected);
    }
}
