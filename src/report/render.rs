//! The report as text: an aligned table, CSV, or JSON. Money is printed as
//! exact decimal text in every format.

use std::fmt::Write as _;

use anyhow::Context;

use super::{Report, Sums};

const HEADINGS: [&str; 4] = [
    "rows",
    "total_cost (USD)",
    "tokens_prompt",
    "tokens_completion",
];

/// A line of the table: a key and its sums, or a blank line between groups.
enum TableLine {
    Heading(&'static str),
    Sums(String, Sums),
    Blank,
}

/// Models, then days, then the total, in one set of aligned columns; money
/// aligned on the decimal point. With `--by`, its groups instead of models
/// and days.
pub fn table(report: &Report) -> String {
    if !report.by.is_empty() {
        return by_table(report);
    }
    let lines = table_lines(report);
    let money = MoneyColumn::new(&lines);
    let cells = |sums: &Sums| {
        [
            sums.rows.to_string(),
            money.cell(sums),
            sums.tokens_prompt.to_string(),
            sums.tokens_completion.to_string(),
        ]
    };
    let mut key_width = "day (UTC)".len();
    let mut widths = HEADINGS.map(str::len);
    for line in &lines {
        if let TableLine::Sums(key, sums) = line {
            key_width = key_width.max(key.chars().count());
            for (width, cell) in widths.iter_mut().zip(cells(sums)) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }

    let mut out = summary(report);
    for line in &lines {
        let (key, values) = match line {
            TableLine::Heading(key) => (key.to_string(), HEADINGS.map(str::to_owned)),
            TableLine::Sums(key, sums) => (key.clone(), cells(sums)),
            TableLine::Blank => {
                out.push('\n');
                continue;
            }
        };
        let pad = key_width - key.chars().count();
        let mut text = format!("{key}{}", " ".repeat(pad));
        for (value, width) in values.iter().zip(widths) {
            // Writing into a String cannot fail.
            let _ = write!(text, "  {value:>width$}");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// One row per combination of the `--by` values, then the total.
fn by_table(report: &Report) -> String {
    let groups = report.by_group();
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(groups.len() + 2);
    let mut heading: Vec<String> = report.by.iter().map(|d| d.name().to_owned()).collect();
    heading.extend(HEADINGS.map(str::to_owned));
    rows.push(heading);
    let sums_cells = |sums: &Sums| {
        [
            sums.rows.to_string(),
            sums.total_cost.to_string(),
            sums.tokens_prompt.to_string(),
            sums.tokens_completion.to_string(),
        ]
    };
    for (key, sums) in &groups {
        let mut row = key.to_vec();
        row.extend(sums_cells(sums));
        rows.push(row);
    }
    let mut total = vec![String::new(); report.by.len()];
    total[0] = "total".into();
    total.extend(sums_cells(&report.total()));
    rows.push(total);
    let keys = report.by.len();
    let mut widths = vec![0; rows[0].len()];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = summary(report);
    for row in &rows {
        let mut text = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            let _ = match i < keys {
                true => write!(text, "{cell:<width$}  "),
                false => write!(text, "{cell:>width$}  "),
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The table's lines: models, then days, then the total.
fn table_lines(report: &Report) -> Vec<TableLine> {
    let mut lines = vec![TableLine::Heading("model")];
    for (model, sums) in report.by_model() {
        lines.push(TableLine::Sums(model.to_owned(), sums));
    }
    lines.extend([TableLine::Blank, TableLine::Heading("day (UTC)")]);
    for (day, sums) in report.by_day() {
        lines.push(TableLine::Sums(day.to_string(), sums));
    }
    lines.extend([TableLine::Blank]);
    lines.push(TableLine::Sums("total".into(), report.total()));
    lines
}

/// The line above the table: what was read, and whether its money is exact.
fn summary(report: &Report) -> String {
    format!(
        "{} rows in {} files under `{}`{}\n\n",
        report.total().rows,
        report.files,
        report.dir.display(),
        if report.float_files > 0 {
            "; money from float64 columns, see the warning"
        } else {
            "; money exact"
        }
    )
}

/// Widths that line money up on its decimal point.
struct MoneyColumn {
    whole: usize,
    fraction: usize,
}

impl MoneyColumn {
    fn new(lines: &[TableLine]) -> MoneyColumn {
        let mut column = MoneyColumn {
            whole: 0,
            fraction: 0,
        };
        for line in lines {
            if let TableLine::Sums(_, sums) = line {
                let text = sums.total_cost.to_string();
                let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
                column.whole = column.whole.max(whole.len());
                column.fraction = column.fraction.max(fraction.len());
            }
        }
        column
    }

    fn cell(&self, sums: &Sums) -> String {
        let text = sums.total_cost.to_string();
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, format!(".{fraction}")),
            None => (text.as_str(), String::new()),
        };
        let fraction_width = if self.fraction > 0 {
            self.fraction + 1
        } else {
            0
        };
        format!(
            "{whole:>w$}{fraction:<f$}",
            w = self.whole,
            f = fraction_width
        )
    }
}

/// `group,key,rows,total_cost,tokens_prompt,tokens_completion`, where group is
/// `model`, `day` or `total`.
pub fn csv(report: &Report) -> anyhow::Result<String> {
    if !report.by.is_empty() {
        return by_csv(report);
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "group",
        "key",
        "rows",
        "total_cost",
        "tokens_prompt",
        "tokens_completion",
    ])?;
    let mut row = |group: &str, key: &str, sums: &Sums| {
        writer.write_record([
            group,
            key,
            &sums.rows.to_string(),
            &sums.total_cost.to_string(),
            &sums.tokens_prompt.to_string(),
            &sums.tokens_completion.to_string(),
        ])
    };
    for (model, sums) in report.by_model() {
        row("model", model, &sums)?;
    }
    for (day, sums) in report.by_day() {
        row("day", &day.to_string(), &sums)?;
    }
    row("total", "", &report.total())?;
    let bytes = writer.into_inner().context("failed to write CSV")?;
    String::from_utf8(bytes).context("CSV is not UTF-8")
}

/// With `--by`: one column per grouping column, then the sums; no total row.
fn by_csv(report: &Report) -> anyhow::Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = report.by.iter().map(|d| d.name()).collect();
    header.extend(["rows", "total_cost", "tokens_prompt", "tokens_completion"]);
    writer.write_record(&header)?;
    for (key, sums) in report.by_group() {
        let mut row = key.to_vec();
        row.extend([
            sums.rows.to_string(),
            sums.total_cost.to_string(),
            sums.tokens_prompt.to_string(),
            sums.tokens_completion.to_string(),
        ]);
        writer.write_record(&row)?;
    }
    let bytes = writer.into_inner().context("failed to write CSV")?;
    String::from_utf8(bytes).context("CSV is not UTF-8")
}

#[derive(serde::Serialize)]
struct Json<'a> {
    dir: String,
    files: usize,
    /// Parquet files whose money was float64: their amounts are the doubles'
    /// shortest decimals.
    float64_money_files: usize,
    total: Sums,
    by_model: Vec<Keyed<'a>>,
    by_day: Vec<Keyed<'a>>,
    /// With `--by`: one object per combination, keyed by the column names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    by: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(serde::Serialize)]
struct Keyed<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<String>,
    #[serde(flatten)]
    sums: Sums,
}

/// One JSON document; amounts as exact decimal strings.
pub fn json(report: &Report) -> anyhow::Result<String> {
    let by_model = report.by_model().into_iter().map(|(model, sums)| Keyed {
        model: Some(model),
        day: None,
        sums,
    });
    let by_day = report.by_day().into_iter().map(|(day, sums)| Keyed {
        model: None,
        day: Some(day.to_string()),
        sums,
    });
    let doc = Json {
        dir: report.dir.display().to_string(),
        files: report.files,
        float64_money_files: report.float_files,
        total: report.total(),
        by_model: by_model.collect(),
        by_day: by_day.collect(),
        by: by_objects(report)?,
    };
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

fn by_objects(report: &Report) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut objects = Vec::new();
    for (key, sums) in report.by_group() {
        let mut object = serde_json::Map::new();
        for (dim, value) in report.by.iter().zip(key) {
            object.insert(dim.name().into(), value.clone().into());
        }
        if let serde_json::Value::Object(sums) = serde_json::to_value(sums)? {
            object.extend(sums);
        }
        objects.push(object);
    }
    Ok(objects)
}
