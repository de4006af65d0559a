//! The `focus` table: one FOCUS row per generation, in files paired with the
//! `generations` files, its money equal to theirs to the last digit.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use genledger::config::{Format, RawConfig, Settings};
use genledger::money::Money;

use crate::support::*;

/// IDs spread over `days` days, `per_day` each.
fn spread_ids(days: u64, per_day: usize, tag: &str) -> Vec<String> {
    (0..days)
        .flat_map(|d| {
            ids(
                per_day,
                Duration::from_secs(3_600 + d * 86_400),
                &format!("{tag}{d}"),
            )
        })
        .collect()
}

fn focus_raw(base_url: String, input: &Path, out: &Path, format: Format) -> RawConfig {
    let mut raw = RawConfig::default();
    raw.api.base_url = base_url;
    raw.input.paths = vec![input.display().to_string()];
    raw.output.dir = out.to_path_buf();
    raw.output.format = format;
    raw.output.tables = vec!["generations".into(), "focus".into()];
    raw.focus.billing_account_id = Some("org-acme".into());
    raw.fetch.requests_per_second = 100_000.0;
    raw.fetch.burst = 100;
    raw.fetch.concurrency = 8;
    raw.fetch.not_found_grace = Duration::ZERO;
    raw
}

fn sum(rows: &[Row], column: &str) -> Money {
    rows.iter().fold(Money::ZERO, |acc, row| {
        let cell = row[column].as_deref().unwrap_or("0");
        acc.checked_add(Money::parse(cell).unwrap()).unwrap()
    })
}

fn names(files: &[std::path::PathBuf]) -> Vec<String> {
    let name = |p: &std::path::PathBuf| {
        let part = p.parent().unwrap().file_name().unwrap().to_string_lossy();
        format!("{part}/{}", p.file_name().unwrap().to_string_lossy())
    };
    files.iter().map(name).collect()
}

async fn check_focus_equals_generations(format: Format, extension: &str) {
    let sim = start_sim(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = spread_ids(6, 150, extension);
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let settings = with_raw(focus_raw(sim.base_url(), &input, &out, format));
    let report = export(&settings).await;
    assert_eq!(report.counts.exported, ids.len() as u64);

    let (generations, focus) = match format {
        Format::Parquet => (parquet_rows(&out), table_parquet_rows(&out, "focus")),
        Format::Csv => (csv_rows(&out), table_csv_rows(&out, "focus")),
    };
    assert_eq!(focus.len(), ids.len(), "one FOCUS row per generation");
    let billed = sum(&focus, "BilledCost");
    let total = sum(&generations, "total_cost");
    assert!(total > Money::ZERO);
    assert_eq!(billed, total, "BilledCost sums to total_cost exactly");
    assert_eq!(sum(&focus, "EffectiveCost"), total);
    assert_eq!(sum(&focus, "x_Usage"), sum(&generations, "usage"));
    assert_eq!(
        sum(&focus, "x_UpstreamInferenceCost"),
        sum(&generations, "upstream_inference_cost")
    );
    let focus_ids: BTreeSet<_> = focus
        .iter()
        .map(|r| r["x_GenerationId"].clone().unwrap())
        .collect();
    let want: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(focus_ids, want, "every generation once");
    for row in &focus {
        assert_eq!(row["BillingAccountId"].as_deref(), Some("org-acme"));
        assert_eq!(row["BillingCurrency"].as_deref(), Some("USD"));
        assert_eq!(row["ChargeCategory"].as_deref(), Some("Usage"));
        let list = Money::parse(row["ListCost"].as_deref().unwrap()).unwrap();
        let billed = Money::parse(row["BilledCost"].as_deref().unwrap()).unwrap();
        assert!(list >= billed, "list {list} below billed {billed}");
        let start = row["ChargePeriodStart"].as_deref().unwrap();
        let end = row["ChargePeriodEnd"].as_deref().unwrap();
        assert!(start < end && start.ends_with("Z"), "{start} .. {end}");
    }

    let gen_files = names(&table_files(&out, "generations", extension));
    let focus_files = names(&table_files(&out, "focus", extension));
    assert_eq!(
        gen_files, focus_files,
        "each focus file pairs with a generations file"
    );
    let manifest = genledger::export::manifest::read(report.manifest.as_ref().unwrap()).unwrap();
    let listed = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "focus")
        .count();
    assert_eq!(
        listed,
        focus_files.len(),
        "the manifest lists the focus files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn focus_billed_cost_equals_generations_total_cost_exactly_in_parquet() {
    check_focus_equals_generations(Format::Parquet, ".parquet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn focus_billed_cost_equals_generations_total_cost_exactly_in_csv() {
    check_focus_equals_generations(Format::Csv, ".csv").await;
}

#[test]
fn the_focus_table_needs_a_billing_account_id() {
    let mut raw = RawConfig::default();
    raw.output.tables = vec!["generations".into(), "focus".into()];
    let error = Settings::resolve(&raw, None, |_| "test".into()).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("focus.billing_account_id"), "{message}");
    raw.output.tables = vec!["focus".into()];
    raw.focus.billing_account_id = Some("org".into());
    let message = format!(
        "{:#}",
        Settings::resolve(&raw, None, |_| "test".into()).unwrap_err()
    );
    assert!(message.contains("must include `generations`"), "{message}");
    raw.output.tables = vec!["generations".into(), "focus".into()];
    let settings = Settings::resolve(&raw, None, |_| "test".into()).unwrap();
    assert_eq!(
        settings.output.focus.unwrap().billing_account_id,
        "org",
        "resolved"
    );
}

#[test]
fn the_focus_flag_without_an_account_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = genledger()
        .args(["export", "--focus", "--input", "-", "--output"])
        .arg(&out)
        .env("OPENROUTER_API_KEY", KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("focus.billing_account_id"));
    assert!(!out.exists(), "nothing created");
}
