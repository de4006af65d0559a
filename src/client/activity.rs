//! `GET /activity`: the account's daily totals by date × model × endpoint
//! over the last 30 completed UTC days, with a management key. Money arrives
//! as JSON numbers summed in floating point by the API; it is read from the
//! number's text (rounded to 18 places only if it has more), never through
//! a double of ours.

use std::time::Duration;

use chrono::NaiveDate;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::install_crypto;
use crate::config::{ApiKey, ApiSettings};
use crate::money::Money;

const TIMEOUT: Duration = Duration::from_secs(60);

/// One row of the Activity API.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityItem {
    pub date: NaiveDate,
    pub model: String,
    pub provider_name: Option<String>,
    pub endpoint_id: Option<String>,
    /// OpenRouter credits used (what `total_cost` sums to).
    pub usage: Money,
    /// What providers billed the users' own keys (BYOK).
    pub byok_usage_inference: Money,
    pub requests: u64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
}

/// What to ask for.
#[derive(Debug, Clone, Default)]
pub struct ActivityQuery {
    /// One day only.
    pub date: Option<NaiveDate>,
    /// Only the generations made with the key of this SHA-256 (hex).
    pub api_key_hash: Option<String>,
}

/// Why the activity could not be had. None of these carries the key.
#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("failed to set up the HTTP client")]
    Build(#[source] reqwest::Error),
    #[error("the management key is not a valid header value")]
    BadKey,
    #[error("`{url}` answered {status}: {hint}: {body}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
        body: String,
    },
    #[error("failed to reach `{url}`")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("`{url}` answered 200 with a body that is not the activity list: {problem}")]
    Body { url: String, problem: String },
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<RawItem>,
}

#[derive(Deserialize)]
struct RawItem {
    date: String,
    model: Option<String>,
    provider_name: Option<String>,
    endpoint_id: Option<String>,
    usage: Option<Box<RawValue>>,
    byok_usage_inference: Option<Box<RawValue>>,
    requests: Option<u64>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    reasoning_tokens: Option<i64>,
}

/// Fetches the activity `query` asks for from `{base_url}/activity`.
pub async fn fetch_activity(
    api: &ApiSettings,
    key: &ApiKey,
    query: &ActivityQuery,
) -> Result<Vec<ActivityItem>, ActivityError> {
    install_crypto();
    let mut headers = HeaderMap::new();
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        .map_err(|_| ActivityError::BadKey)?;
    auth.set_sensitive(true);
    headers.insert(header::AUTHORIZATION, auth);
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let http = reqwest::Client::builder()
        .user_agent(concat!("genledger/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .timeout(TIMEOUT)
        .build()
        .map_err(ActivityError::Build)?;
    let mut url = api.base_url.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.push("activity");
    }
    {
        let mut pairs = url.query_pairs_mut();
        if let Some(date) = query.date {
            pairs.append_pair("date", &date.format("%Y-%m-%d").to_string());
        }
        if let Some(hash) = &query.api_key_hash {
            pairs.append_pair("api_key_hash", hash);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let shown = url.to_string();
    let request_error = |source| ActivityError::Request {
        url: shown.clone(),
        source,
    };
    let answer = http.get(url).send().await.map_err(request_error)?;
    let status = answer.status().as_u16();
    let body = answer.text().await.map_err(request_error)?;
    if status != 200 {
        return Err(ActivityError::Status {
            url: shown,
            status,
            hint: hint(status),
            body: body.chars().take(512).collect(),
        });
    }
    parse(&body).map_err(|problem| ActivityError::Body {
        url: shown,
        problem,
    })
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => "the management key is missing, wrong or disabled",
        403 => "the key is not a management key (create one under Settings > Management keys)",
        429 => "rate limited; try again later",
        _ => "unexpected status",
    }
}

/// The items of an answer's body.
pub fn parse(body: &str) -> Result<Vec<ActivityItem>, String> {
    let answer: Answer = serde_json::from_str(body).map_err(|e| e.to_string())?;
    answer.data.into_iter().map(item).collect()
}

fn item(raw: RawItem) -> Result<ActivityItem, String> {
    let date = NaiveDate::parse_from_str(raw.date.get(..10).unwrap_or(&raw.date), "%Y-%m-%d")
        .map_err(|_| format!("`{}` is not a date", raw.date))?;
    Ok(ActivityItem {
        date,
        model: raw.model.unwrap_or_default(),
        provider_name: raw.provider_name,
        endpoint_id: raw.endpoint_id,
        usage: amount(raw.usage.as_deref())?,
        byok_usage_inference: amount(raw.byok_usage_inference.as_deref())?,
        requests: raw.requests.unwrap_or(0),
        prompt_tokens: raw.prompt_tokens.unwrap_or(0),
        completion_tokens: raw.completion_tokens.unwrap_or(0),
        reasoning_tokens: raw.reasoning_tokens.unwrap_or(0),
    })
}

/// A JSON number's exact value; one with more than 18 decimals (a double's
/// noise far below a billionth of a cent) rounded to 18.
fn amount(raw: Option<&RawValue>) -> Result<Money, String> {
    let Some(text) = raw.map(RawValue::get).filter(|t| *t != "null") else {
        return Ok(Money::ZERO);
    };
    Money::parse(text).or_else(|_| {
        let value: f64 = text
            .parse()
            .map_err(|_| format!("`{text}` is not a number"))?;
        Money::parse(&format!("{value:.18}")).map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_money_from_the_numbers_text() {
        let body = r#"{"data":[{"date":"2026-11-20","model":"openai/gpt-4o","provider_name":"OpenAI",
            "endpoint_id":"e1","usage":0.30000000000000004,"byok_usage_inference":3e-7,"requests":3,
            "prompt_tokens":10,"completion_tokens":5,"reasoning_tokens":0},
            {"date":"2026-11-21","model":"x/y","usage":1.2345678901234567e-10,"requests":1}]}"#;
        let items = parse(body).unwrap();
        assert_eq!(items[0].usage.to_string(), "0.30000000000000004");
        assert_eq!(items[0].byok_usage_inference.to_string(), "0.0000003");
        assert_eq!(items[0].requests, 3);
        assert_eq!(items[1].usage.to_string(), "0.000000000123456789");
        assert_eq!(items[1].provider_name, None);
        assert!(parse(r#"{"data":[{"date":"soon","usage":1}]}"#).is_err());
    }
}
