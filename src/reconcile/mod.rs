//! `genledger reconcile`: the export held against OpenRouter's own daily
//! totals (the Activity API), per day × model × provider, so that a
//! generation whose ID never reached genledger shows up as missing.
//!
//! [`compare`] is pure: the API's items and the export's rows in, one
//! [`Row`] per group out, each marked with what differs. Requests, rows and
//! tokens are integers and must be equal. Money must agree within
//! [`Tolerance`]: the API sums each day's costs in binary floating point, so
//! its `usage` carries that sum's rounding error, while the export's
//! `total_cost` is summed exactly.

pub mod render;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use chrono::NaiveDate;

use crate::client::{ActivityItem, ActivityQuery, fetch_activity};
use crate::config::{ApiKey, ApiSettings};
use crate::money::Money;
use crate::report::{Line, NONE};

/// The label of a group whose provider is unknown on either side.
pub const NO_PROVIDER: &str = NONE;

/// How far apart the API's `usage` and the export's `total_cost` may be.
///
/// The API's amount is a double summed over the day's requests: each of `n`
/// additions may be off by half a unit in the last place, so the error stays
/// below `n × 2⁻⁵³ × total`, about 1.1 × 10⁻¹⁰ of the total for a million
/// requests. One part in a billion of the amount covers that with room to
/// spare; one micro-dollar more covers an API that rounds to six places. A
/// missing generation cheaper than that still shows: it is a missing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tolerance {
    pub absolute: Money,
    /// Parts per billion of the API's amount.
    pub relative_ppb: i128,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            absolute: Money::from_units(1_000_000_000_000).unwrap_or(Money::ZERO),
            relative_ppb: 1,
        }
    }
}

impl Tolerance {
    fn agrees(&self, api: Money, exported: Money) -> bool {
        let gap = (api.units() - exported.units()).abs();
        gap <= self.absolute.units() + api.units().abs() / 1_000_000_000 * self.relative_ppb
    }
}

/// One side's sums for a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Side {
    /// The API's `requests`, or the export's rows.
    pub requests: u64,
    /// The API's `usage`, or the sum of `total_cost`.
    pub cost: Money,
    /// The API's `byok_usage_inference`, or the sum of BYOK rows'
    /// `upstream_inference_cost`.
    pub byok: Money,
    /// Prompt, completion and reasoning tokens.
    pub tokens: [i64; 3],
}

/// What differs in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Agrees,
    /// The API counted requests the export does not have.
    Missing,
    /// The export has rows the API did not count.
    Extra,
    /// Same counts, but money apart beyond the tolerance.
    CostDiffers,
    /// Same counts and money, different token counts.
    TokensDiffer,
}

/// One day × model × provider, both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub date: NaiveDate,
    pub model: String,
    pub provider: String,
    pub api: Side,
    pub exported: Side,
    pub status: Status,
}

impl Row {
    /// API requests the export lacks (negative: rows it has beyond them).
    pub fn missing_requests(&self) -> i64 {
        self.api.requests as i64 - self.exported.requests as i64
    }

    /// The API's `usage` less the export's `total_cost`.
    pub fn missing_cost(&self) -> Money {
        Money::from_units(self.api.cost.units() - self.exported.cost.units()).unwrap_or(Money::ZERO)
    }
}

/// Groups keyed by day, model and provider.
pub type Groups = BTreeMap<(NaiveDate, String, String), Side>;

/// The days compared, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Window {
    /// The last 30 completed UTC days before `today`.
    pub fn last_30_days(today: NaiveDate) -> Window {
        Window {
            from: today - chrono::Days::new(30),
            to: today - chrono::Days::new(1),
        }
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.from <= day && day <= self.to
    }
}

/// Adds an Activity API item to its group (endpoints of one provider merge).
pub fn add_item(groups: &mut Groups, window: Window, item: &ActivityItem) -> anyhow::Result<()> {
    if !window.contains(item.date) {
        return Ok(());
    }
    let provider = item.provider_name.clone().filter(|p| !p.is_empty());
    let key = (
        item.date,
        item.model.clone(),
        provider.unwrap_or_else(|| NO_PROVIDER.into()),
    );
    let side = groups.entry(key).or_default();
    side.requests += item.requests;
    side.cost = add(side.cost, item.usage)?;
    side.byok = add(side.byok, item.byok_usage_inference)?;
    let tokens = [
        item.prompt_tokens,
        item.completion_tokens,
        item.reasoning_tokens,
    ];
    for (sum, n) in side.tokens.iter_mut().zip(tokens) {
        *sum = sum.saturating_add(n);
    }
    Ok(())
}

/// Adds an exported row to its group.
pub fn add_line(groups: &mut Groups, window: Window, line: &Line<'_>) -> anyhow::Result<()> {
    if !window.contains(line.day) {
        return Ok(());
    }
    let model = if line.model == crate::report::UNKNOWN_MODEL {
        ""
    } else {
        line.model
    };
    let provider = line.provider.unwrap_or(NO_PROVIDER);
    let key = (line.day, model.to_owned(), provider.to_owned());
    let side = groups.entry(key).or_default();
    side.requests += 1;
    side.cost = add(side.cost, line.sums.total_cost)?;
    side.byok = add(side.byok, line.byok_upstream)?;
    for (sum, n) in side.tokens.iter_mut().zip(line.native_tokens) {
        *sum = sum.saturating_add(n);
    }
    Ok(())
}

fn add(a: Money, b: Money) -> anyhow::Result<Money> {
    a.checked_add(b)
        .ok_or_else(|| anyhow::anyhow!("a sum of money overflowed 38 digits"))
}

/// Every group on either side, side by side, in day, model, provider order.
pub fn compare(api: &Groups, exported: &Groups, tolerance: Tolerance) -> Vec<Row> {
    let mut keys: Vec<&(NaiveDate, String, String)> = api.keys().chain(exported.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let a = api.get(key).copied().unwrap_or_default();
            let e = exported.get(key).copied().unwrap_or_default();
            let status = if a.requests > e.requests {
                Status::Missing
            } else if a.requests < e.requests {
                Status::Extra
            } else if !tolerance.agrees(a.cost, e.cost) || !tolerance.agrees(a.byok, e.byok) {
                Status::CostDiffers
            } else if a.tokens != e.tokens {
                Status::TokensDiffer
            } else {
                Status::Agrees
            };
            Row {
                date: key.0,
                model: key.1.clone(),
                provider: key.2.clone(),
                api: a,
                exported: e,
                status,
            }
        })
        .collect()
}

/// Fetches the Activity API for `window` and compares it with the export in
/// `dir`, group by group.
pub async fn reconcile(
    api: &ApiSettings,
    key: &ApiKey,
    dir: &Path,
    window: Window,
    api_key_hash: Option<String>,
    tolerance: Tolerance,
) -> anyhow::Result<Vec<Row>> {
    let query = ActivityQuery {
        date: (window.from == window.to).then_some(window.from),
        api_key_hash,
    };
    let items = fetch_activity(api, key, &query)
        .await
        .context("failed to fetch OpenRouter's activity")?;
    let mut from_api = Groups::new();
    for item in &items {
        add_item(&mut from_api, window, item)?;
    }
    let mut exported = Groups::new();
    crate::report::each_line(dir, |line| add_line(&mut exported, window, &line))?;
    Ok(compare(&from_api, &exported, tolerance))
}

/// Totals over the rows, for the summary and the daemon's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub groups: u64,
    pub differing_groups: u64,
    pub api_requests: u64,
    pub exported_rows: u64,
    /// Requests the API counted that the export lacks, summed over groups.
    pub missing_requests: u64,
    /// Rows the export has that the API did not count, summed over groups.
    pub extra_rows: u64,
    /// The API's usage beyond the export's cost, summed over groups short of rows.
    pub missing_cost: Money,
}

pub fn summarize(rows: &[Row]) -> Summary {
    let mut s = Summary::default();
    for row in rows {
        s.groups += 1;
        s.differing_groups += u64::from(row.status != Status::Agrees);
        s.api_requests += row.api.requests;
        s.exported_rows += row.exported.requests;
        let missing = row.missing_requests();
        s.missing_requests += missing.max(0) as u64;
        s.extra_rows += (-missing).max(0) as u64;
        if missing > 0 {
            s.missing_cost = s
                .missing_cost
                .checked_add(row.missing_cost())
                .unwrap_or(s.missing_cost);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    #[test]
    fn the_tolerance_absorbs_float_rounding_but_not_a_cent() {
        let t = Tolerance::default();
        assert!(t.agrees(usd("1234.5678"), usd("1234.5678000001")));
        assert!(t.agrees(usd("0.30000000000000004"), usd("0.3")));
        assert!(!t.agrees(usd("10"), usd("9.99")));
        assert!(!t.agrees(usd("0.00001"), usd("0")));
    }

    #[test]
    fn groups_are_marked_by_what_differs() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let key = |m: &str| (day, m.to_owned(), "P".to_owned());
        let side = |requests, cost: &str| Side {
            requests,
            cost: usd(cost),
            ..Side::default()
        };
        let api: Groups = [
            (key("a"), side(3, "0.3")),
            (key("b"), side(2, "1")),
            (key("c"), side(1, "1")),
        ]
        .into_iter()
        .collect();
        let exported: Groups = [
            (key("a"), side(3, "0.30000000000000004")),
            (key("b"), side(1, "0.4")),
            (key("d"), side(1, "2")),
        ]
        .into_iter()
        .collect();
        let rows = compare(&api, &exported, Tolerance::default());
        let status: Vec<(&str, Status)> =
            rows.iter().map(|r| (r.model.as_str(), r.status)).collect();
        assert_eq!(
            status,
            [
                ("a", Status::Agrees),
                ("b", Status::Missing),
                ("c", Status::Missing),
                ("d", Status::Extra)
            ]
        );
        let s = summarize(&rows);
        assert_eq!((s.missing_requests, s.extra_rows), (2, 1));
        assert_eq!(s.missing_cost, usd("1.6"));
    }
}
