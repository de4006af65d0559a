//! `genledger report DIR`: cost and tokens by model and by day, read back from
//! an export directory's data files, with exact money and an optional SVG chart.
//!
//! [`read`] streams the Parquet and CSV files into a [`Report`] (memory grows
//! with models × days, not with rows); [`render`] prints it; [`svg`] draws it.

mod read;
pub mod render;
mod rows;
pub mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDate;
use clap::ValueEnum;

use crate::money::Money;

pub use read::{ExportFiles, each_line, read_export};

/// How the report is printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for reading.
    Table,
    /// One row per model, day and the total, with a `group` column.
    Csv,
    /// One JSON document; money as exact decimal strings.
    Json,
}

/// Sums over a group of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sums {
    pub rows: u64,
    /// Exact: summed as integers of 10⁻¹⁸ USD.
    pub total_cost: Money,
    pub tokens_prompt: i64,
    pub tokens_completion: i64,
}

impl Sums {
    pub fn add(&mut self, other: &Sums) -> anyhow::Result<()> {
        self.rows += other.rows;
        self.total_cost = self
            .total_cost
            .checked_add(other.total_cost)
            .context("total_cost sum overflowed 38 digits")?;
        self.tokens_prompt = (self.tokens_prompt)
            .checked_add(other.tokens_prompt)
            .context("tokens_prompt sum overflowed")?;
        self.tokens_completion = (self.tokens_completion)
            .checked_add(other.tokens_completion)
            .context("tokens_completion sum overflowed")?;
        Ok(())
    }
}

/// One data row, as far as the readers of an export need it.
pub struct Line<'a> {
    /// `(unknown)` when null or empty.
    pub model: &'a str,
    /// UTC day of `created_at`, else of `exported_at` (the partition rule).
    pub day: NaiveDate,
    pub sums: Sums,
    pub provider: Option<&'a str>,
    pub app_id: Option<i64>,
    pub external_user: Option<&'a str>,
    pub workspace_id: Option<&'a str>,
    pub api_type: Option<&'a str>,
    /// `upstream_inference_cost` of a bring-your-own-key row (zero otherwise):
    /// what the provider billed the user's own key.
    pub byok_upstream: Money,
    /// Prompt, completion and reasoning tokens: the provider's own counts,
    /// else OpenRouter's normalised ones (reasoning: native only).
    pub native_tokens: [i64; 3],
}

/// A column the report can group by (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Dim {
    Model,
    Provider,
    AppId,
    ExternalUser,
    WorkspaceId,
    ApiType,
    Day,
}

impl Dim {
    pub fn name(self) -> &'static str {
        match self {
            Dim::Model => "model",
            Dim::Provider => "provider",
            Dim::AppId => "app_id",
            Dim::ExternalUser => "external_user",
            Dim::WorkspaceId => "workspace_id",
            Dim::ApiType => "api_type",
            Dim::Day => "day",
        }
    }

    /// The row's value; null is `(none)`.
    fn value(self, line: &Line<'_>) -> String {
        let text = |v: Option<&str>| v.unwrap_or(NONE).to_owned();
        match self {
            Dim::Model => line.model.to_owned(),
            Dim::Provider => text(line.provider),
            Dim::AppId => line
                .app_id
                .map_or_else(|| NONE.to_owned(), |a| a.to_string()),
            Dim::ExternalUser => text(line.external_user),
            Dim::WorkspaceId => text(line.workspace_id),
            Dim::ApiType => text(line.api_type),
            Dim::Day => line.day.to_string(),
        }
    }
}

/// A null grouping value in a `--by` report.
pub const NONE: &str = "(none)";

/// The label of rows without a model.
pub const UNKNOWN_MODEL: &str = "(unknown)";

/// Everything read from an export directory. The groupings are summed as
/// the rows arrive, so an overflow is found while reading, not while printing.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The directory read.
    pub dir: PathBuf,
    /// Data files read.
    pub files: usize,
    /// Parquet files whose money columns were float64 rather than decimal.
    pub float_files: usize,
    /// Sums per day, per model.
    pub daily: BTreeMap<NaiveDate, BTreeMap<String, Sums>>,
    /// The `--by` columns, and the sums per combination of their values.
    pub by: Vec<Dim>,
    groups: BTreeMap<Vec<String>, Sums>,
    models: BTreeMap<String, Sums>,
    days: BTreeMap<NaiveDate, Sums>,
    total: Sums,
}

impl Report {
    fn new(dir: &Path, by: &[Dim]) -> Report {
        Report {
            dir: dir.to_owned(),
            by: by.to_vec(),
            ..Report::default()
        }
    }

    pub(crate) fn add(&mut self, line: Line<'_>) -> anyhow::Result<()> {
        if !self.by.is_empty() {
            let key: Vec<String> = self.by.iter().map(|d| d.value(&line)).collect();
            self.groups.entry(key).or_default().add(&line.sums)?;
        }
        let day = self.daily.entry(line.day).or_default();
        entry(day, line.model).add(&line.sums)?;
        entry(&mut self.models, line.model).add(&line.sums)?;
        self.days.entry(line.day).or_default().add(&line.sums)?;
        self.total.add(&line.sums)
    }

    /// Per model, the most expensive first.
    pub fn by_model(&self) -> Vec<(&str, Sums)> {
        let mut models: Vec<(&str, Sums)> =
            self.models.iter().map(|(m, s)| (m.as_str(), *s)).collect();
        models.sort_by(|a, b| b.1.total_cost.cmp(&a.1.total_cost).then(a.0.cmp(b.0)));
        models
    }

    /// Per UTC day, in order.
    pub fn by_day(&self) -> Vec<(NaiveDate, Sums)> {
        self.days.iter().map(|(d, s)| (*d, *s)).collect()
    }

    /// Per combination of the `--by` values, the most expensive first.
    pub fn by_group(&self) -> Vec<(&[String], Sums)> {
        let mut groups: Vec<(&[String], Sums)> = self
            .groups
            .iter()
            .map(|(k, s)| (k.as_slice(), *s))
            .collect();
        groups.sort_by(|a, b| b.1.total_cost.cmp(&a.1.total_cost).then(a.0.cmp(b.0)));
        groups
    }

    pub fn total(&self) -> Sums {
        self.total
    }
}

/// The sums for `model`, allocating its name only the first time.
fn entry<'m>(map: &'m mut BTreeMap<String, Sums>, model: &str) -> &'m mut Sums {
    if !map.contains_key(model) {
        map.insert(model.to_owned(), Sums::default());
    }
    // Present: inserted just above when missing.
    map.get_mut(model).expect("inserted above")
}
