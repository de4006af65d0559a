//! The `focus` table: one row per generation in the FinOps Foundation's FOCUS
//! schema (version 1.2, with 1.3's `ServiceProviderName` and
//! `HostProviderName`), derived from the generation's record alone: no
//! aggregation, no proportional splitting, money copied exactly.
//!
//! The mapping and the reason for each non-obvious choice are in the README
//! ("FOCUS"). In short: OpenRouter is the provider, the service provider and
//! the invoice issuer; the inference provider that ran the model is the host;
//! the model's author is the publisher. `BilledCost` is `total_cost`, what
//! OpenRouter charged (for a bring-your-own-key request only its fee: the
//! upstream provider bills the rest to the user's own key, and that charge
//! belongs to that provider's dataset, so it is kept in
//! `x_UpstreamInferenceCost` and never added).

use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeZone, Utc};

mod columns;

use super::Generation;
use crate::money::Money;
use crate::schema::{Column, Row};

/// Who is billed: from the `[focus]` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocusAccount {
    /// `BillingAccountId`: the OpenRouter account (organisation or user).
    pub billing_account_id: String,
    /// `BillingAccountName`, when configured.
    pub billing_account_name: Option<String>,
}

/// OpenRouter: the provider, the service provider and the invoice issuer.
pub const OPENROUTER: &str = "OpenRouter";

const MICROS_PER_SECOND: i64 = 1_000_000;

/// One generation as a FOCUS cost and usage row.
#[derive(Debug, Clone)]
pub struct Focus {
    pub(super) account: Arc<FocusAccount>,
    pub(super) g: Generation,
    pub(super) billed: Money,
    pub(super) list: Money,
    pub(super) billing_period: (i64, i64),
    pub(super) charge_period: (i64, i64),
    pub(super) description: String,
    /// `ConsumedQuantity` and `PricingQuantity`, with their unit.
    pub(super) quantity: (Money, &'static str),
    pub(super) publisher: String,
    pub(super) host: String,
    pub(super) region: Option<(String, String)>,
    pub(super) sku_price_id: Option<String>,
    pub(super) tags: Option<String>,
}

impl Focus {
    /// The FOCUS row of generation `g`, billed to `account`.
    pub fn new(g: Generation, account: Arc<FocusAccount>) -> Focus {
        let billed = g.total_cost.unwrap_or(Money::ZERO);
        let at = g.created_at.unwrap_or(g.exported_at);
        let host = g.provider_name.clone().unwrap_or_else(|| OPENROUTER.into());
        Focus {
            billed,
            list: list_cost(&g, billed),
            billing_period: month_of(at),
            charge_period: charge_period(&g, at),
            description: describe(&g),
            quantity: quantity(&g),
            publisher: publisher(&g),
            sku_price_id: g.model.as_ref().map(|m| format!("{m}@{host}")),
            host,
            region: g.data_region.as_deref().and_then(region),
            tags: tags(&g),
            account,
            g,
        }
    }

    /// The generation the row was derived from.
    pub fn generation(&self) -> &Generation {
        &self.g
    }
}

/// `ListCost`: what the generation would have cost at OpenRouter's list
/// prices. A positive `cache_discount` is the amount prompt caching took off
/// them, so it is added back; a negative one (a cache write, priced above
/// the plain input rate) is already in `total_cost` at its list price. A
/// bring-your-own-key request's discount concerns the upstream charge, not
/// OpenRouter's fee, so there list equals billed.
fn list_cost(g: &Generation, billed: Money) -> Money {
    match (g.is_byok, g.cache_discount) {
        (Some(true), _) | (_, None) => billed,
        (_, Some(d)) if d > Money::ZERO => billed.checked_add(d).unwrap_or(billed),
        _ => billed,
    }
}

/// The UTC calendar month holding `micros`: `[start, end)`.
fn month_of(micros: i64) -> (i64, i64) {
    let Some(t) = DateTime::from_timestamp_micros(micros) else {
        return (micros, micros);
    };
    let start = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single();
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let end = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single();
    match (start, end) {
        (Some(s), Some(e)) => (s.timestamp_micros(), e.timestamp_micros()),
        _ => (micros, micros),
    }
}

/// From the second the generation started to the second after it ended
/// (its generation time, else its latency), at least one second: whole
/// seconds, as FOCUS date/times are written (`YYYY-MM-DDTHH:mm:ssZ`).
fn charge_period(g: &Generation, at: i64) -> (i64, i64) {
    let start = at.div_euclid(MICROS_PER_SECOND) * MICROS_PER_SECOND;
    let ms = g.generation_time_ms.or(g.latency_ms).unwrap_or(0.0);
    let took = if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).min(86_400e6) as i64
    } else {
        0
    };
    let end = (at + took).div_euclid(MICROS_PER_SECOND) * MICROS_PER_SECOND + MICROS_PER_SECOND;
    (start, end.max(start + MICROS_PER_SECOND))
}

/// Tokens the provider counted (its native counts, else OpenRouter's
/// normalised ones): what OpenRouter's price list is in. A generation with
/// no token count (an image or a rerank call, say) is one request.
fn quantity(g: &Generation) -> (Money, &'static str) {
    let native = sum(&[g.native_tokens_prompt, g.native_tokens_completion]);
    let tokens = native.or_else(|| sum(&[g.tokens_prompt, g.tokens_completion]));
    match tokens.filter(|&t| t > 0).and_then(whole) {
        Some(q) => (q, "Tokens"),
        None => (whole(1).unwrap_or(Money::ZERO), "Requests"),
    }
}

fn sum(parts: &[Option<i64>]) -> Option<i64> {
    parts
        .iter()
        .flatten()
        .try_fold(None, |acc: Option<i64>, &n| {
            acc.unwrap_or(0).checked_add(n).map(Some)
        })
        .flatten()
}

/// A count as an exact decimal.
fn whole(n: i64) -> Option<Money> {
    Money::from_units(i128::from(n).checked_mul(10i128.pow(crate::money::SCALE))?)
}

/// The model's author, from its slug (`openai/gpt-4o` → `openai`).
fn publisher(g: &Generation) -> String {
    match g.model.as_deref().and_then(|m| m.split_once('/')) {
        Some((author, _)) if !author.trim().is_empty() => author.to_owned(),
        _ => OPENROUTER.into(),
    }
}

/// `RegionId` and `RegionName` from `data_region`; `global` is no distinct
/// region, so it has none.
fn region(data_region: &str) -> Option<(String, String)> {
    let name = match data_region {
        "" | "global" => return None,
        "us" => "United States",
        "europe" | "eu" => "Europe",
        other => other,
    };
    Some((data_region.to_owned(), name.to_owned()))
}

fn describe(g: &Generation) -> String {
    let model = g.model.as_deref().unwrap_or("unknown model");
    let kind = g.api_type.as_deref().unwrap_or("generation");
    let mut text = format!("OpenRouter {kind}: {model}");
    if let Some(p) = &g.provider_name {
        text.push_str(" via ");
        text.push_str(p);
    }
    if g.is_byok == Some(true) {
        text.push_str(" (own provider key; OpenRouter fee only)");
    }
    text
}

/// The grouping keys OpenRouter attaches to a generation, as provider-defined
/// tags under the `openrouter/` prefix; null when there are none.
fn tags(g: &Generation) -> Option<String> {
    let mut tags = serde_json::Map::new();
    let mut put = |key: &str, value: Option<serde_json::Value>| {
        if let Some(v) = value {
            tags.insert(format!("openrouter/{key}"), v);
        }
    };
    let text = |v: &Option<String>| v.clone().map(serde_json::Value::String);
    put("app_id", g.app_id.map(serde_json::Value::from));
    put("external_user", text(&g.external_user));
    put("session_id", text(&g.session_id));
    put("preset_id", text(&g.preset_id));
    put("api_type", text(&g.api_type));
    (!tags.is_empty()).then(|| serde_json::Value::Object(tags).to_string())
}

impl Row for Focus {
    const COLUMNS: &'static [Column<Self>] = columns::COLUMNS;
    const TABLE: &'static str = crate::layout::FOCUS;
    const PRUNING_COLUMNS: &'static [&'static str] = &[
        "ChargePeriodStart",
        "BillingPeriodStart",
        "SkuId",
        "HostProviderName",
        "SubAccountId",
    ];
    const UNIQUE_COLUMNS: &'static [&'static str] = &[
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "x_GenerationId",
        "x_CreatedAt",
        "x_ExportedAt",
    ];

    /// The same day as the generation's own row, so the two files pair up.
    fn partition_micros(&self) -> i64 {
        self.g.partition_micros()
    }

    fn created_micros(&self) -> Option<i64> {
        self.g.created_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Value;
    use crate::timestamp::format_timestamp;

    fn cell<'a>(row: &'a Focus, name: &str) -> Value<'a> {
        let column = columns::COLUMNS.iter().find(|c| c.name == name).unwrap();
        (column.get)(row)
    }

    fn row(g: Generation) -> Focus {
        let account = FocusAccount {
            billing_account_id: "org".into(),
            billing_account_name: None,
        };
        Focus::new(g, Arc::new(account))
    }

    fn usd(text: &str) -> Option<Money> {
        Some(Money::parse(text).unwrap())
    }

    fn money(v: Value<'_>) -> String {
        match v {
            Value::Money(m) => m.to_string(),
            other => panic!("{other:?}"),
        }
    }

    fn instant(v: Value<'_>) -> String {
        match v {
            Value::Timestamp(t) => format_timestamp(t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn caching_savings_are_added_back_to_list_cost_but_never_for_byok_or_cache_writes() {
        let g = |byok, discount| Generation {
            total_cost: usd("0.75"),
            cache_discount: usd(discount),
            is_byok: Some(byok),
            ..Generation::default()
        };
        let list = |g| money(cell(&row(g), "ListCost"));
        assert_eq!(list(g(false, "0.25")), "1");
        assert_eq!(list(g(false, "-0.1")), "0.75");
        assert_eq!(list(g(true, "0.25")), "0.75");
        let r = row(g(true, "0.25"));
        assert_eq!(money(cell(&r, "BilledCost")), "0.75");
        assert_eq!(money(cell(&r, "EffectiveCost")), "0.75");
        assert_eq!(money(cell(&r, "ContractedCost")), "0.75");
    }

    #[test]
    fn periods_are_utc_months_and_whole_seconds() {
        // 2026-12-31T23:59:59.5Z, a generation of 1.2 s.
        let at = 1_798_761_599_500_000;
        let r = row(Generation {
            created_at: Some(at),
            generation_time_ms: Some(1200.0),
            ..Generation::default()
        });
        assert_eq!(
            instant(cell(&r, "BillingPeriodStart")),
            "2026-12-01T00:00:00.000000Z"
        );
        assert_eq!(
            instant(cell(&r, "BillingPeriodEnd")),
            "2027-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            instant(cell(&r, "ChargePeriodStart")),
            "2026-12-31T23:59:59.000000Z"
        );
        assert_eq!(
            instant(cell(&r, "ChargePeriodEnd")),
            "2027-01-01T00:00:01.000000Z"
        );
    }

    #[test]
    fn providers_publisher_region_quantity_and_tags() {
        let r = row(Generation {
            model: Some("meta-llama/llama-3-70b".into()),
            provider_name: Some("Together".into()),
            data_region: Some("europe".into()),
            native_tokens_prompt: Some(100),
            native_tokens_completion: Some(20),
            app_id: Some(9),
            external_user: Some("u\"1".into()),
            ..Generation::default()
        });
        assert_eq!(cell(&r, "HostProviderName"), Value::Text("Together"));
        assert_eq!(cell(&r, "ServiceProviderName"), Value::Text("OpenRouter"));
        assert_eq!(cell(&r, "PublisherName"), Value::Text("meta-llama"));
        assert_eq!(cell(&r, "RegionName"), Value::Text("Europe"));
        assert_eq!(money(cell(&r, "PricingQuantity")), "120");
        assert_eq!(cell(&r, "PricingUnit"), Value::Text("Tokens"));
        assert_eq!(
            cell(&r, "SkuPriceId"),
            Value::Text("meta-llama/llama-3-70b@Together")
        );
        let Value::Text(tags) = cell(&r, "Tags") else {
            panic!()
        };
        let tags: serde_json::Value = serde_json::from_str(tags).unwrap();
        assert_eq!(tags["openrouter/app_id"], 9);
        assert_eq!(tags["openrouter/external_user"], "u\"1");
        let bare = row(Generation::default());
        assert_eq!(cell(&bare, "RegionId"), Value::Null);
        assert_eq!(cell(&bare, "Tags"), Value::Null);
        assert_eq!(cell(&bare, "PricingUnit"), Value::Text("Requests"));
        assert_eq!(money(cell(&bare, "PricingQuantity")), "1");
        assert_eq!(cell(&bare, "HostProviderName"), Value::Text("OpenRouter"));
    }
}
