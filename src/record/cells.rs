//! A generation's record rebuilt from its row's cells, as the sink holds rows
//! it set aside (spilled) before writing them: a table derived from
//! `generations` (`focus`) is derived from these cells, so it sees exactly
//! what the generation's file holds.

use super::Generation;
use crate::money::Money;
use crate::schema::{Row, Value};

fn text(v: Value<'_>) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.to_owned()),
        _ => None,
    }
}

fn int(v: Value<'_>) -> Option<i64> {
    match v {
        Value::Int(n) => Some(n),
        _ => None,
    }
}

fn float(v: Value<'_>) -> Option<f64> {
    match v {
        Value::Float(n) => Some(n),
        _ => None,
    }
}

fn flag(v: Value<'_>) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(b),
        _ => None,
    }
}

fn money(v: Value<'_>) -> Option<Money> {
    match v {
        Value::Money(m) => Some(m),
        _ => None,
    }
}

fn instant(v: Value<'_>) -> Option<i64> {
    match v {
        Value::Timestamp(t) => Some(t),
        _ => None,
    }
}

impl Generation {
    /// The record whose row's cells, in column order, are `cells`.
    // Long because it is one assignment per column, matched by name so that
    // the column order cannot put a value in the wrong field.
    pub fn from_cells(cells: &[Value<'_>]) -> Generation {
        let mut g = Generation::default();
        for (column, &v) in Generation::COLUMNS.iter().zip(cells) {
            match column.name {
                "id" => g.id = text(v).unwrap_or_default(),
                "created_at" => g.created_at = instant(v),
                "model" => g.model = text(v),
                "provider_name" => g.provider_name = text(v),
                "api_type" => g.api_type = text(v),
                "router" => g.router = text(v),
                "upstream_id" => g.upstream_id = text(v),
                "origin" => g.origin = text(v),
                "app_id" => g.app_id = int(v),
                "external_user" => g.external_user = text(v),
                "session_id" => g.session_id = text(v),
                "request_id" => g.request_id = text(v),
                "workspace_id" => g.workspace_id = text(v),
                "preset_id" => g.preset_id = text(v),
                "data_region" => g.data_region = text(v),
                "total_cost" => g.total_cost = money(v),
                "usage" => g.usage = money(v),
                "upstream_inference_cost" => g.upstream_inference_cost = money(v),
                "cache_discount" => g.cache_discount = money(v),
                "is_byok" => g.is_byok = flag(v),
                "tokens_prompt" => g.tokens_prompt = int(v),
                "tokens_completion" => g.tokens_completion = int(v),
                "native_tokens_prompt" => g.native_tokens_prompt = int(v),
                "native_tokens_completion" => g.native_tokens_completion = int(v),
                "native_tokens_completion_images" => g.native_tokens_completion_images = int(v),
                "native_tokens_reasoning" => g.native_tokens_reasoning = int(v),
                "native_tokens_cached" => g.native_tokens_cached = int(v),
                "num_media_prompt" => g.num_media_prompt = int(v),
                "num_input_audio_prompt" => g.num_input_audio_prompt = int(v),
                "num_media_completion" => g.num_media_completion = int(v),
                "num_search_results" => g.num_search_results = int(v),
                "num_fetches" => g.num_fetches = int(v),
                "web_search_engine" => g.web_search_engine = text(v),
                "latency_ms" => g.latency_ms = float(v),
                "generation_time_ms" => g.generation_time_ms = float(v),
                "moderation_latency_ms" => g.moderation_latency_ms = float(v),
                "streamed" => g.streamed = flag(v),
                "cancelled" => g.cancelled = flag(v),
                "finish_reason" => g.finish_reason = text(v),
                "native_finish_reason" => g.native_finish_reason = text(v),
                "service_tier" => g.service_tier = text(v),
                "response_cache_source_id" => g.response_cache_source_id = text(v),
                "provider_responses" => g.provider_responses = text(v),
                "extra" => g.extra = text(v),
                "run_id" => g.run_id = text(v).unwrap_or_default(),
                "exported_at" => g.exported_at = instant(v).unwrap_or_default(),
                _ => {}
            }
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_its_own_cells() {
        let money = |s| Some(Money::parse(s).unwrap());
        let text = |s: &str| Some(s.to_owned());
        // Every field set, each to a value no other field has.
        let g = Generation {
            id: "gen-1".into(),
            created_at: Some(1_700_000_000_123_456),
            model: text("openai/gpt-4o"),
            provider_name: text("OpenAI"),
            api_type: text("completions"),
            router: text("router"),
            upstream_id: text("up"),
            origin: text("https://o/"),
            app_id: Some(7),
            external_user: text("eu"),
            session_id: text("sess"),
            request_id: text("req"),
            workspace_id: text("ws"),
            preset_id: text("preset"),
            data_region: text("europe"),
            total_cost: money("0.30000000000000004"),
            usage: money("3e-7"),
            upstream_inference_cost: money("0.25"),
            cache_discount: money("-0.5"),
            is_byok: Some(true),
            tokens_prompt: Some(12),
            tokens_completion: Some(13),
            native_tokens_prompt: Some(14),
            native_tokens_completion: Some(15),
            native_tokens_completion_images: Some(3),
            native_tokens_reasoning: Some(16),
            native_tokens_cached: Some(17),
            num_media_prompt: Some(18),
            num_input_audio_prompt: Some(19),
            num_media_completion: Some(20),
            num_search_results: Some(21),
            num_fetches: Some(22),
            web_search_engine: text("exa"),
            latency_ms: Some(1.5),
            generation_time_ms: Some(2.5),
            moderation_latency_ms: Some(3.5),
            streamed: Some(true),
            cancelled: Some(false),
            finish_reason: text("stop"),
            native_finish_reason: text("end_turn"),
            service_tier: text("default"),
            response_cache_source_id: text("cache"),
            provider_responses: text("[]"),
            extra: text("{\"x\":1}"),
            run_id: "r1".into(),
            exported_at: 1_700_000_001_000_000,
        };
        let cells: Vec<Value<'_>> = Generation::COLUMNS.iter().map(|c| (c.get)(&g)).collect();
        assert_eq!(Generation::from_cells(&cells), g);
    }
}
