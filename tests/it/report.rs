//! `genledger report`: its totals equal sums computed here straight from the
//! written files, its chart is well-formed SVG with one series per model, and
//! a directory without readable export files is a usage error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use genledger::config::Format;
use genledger::schema::MoneyMode;
use genledger::simulator::SimConfig;

use crate::support::*;

/// rows, total_cost in 10⁻¹⁸ USD, tokens_prompt, tokens_completion.
type Sums = (u64, i128, i64, i64);

/// Per model (null model as `(unknown)`), and the grand total under "".
#[derive(Debug, Default, PartialEq)]
struct Expected(BTreeMap<String, Sums>);

impl Expected {
    fn add(&mut self, model: Option<&str>, cost: i128, prompt: i64, completion: i64) {
        let model = model.filter(|m| !m.is_empty()).unwrap_or("(unknown)");
        for key in [model, ""] {
            let sums = self.0.entry(key.to_owned()).or_default();
            *sums = (
                sums.0 + 1,
                sums.1 + cost,
                sums.2 + prompt,
                sums.3 + completion,
            );
        }
    }
}

/// Decimal text as units of 10⁻¹⁸, parsed here rather than by the crate.
fn units(text: &str) -> i128 {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    assert!(fraction.len() <= 18, "{text}");
    let value: i128 = format!("{whole}{fraction:0<18}").parse().unwrap();
    if negative { -value } else { value }
}

fn int(batch: &RecordBatch, name: &str, i: usize) -> i64 {
    let column = batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>();
    if column.is_null(i) {
        0
    } else {
        column.value(i)
    }
}

/// Sums over every Parquet file under `out`; float64 money as each double's
/// shortest decimal text.
fn parquet_sums(out: &Path) -> Expected {
    let mut expected = Expected::default();
    for path in data_files(out, ".parquet") {
        for batch in read_parquet(&path) {
            let model = batch.column_by_name("model").unwrap().as_string::<i32>();
            let cost = batch.column_by_name("total_cost").unwrap();
            for i in 0..batch.num_rows() {
                let cost = match cost.data_type() {
                    _ if cost.is_null(i) => 0,
                    DataType::Decimal128(38, 18) => cost.as_primitive::<Decimal128Type>().value(i),
                    DataType::Float64 => {
                        units(&cost.as_primitive::<Float64Type>().value(i).to_string())
                    }
                    other => panic!("total_cost is {other}"),
                };
                let model = (!model.is_null(i)).then(|| model.value(i));
                let (prompt, completion) = (
                    int(&batch, "tokens_prompt", i),
                    int(&batch, "tokens_completion", i),
                );
                expected.add(model, cost, prompt, completion);
            }
        }
    }
    expected
}

fn csv_sums(out: &Path) -> Expected {
    let mut expected = Expected::default();
    for row in csv_rows(out) {
        let field = |name: &str| row[name].as_deref();
        let int = |name: &str| field(name).map_or(0, |v| v.parse().unwrap());
        let cost = field("total_cost").map_or(0, units);
        expected.add(
            field("model"),
            cost,
            int("tokens_prompt"),
            int("tokens_completion"),
        );
    }
    expected
}

/// The report's JSON, in the same shape.
fn reported(json: &str) -> Expected {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    let sums = |v: &serde_json::Value| -> Sums {
        (
            v["rows"].as_u64().unwrap(),
            units(v["total_cost"].as_str().expect("money as a decimal string")),
            v["tokens_prompt"].as_i64().unwrap(),
            v["tokens_completion"].as_i64().unwrap(),
        )
    };
    let mut by_model: BTreeMap<String, Sums> = doc["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["model"].as_str().unwrap().to_owned(), sums(m)))
        .collect();
    by_model.insert(String::new(), sums(&doc["total"]));
    let days = doc["by_day"].as_array().unwrap();
    assert!(days.len() >= 4, "IDs spread over several days: {days:?}");
    let day_rows: u64 = days.iter().map(|d| d["rows"].as_u64().unwrap()).sum();
    assert_eq!(day_rows, doc["total"]["rows"].as_u64().unwrap());
    Expected(by_model)
}

async fn report(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = genledger();
    cmd.arg("report").arg(dir).args(extra);
    run(cmd).await
}

#[tokio::test]
async fn report_totals_equal_the_files_to_the_last_digit_and_chart_each_model() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..5)
        .flat_map(|day| {
            ids(
                120,
                Duration::from_secs(86_400 * day + 3_600),
                &format!("r{day}"),
            )
        })
        .collect();
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let svg_path = dir.path().join("cost.svg");
    let mut totals = Vec::new();
    for (name, format, money) in [
        ("parquet", Format::Parquet, MoneyMode::Decimal),
        ("csv", Format::Csv, MoneyMode::Decimal),
        ("float64", Format::Parquet, MoneyMode::Float64),
    ] {
        let out = dir.path().join(name);
        let mut settings = settings(&sim, &input, &out, format);
        settings.output.money = money;
        settings.output.max_rows_per_file = 70;
        assert_eq!(export(&settings).await.exit_code, 0);
        let expected = match format {
            Format::Parquet => parquet_sums(&out),
            Format::Csv => csv_sums(&out),
        };
        assert_eq!(expected.0[""].0, ids.len() as u64);

        let svg = svg_path.to_str().unwrap();
        let output = report(&out, &["--format", "json", "--svg", svg]).await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert_eq!(reported(&text(&output.stdout)), expected, "{name}");
        let warned = text(&output.stderr).contains("float64");
        assert_eq!(warned, money == MoneyMode::Float64, "{name}");
        check_chart(&svg_path, &expected);
        totals.push(expected);
    }
    assert_eq!(totals[0], totals[1], "Parquet and CSV hold the same money");
}

/// Well-formed XML with exactly one series per model.
fn check_chart(path: &Path, expected: &Expected) {
    let svg = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let series: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("series"))
        .map(|n| n.attribute("data-model").unwrap())
        .collect();
    let models: BTreeSet<&str> = expected
        .0
        .keys()
        .map(String::as_str)
        .filter(|m| !m.is_empty())
        .collect();
    assert_eq!(series.len(), models.len());
    assert_eq!(series.into_iter().collect::<BTreeSet<_>>(), models);
}

#[tokio::test]
async fn report_exits_2_without_readable_export_files_and_skips_temporary_ones() {
    let dir = tempfile::tempdir().unwrap();
    let output = report(dir.path(), &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("no export files"),
        "{}",
        text(&output.stderr)
    );

    let partition = dir.path().join("generations/date=2026-11-21");
    std::fs::create_dir_all(&partition).unwrap();
    let header = "id,created_at,model,total_cost,tokens_prompt,tokens_completion,exported_at\r\n";
    let row = "gen-1,2026-11-21T10:00:00.000000Z,\"a/<b>&\"\"c\"\"\",0.30000000000000004,10,,\
               2026-11-22T00:00:00.000000Z\r\n";
    std::fs::write(partition.join("part-a.csv"), format!("{header}{row}{row}")).unwrap();
    std::fs::write(partition.join(".part-b.parquet.tmp"), b"half a file").unwrap();
    std::fs::write(partition.join(".part-c.parquet"), b"hidden").unwrap();
    let svg = dir.path().join("chart.svg");
    let output = report(
        dir.path(),
        &["--format", "csv", "--svg", svg.to_str().unwrap()],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).ends_with("total,,2,0.60000000000000008,20,0\n"));
    let mut one = Expected::default();
    one.add(Some("a/<b>&\"c\""), 0, 0, 0);
    check_chart(&svg, &one);

    std::fs::write(partition.join("part-d.parquet"), b"not parquet").unwrap();
    let output = report(dir.path(), &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("part-d.parquet"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_by_sums_every_combination_of_the_columns_asked_exactly() {
    use genledger::money::Money;
    use genledger::report::{Dim, read_export, render};
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(600, Duration::from_secs(86_400 * 2), "by");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    export(&settings(&sim, &input, &out, Format::Parquet)).await;

    let by = [Dim::Provider, Dim::ApiType, Dim::WorkspaceId];
    let report = read_export(&out, &by).unwrap();
    let mut want: BTreeMap<Vec<String>, (u64, Money)> = BTreeMap::new();
    for row in parquet_rows(&out) {
        let text = |c: &str| row[c].clone().unwrap_or_else(|| "(none)".into());
        let key = vec![
            text("provider_name"),
            text("api_type"),
            text("workspace_id"),
        ];
        let cost = Money::parse(row["total_cost"].as_deref().unwrap_or("0")).unwrap();
        let entry = want.entry(key).or_insert((0, Money::ZERO));
        entry.0 += 1;
        entry.1 = entry.1.checked_add(cost).unwrap();
    }
    let got: BTreeMap<Vec<String>, (u64, Money)> = report
        .by_group()
        .into_iter()
        .map(|(k, s)| (k.to_vec(), (s.rows, s.total_cost)))
        .collect();
    assert!(got.len() > 3, "several combinations: {got:?}");
    assert_eq!(got, want);
    let csv = render::csv(&report).unwrap();
    assert!(
        csv.starts_with("provider,api_type,workspace_id,rows,total_cost,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), want.len() + 1);
    let json: serde_json::Value = serde_json::from_str(&render::json(&report).unwrap()).unwrap();
    assert_eq!(json["by"].as_array().unwrap().len(), want.len());
}
