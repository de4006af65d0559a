//! `GET /api/v1/activity`: the account's daily totals by date × model ×
//! endpoint, as OpenRouter serves them to a management key, computed from the
//! same deterministic records the generation endpoint serves.
//!
//! The account's generations are the IDs listed in `activity_ids` (what the
//! application made, whether or not anyone fetched them) and every ID the
//! metadata endpoint has answered. Only the last 30 completed UTC days are
//! reported; money is summed as doubles and written as JSON numbers, as the
//! real API does.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Days, NaiveDate, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::record::{SimGeneration, generation};
use super::response::{self, SimResponse};

/// The organisation member every simulated generation belongs to.
pub const SIM_USER_ID: &str = "user_sim";

/// Days reported: the 30 before today (UTC).
const WINDOW_DAYS: u64 = 30;

/// Who asked, by the key in `Authorization: Bearer …`.
pub(crate) enum Caller {
    Management,
    /// A valid key, but not a management key.
    Ordinary,
    Unknown,
}

/// One group's sums.
#[derive(Default)]
struct Group {
    provider_name: Option<String>,
    usage: f64,
    byok_usage_inference: f64,
    requests: u64,
    prompt_tokens: i64,
    completion_tokens: i64,
    reasoning_tokens: i64,
}

/// The answer to an activity request with `query`, for the account made of
/// `ids`; `api_key` is the key the generations were made with.
pub(crate) fn answer(
    caller: Caller,
    query: Option<&str>,
    ids: &BTreeSet<String>,
    api_key: Option<&str>,
) -> SimResponse {
    match caller {
        Caller::Management => {}
        Caller::Ordinary => {
            return response::error(403, "Only management keys can fetch activity");
        }
        Caller::Unknown => return response::error(401, response::message(401)),
    }
    let params = params(query.unwrap_or(""));
    let today = Utc::now().date_naive();
    let first = today
        .checked_sub_days(Days::new(WINDOW_DAYS))
        .unwrap_or(today);
    let date = match params.get("date") {
        Some(text) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => return response::error(400, "date must be YYYY-MM-DD"),
        },
        None => None,
    };
    let key_hash = api_key.map(|k| hex::encode(Sha256::digest(k.as_bytes())));
    let other_key = params
        .get("api_key_hash")
        .is_some_and(|h| key_hash.as_deref() != Some(h.as_str()));
    let other_user = params.get("user_id").is_some_and(|u| u != SIM_USER_ID);
    let mut groups: BTreeMap<(NaiveDate, String, String), Group> = BTreeMap::new();
    if !(other_key || other_user) {
        for id in ids {
            let g = generation(id);
            let Some(day) = day_of(&g) else { continue };
            if day < first || day >= today || date.is_some_and(|d| d != day) {
                continue;
            }
            add(&mut groups, day, &g);
        }
    }
    let data: Vec<serde_json::Value> = groups.into_iter().map(item).collect();
    let body = json!({ "data": data }).to_string();
    response::json(200, body.into())
}

fn params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The UTC day of a record's `created_at` (always written in UTC).
fn day_of(g: &SimGeneration) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(g.created_at.get(..10)?, "%Y-%m-%d").ok()
}

fn number(text: &Option<String>) -> f64 {
    text.as_deref()
        .and_then(|t| t.parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn add(
    groups: &mut BTreeMap<(NaiveDate, String, String), Group>,
    day: NaiveDate,
    g: &SimGeneration,
) {
    let model = g.model.clone().unwrap_or_default();
    let endpoint = endpoint_id(&model, g.provider_name.as_deref());
    let group = groups.entry((day, model, endpoint)).or_default();
    group.provider_name = g.provider_name.clone();
    group.usage += number(&g.total_cost);
    if g.is_byok == Some(true) {
        group.byok_usage_inference += number(&g.upstream_inference_cost);
    }
    group.requests += 1;
    let tokens = |native: Option<i64>, normal: Option<i64>| native.or(normal).unwrap_or(0);
    group.prompt_tokens += tokens(g.native_tokens_prompt, g.tokens_prompt);
    group.completion_tokens += tokens(g.native_tokens_completion, g.tokens_completion);
    group.reasoning_tokens += g.native_tokens_reasoning.unwrap_or(0);
}

/// A stable ID for a model served by a provider.
fn endpoint_id(model: &str, provider: Option<&str>) -> String {
    let digest = Sha256::digest(format!("{model}|{}", provider.unwrap_or("")).as_bytes());
    let hex = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn item(((day, model, endpoint), g): ((NaiveDate, String, String), Group)) -> serde_json::Value {
    json!({
        "date": day.format("%Y-%m-%d").to_string(),
        "model": model,
        "model_permaslug": model,
        "endpoint_id": endpoint,
        "provider_name": g.provider_name,
        "usage": g.usage,
        "byok_usage_inference": g.byok_usage_inference,
        "requests": g.requests,
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "reasoning_tokens": g.reasoning_tokens,
    })
}
