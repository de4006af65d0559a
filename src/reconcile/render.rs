//! The comparison as text, JSON or CSV. Money is exact decimal text.

use std::fmt::Write as _;

use anyhow::Context;
use clap::ValueEnum;

use super::{Row, Status, Summary, Window};

/// How `reconcile` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReconcileFormat {
    /// The groups that differ, side by side, and a summary.
    Text,
    /// One document: the window, the summary and every group.
    Json,
    /// Every group, one per line.
    Csv,
}

/// A group as JSON and CSV print it.
#[derive(serde::Serialize)]
struct Flat<'a> {
    date: String,
    model: &'a str,
    provider: &'a str,
    status: Status,
    api_requests: u64,
    exported_rows: u64,
    missing_requests: i64,
    api_usage: String,
    exported_cost: String,
    missing_cost: String,
    api_byok_usage_inference: String,
    exported_byok_upstream_cost: String,
    api_prompt_tokens: i64,
    exported_prompt_tokens: i64,
    api_completion_tokens: i64,
    exported_completion_tokens: i64,
    api_reasoning_tokens: i64,
    exported_reasoning_tokens: i64,
}

fn flat(row: &Row) -> Flat<'_> {
    let (a, e) = (&row.api, &row.exported);
    Flat {
        date: row.date.to_string(),
        model: &row.model,
        provider: &row.provider,
        status: row.status,
        api_requests: a.requests,
        exported_rows: e.requests,
        missing_requests: row.missing_requests(),
        api_usage: a.cost.to_string(),
        exported_cost: e.cost.to_string(),
        missing_cost: row.missing_cost().to_string(),
        api_byok_usage_inference: a.byok.to_string(),
        exported_byok_upstream_cost: e.byok.to_string(),
        api_prompt_tokens: a.tokens[0],
        exported_prompt_tokens: e.tokens[0],
        api_completion_tokens: a.tokens[1],
        exported_completion_tokens: e.tokens[1],
        api_reasoning_tokens: a.tokens[2],
        exported_reasoning_tokens: e.tokens[2],
    }
}

#[derive(serde::Serialize)]
struct Document<'a> {
    from: String,
    to: String,
    agrees: bool,
    summary: Summary,
    rows: Vec<Flat<'a>>,
}

pub fn json(window: Window, rows: &[Row], summary: &Summary) -> anyhow::Result<String> {
    let doc = Document {
        from: window.from.to_string(),
        to: window.to.to_string(),
        agrees: summary.differing_groups == 0,
        summary: *summary,
        rows: rows.iter().map(flat).collect(),
    };
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

pub fn csv(rows: &[Row]) -> anyhow::Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(flat(row))?;
    }
    if rows.is_empty() {
        writer.write_record(["date", "model", "provider", "status"])?;
    }
    let bytes = writer.into_inner().context("failed to write CSV")?;
    String::from_utf8(bytes).context("CSV is not UTF-8")
}

/// The groups that differ, aligned, then the summary.
pub fn text(window: Window, rows: &[Row], summary: &Summary) -> String {
    let mut lines = vec![
        [
            "date",
            "model",
            "provider",
            "api requests",
            "rows",
            "missing",
            "api usage (USD)",
            "exported cost (USD)",
            "missing cost (USD)",
            "status",
        ]
        .map(str::to_owned),
    ];
    for row in rows.iter().filter(|r| r.status != Status::Agrees) {
        lines.push([
            row.date.to_string(),
            row.model.clone(),
            row.provider.clone(),
            row.api.requests.to_string(),
            row.exported.requests.to_string(),
            row.missing_requests().to_string(),
            row.api.cost.to_string(),
            row.exported.cost.to_string(),
            row.missing_cost().to_string(),
            status_text(row.status).to_owned(),
        ]);
    }
    let mut out = summary_line(window, summary);
    if lines.len() == 1 {
        return out;
    }
    out.push('\n');
    aligned(&lines, &mut out);
    out
}

/// The first line: the window and what agrees.
fn summary_line(window: Window, summary: &Summary) -> String {
    format!(
        "{} to {} (UTC): {} of {} day x model x provider groups agree; \
         API {} requests, export {} rows; missing {} requests ({} USD), extra {} rows\n",
        window.from,
        window.to,
        summary.groups - summary.differing_groups,
        summary.groups,
        summary.api_requests,
        summary.exported_rows,
        summary.missing_requests,
        summary.missing_cost,
        summary.extra_rows,
    )
}

/// `lines` in columns; the counts and money right-aligned.
fn aligned(lines: &[[String; 10]], out: &mut String) {
    let mut widths = [0usize; 10];
    for line in lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in lines {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
            let _ = if (3..9).contains(&i) {
                write!(text, "{cell:>w$}  ")
            } else {
                write!(text, "{cell:<w$}  ")
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Agrees => "agrees",
        Status::Missing => "MISSING",
        Status::Extra => "EXTRA",
        Status::CostDiffers => "COST DIFFERS",
        Status::TokensDiffer => "TOKENS DIFFER",
    }
}
