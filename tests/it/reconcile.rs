//! `genledger reconcile` against the simulator's Activity API: IDs the
//! application made but never handed to genledger are found, by day, model
//! and provider, with their count and cost; the management key never shows.

use std::collections::BTreeMap;
use std::time::Duration;

use genledger::config::Format;
use genledger::money::Money;
use genledger::simulator::{SimConfig, generation};

use crate::support::*;

const MANAGEMENT_KEY: &str = "sk-or-v1-mgmt-5ecret-0f-the-0rg-77";

/// 1,000 IDs over the last 25 completed days.
fn account_ids() -> Vec<String> {
    (1..=25u64)
        .flat_map(|d| {
            ids(
                40,
                Duration::from_secs(d * 86_400 + 1_800),
                &format!("rc{d:02}x"),
            )
        })
        .collect()
}

fn reconcile_cmd(sim_url: &str, out: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = genledger();
    cmd.args(["reconcile", "--base-url", sim_url])
        .arg(out)
        .args(extra)
        .env("OPENROUTER_MANAGEMENT_KEY", MANAGEMENT_KEY);
    cmd
}

type Expected = BTreeMap<(String, String, String), (i64, Money)>;

/// The withheld generations by day, model and provider, from the simulator's records.
fn expected(withheld: &[String]) -> Expected {
    let mut want = Expected::new();
    for id in withheld {
        let g = generation(id);
        let key = (
            g.created_at[..10].to_owned(),
            g.model.clone().unwrap_or_default(),
            g.provider_name.clone().unwrap_or_else(|| "(none)".into()),
        );
        let cost = Money::parse(g.total_cost.as_deref().unwrap_or("0")).unwrap();
        let entry = want.entry(key).or_insert((0, Money::ZERO));
        entry.0 += 1;
        entry.1 = entry.1.checked_add(cost).unwrap();
    }
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_names_exactly_the_withheld_days_models_and_costs_and_agrees_once_they_are_in() {
    let dir = tempfile::tempdir().unwrap();
    let all = account_ids();
    let account = write_lines(dir.path(), "account.txt", &all);
    let sim = start_sim(SimConfig {
        management_key: Some(MANAGEMENT_KEY.into()),
        activity_ids: Some(account),
        ..SimConfig::default()
    })
    .await;
    // 37 IDs the application made but never logged.
    let mut rng = fastrand::Rng::with_seed(37);
    let mut withheld = all.clone();
    rng.shuffle(&mut withheld);
    withheld.truncate(37);
    let logged: Vec<String> = all
        .iter()
        .filter(|id| !withheld.contains(id))
        .cloned()
        .collect();
    let input = write_lines(dir.path(), "logged.txt", &logged);
    let out = dir.path().join("out");
    let report = export(&settings(&sim, &input, &out, Format::Parquet)).await;
    assert_eq!(report.counts.exported, logged.len() as u64);

    let output = run(reconcile_cmd(&sim.base_url(), &out, &["--format", "json"])).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let want = expected(&withheld);
    let mut got = BTreeMap::new();
    for row in doc["rows"].as_array().unwrap() {
        if row["status"] == "agrees" {
            continue;
        }
        assert_eq!(row["status"], "missing", "{row}");
        let key = (
            row["date"].as_str().unwrap().to_owned(),
            row["model"].as_str().unwrap().to_owned(),
            row["provider"].as_str().unwrap().to_owned(),
        );
        let missing = row["missing_requests"].as_i64().unwrap();
        assert_eq!(
            row["api_requests"].as_i64().unwrap() - row["exported_rows"].as_i64().unwrap(),
            missing
        );
        let cost = Money::parse(row["missing_cost"].as_str().unwrap()).unwrap();
        got.insert(key, (missing, cost));
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "exactly the groups of the withheld IDs"
    );
    for (key, (missing, cost)) in &got {
        let (want_missing, want_cost) = want[key];
        assert_eq!(*missing, want_missing, "{key:?}");
        // The API's usage is a double's sum: within a billionth of a dollar.
        let gap = (cost.units() - want_cost.units()).abs();
        assert!(gap < 1_000_000_000, "{key:?}: {cost} vs {want_cost}");
    }
    assert_eq!(doc["summary"]["missing_requests"], 37);
    assert_eq!(doc["agrees"], false);

    // The missing IDs turn up in the queue and are exported: all agrees.
    let input = write_lines(dir.path(), "all.txt", &all);
    export(&settings(&sim, &input, &out, Format::Parquet)).await;
    let output = run(reconcile_cmd(&sim.base_url(), &out, &[])).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let stdout = text(&output.stdout);
    let agreed = "API 1000 requests, export 1000 rows; missing 0 requests (0 USD), extra 0 rows";
    assert!(stdout.contains(agreed), "{stdout}");
    let csv = run(reconcile_cmd(&sim.base_url(), &out, &["--format", "csv"])).await;
    assert_eq!(csv.status.code(), Some(0));
    assert!(text(&csv.stdout).starts_with("date,model,provider,status,api_requests,exported_rows,missing_requests,api_usage,exported_cost,missing_cost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_key_never_appears_in_output_or_logs_even_at_trace() {
    let dir = tempfile::tempdir().unwrap();
    let all = account_ids();
    let account = write_lines(dir.path(), "account.txt", &all[..100]);
    let sim = start_sim(SimConfig {
        management_key: Some(MANAGEMENT_KEY.into()),
        activity_ids: Some(account),
        ..SimConfig::default()
    })
    .await;
    let input = write_lines(dir.path(), "ids.txt", &all[..90]);
    let out = dir.path().join("out");
    export(&settings(&sim, &input, &out, Format::Csv)).await;
    let key_file = dir.path().join("mgmt-key");
    std::fs::write(&key_file, format!("{MANAGEMENT_KEY}\n")).unwrap();
    let config = dir.path().join("genledger.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nmanagement_key_file = {:?}\n",
            key_file.display().to_string()
        ),
    )
    .unwrap();
    for format in ["text", "json", "csv"] {
        // From the environment, and from the file.
        for from_env in [true, false] {
            let mut cmd = reconcile_cmd(
                &sim.base_url(),
                &out,
                &["-vvv", "--log-format", "json", "--format", format],
            );
            cmd.env("RUST_LOG", "trace").arg("--config").arg(&config);
            if !from_env {
                cmd.env_remove("OPENROUTER_MANAGEMENT_KEY");
            }
            let output = run(cmd).await;
            assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
            let stderr = text(&output.stderr);
            assert!(
                stderr.contains("TRACE") || stderr.contains("\"level\":\"TRACE\""),
                "trace logging was on"
            );
            for stream in [text(&output.stdout), stderr] {
                assert!(!stream.contains(MANAGEMENT_KEY), "the key leaked: {stream}");
                assert!(!stream.contains("5ecret"), "part of the key leaked");
            }
        }
    }
    // A wrong key: the error says what is wrong, and not the key.
    let mut cmd = reconcile_cmd(&sim.base_url(), &out, &["-vvv"]);
    cmd.env("OPENROUTER_MANAGEMENT_KEY", "sk-or-v1-not-the-mgmt-key-99");
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("not-the-mgmt-key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_hash_compares_only_that_keys_generations() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let all = account_ids();
    let account = write_lines(dir.path(), "account.txt", &all[..200]);
    let sim = start_sim(SimConfig {
        management_key: Some(MANAGEMENT_KEY.into()),
        activity_ids: Some(account),
        ..SimConfig::default()
    })
    .await;
    let input = write_lines(dir.path(), "ids.txt", &all[..200]);
    let out = dir.path().join("out");
    export(&settings(&sim, &input, &out, Format::Parquet)).await;
    // The simulator's generations were all made with the test key.
    let ours = hex::encode(Sha256::digest(KEY.as_bytes()));
    let output = run(reconcile_cmd(
        &sim.base_url(),
        &out,
        &["--api-key-hash", &ours],
    ))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let other = hex::encode(Sha256::digest(b"another key"));
    let output = run(reconcile_cmd(
        &sim.base_url(),
        &out,
        &["--api-key-hash", &other, "--format", "json"],
    ))
    .await;
    assert_eq!(output.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["summary"]["api_requests"], 0);
    assert_eq!(doc["summary"]["extra_rows"], 200);
    // A key where its hash belongs is refused, and not echoed.
    let output = run(reconcile_cmd(
        &sim.base_url(),
        &out,
        &["--api-key-hash", KEY],
    ))
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(!text(&output.stderr).contains(KEY));
}
