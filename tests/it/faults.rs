//! Fault handling against the simulator: 429 pauses, transient errors, the 404
//! window, a refused key, and bad input lines.

use std::collections::HashSet;
use std::time::Duration;

use genledger::config::Format;
use genledger::simulator::{RateLimitStyle, SimConfig};

use crate::support::*;

const DAY: Duration = Duration::from_secs(86_400);

async fn pause_is_obeyed(style: RateLimitStyle) {
    let every = 60;
    let sim = start_sim(SimConfig {
        rate_limit_style: style,
        scripted_429_every: Some(every),
        scripted_pause: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(150, DAY, "rl");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let settings = settings(&sim, &input, &out, Format::Parquet);
    let concurrency = settings.fetch.concurrency as u64;
    let report = export(&settings).await;
    let stats = sim.stats();
    assert_eq!(report.counts.exported, 150, "{style:?}");
    let scripted = stats.rate_limited - stats.during_pause;
    assert!(scripted >= 2, "{style:?}: the script fired ({stats:?})");
    // Once a worker has seen a 429 it waits for the announced instant; the only
    // requests that can land inside a window are those other workers had in
    // flight or sent before their own first 429 of it: at most one each.
    assert!(
        stats.during_pause <= (concurrency - 1) * scripted,
        "{style:?}: {} requests inside {} pause windows ({stats:?})",
        stats.during_pause,
        scripted
    );
    assert_eq!(report.counts.rate_limited, stats.rate_limited);
}

#[tokio::test]
async fn retries_429_with_retry_after_ms() {
    pause_is_obeyed(RateLimitStyle::RetryAfterMs).await;
}

#[tokio::test]
async fn retries_429_with_retry_after_seconds() {
    pause_is_obeyed(RateLimitStyle::RetryAfterSeconds).await;
}

#[tokio::test]
async fn retries_429_with_http_date() {
    pause_is_obeyed(RateLimitStyle::RetryAfterDate).await;
}

#[tokio::test]
async fn retries_429_with_reset_epoch_seconds() {
    pause_is_obeyed(RateLimitStyle::ResetSeconds).await;
}

#[tokio::test]
async fn retries_429_with_reset_epoch_millis() {
    pause_is_obeyed(RateLimitStyle::ResetMillis).await;
}

#[tokio::test]
async fn every_id_survives_5xx_resets_and_cut_bodies_without_double_fetch() {
    let sim = start_sim(SimConfig {
        error_rate: 0.10,
        reset_rate: 0.02,
        truncate_rate: 0.02,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(1500, DAY, "flt");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let report = export(&settings(&sim, &input, &out, Format::Csv)).await;
    let stats = sim.stats();
    assert_eq!(
        (report.exit_code, report.counts.exported),
        (0, 1500),
        "{stats:?}"
    );
    assert!(
        stats.resets > 0 && stats.truncated > 0 && stats.by_status.keys().any(|s| *s >= 500),
        "{stats:?}"
    );
    assert_eq!(stats.unique_ids_ok, 1500);
    assert_eq!(stats.duplicate_ok, 0, "no ID fetched successfully twice");
    let written: HashSet<String> = csv_rows(&out)
        .into_iter()
        .map(|r| r["id"].clone().unwrap())
        .collect();
    assert_eq!(written, ids.into_iter().collect::<HashSet<_>>());
}

#[tokio::test]
async fn young_ids_are_retried_through_the_404_window_then_exported() {
    let sim = start_sim(SimConfig {
        young_not_found: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut all = ids(20, Duration::ZERO, "young");
    all.extend(ids(20, DAY, "old"));
    let input = write_lines(dir.path(), "ids.txt", &all);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Parquet);
    settings.fetch.backoff_initial = Duration::from_millis(50);
    settings.fetch.backoff_max = Duration::from_millis(400);
    let report = export(&settings).await;
    assert_eq!((report.exit_code, report.counts.exported), (0, 40));
    assert!(
        sim.stats().by_status.get(&404).copied().unwrap_or(0) >= 20,
        "young IDs met 404 first"
    );
}

#[tokio::test]
async fn ids_missing_past_the_grace_period_fail_not_found() {
    let sim = start_sim(SimConfig {
        missing_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut all = ids(10, DAY, "gone");
    all.extend(ids(5, Duration::ZERO, "fresh"));
    let input = write_lines(dir.path(), "ids.txt", &all);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Parquet);
    settings.fetch.not_found_grace = Duration::from_secs(2);
    settings.fetch.backoff_initial = Duration::from_millis(100);
    settings.fetch.backoff_max = Duration::from_millis(500);
    let report = export(&settings).await;
    assert_eq!(report.exit_code, 1);
    assert_eq!((report.counts.exported, report.counts.failed), (0, 15));
    let rows = failure_rows(&out);
    assert_eq!(rows.len(), 15);
    for row in &rows {
        assert_eq!((&row[2], &row[3]), ("not_found", "404"));
        let attempts: u32 = row[4].parse().unwrap();
        if row[0].contains("gone") {
            assert_eq!(attempts, 1, "old IDs are not retried");
        } else {
            assert!(
                attempts > 1,
                "fresh IDs are retried within the grace period"
            );
        }
    }
}

#[tokio::test]
async fn refused_key_mid_run_stops_sending_and_keeps_finished_files() {
    let sim = start_sim(SimConfig {
        unauthorized_after: Some(300),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(3000, DAY, "key");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let settings = settings(&sim, &input, &out, Format::Parquet);
    let report = export(&settings).await;
    let stats = sim.stats();
    assert_eq!(report.exit_code, 3);
    assert!(
        report
            .stopped
            .as_deref()
            .unwrap()
            .contains("refused the API key"),
        "{:?}",
        report.stopped
    );
    let refused = stats.by_status.get(&401).copied().unwrap_or(0);
    assert!(
        refused >= 1 && refused <= settings.fetch.concurrency as u64,
        "stopped at once: {refused} 401s"
    );
    assert!(report.counts.exported > 0 && report.counts.exported <= 300);
    assert!(report.counts.pending > 0);
    let rows = parquet_rows(&out);
    assert_eq!(
        rows.len() as u64,
        report.counts.exported,
        "what was exported is in complete, readable files"
    );
}

#[tokio::test]
async fn invalid_lines_are_recorded_with_line_numbers_and_the_run_goes_on() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let good = ids(3, DAY, "ok");
    let lines = vec![
        good[0].clone(),
        "# comment".into(),
        format!("{{\"id\":\"{}\",\"model\":\"x\"}}", good[1]),
        "{\"model\":\"no id\"}".into(),
        "bad\u{7}id".into(),
        "x".repeat(300),
        good[2].clone(),
        good[0].clone(),
    ];
    let input = write_lines(dir.path(), "ids.txt", &lines);
    let out = dir.path().join("out");
    let report = export(&settings(&sim, &input, &out, Format::Csv)).await;
    assert_eq!(report.exit_code, 1);
    assert_eq!(report.counts.exported, 3);
    assert_eq!(report.counts.invalid_lines, 3);
    assert_eq!(report.counts.duplicates_skipped, 1);
    let rows = failure_rows(&out);
    let lines: Vec<(&str, &str)> = rows.iter().map(|r| (&r[1], &r[2])).collect();
    assert_eq!(
        lines,
        [
            ("4", "invalid_id"),
            ("5", "invalid_id"),
            ("6", "invalid_id")
        ]
    );
    assert_eq!(
        sim.stats().metadata_requests,
        3,
        "invalid lines are never sent"
    );
}
