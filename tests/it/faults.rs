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
    // IDs carry their creation second; a window of several seconds keeps
    // them young at their first fetch even on a loaded machine.
    let sim = start_sim(SimConfig {
        young_not_found: Duration::from_secs(4),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut all = ids(20, Duration::ZERO, "young");
    all.extend(ids(20, DAY, "old"));
    let input = write_lines(dir.path(), "ids.txt", &all);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Parquet);
    settings.fetch.not_found_grace = Duration::from_secs(10);
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
    // A prefix a day ahead, and one in the year 5138: not trusted, so the
    // first 404 alone decides, and neither holds the run.
    let tomorrow = unix_now() + 86_400;
    all.push(format!("gen-{tomorrow}-aheadOfTheClock0001"));
    all.push("gen-99999999999-absurdPrefix00000001".to_owned());
    let input = write_lines(dir.path(), "ids.txt", &all);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Parquet);
    settings.fetch.not_found_grace = Duration::from_secs(2);
    let report = export(&settings).await;
    assert_eq!(report.exit_code, 1);
    assert_eq!((report.counts.exported, report.counts.failed), (0, 17));
    let rows = failure_rows(&out);
    assert_eq!(rows.len(), 17);
    for row in &rows {
        assert_eq!((&row[2], &row[3]), ("not_found", "404"));
        // Old or fresh, an ID is final only once the grace has passed since
        // its first 404, after at most eight requests.
        let attempts: u32 = row[4].parse().unwrap();
        assert!((2..=8).contains(&attempts), "{row:?}");
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

/// After a run, every input ID is exported once, failed with a reason, or
/// pending; nothing is both in a file and failed or pending.
fn check_accounted(out: &std::path::Path, ids: &[String]) -> (u64, u64, u64) {
    use genledger::ledger::Ledger;
    use genledger::record::IdStatus;
    let mut in_files = HashSet::new();
    for row in parquet_rows(out) {
        assert!(
            in_files.insert(row["id"].clone().unwrap()),
            "an ID is in two files"
        );
    }
    let ledger = Ledger::open(&out.join("_state/genledger.db"), out).unwrap();
    let mut counts = (0, 0, 0);
    for id in ids {
        match ledger.status_of(id).unwrap() {
            Some(IdStatus::Exported) => {
                assert!(in_files.contains(id), "{id} exported but in no file");
                counts.0 += 1;
            }
            Some(IdStatus::Failed) => {
                assert!(!in_files.contains(id), "{id} failed but in a file");
                counts.1 += 1;
            }
            Some(IdStatus::Pending) => {
                assert!(!in_files.contains(id), "{id} pending but in a file");
                counts.2 += 1;
            }
            None => panic!("{id} is not in the ledger"),
        }
    }
    assert_eq!(in_files.len() as u64, counts.0, "files hold only input IDs");
    counts
}

#[tokio::test]
async fn fault_campaign_loses_and_doubles_nothing_and_a_second_run_finishes() {
    use genledger::simulator::RateLimitStyle as S;
    let storm = |style| SimConfig {
        rate_limit: Some(300.0),
        rate_burst: Some(5),
        rate_limit_style: style,
        ..SimConfig::default()
    };
    let campaign: Vec<(&str, SimConfig)> = vec![
        ("429 ms", storm(S::RetryAfterMs)),
        ("429 date", storm(S::RetryAfterDate)),
        ("429 reset", storm(S::ResetMillis)),
        ("429 bare", storm(S::Bare)),
        (
            "5xx",
            SimConfig {
                error_rate: 0.3,
                ..SimConfig::default()
            },
        ),
        (
            "resets",
            SimConfig {
                reset_rate: 0.2,
                ..SimConfig::default()
            },
        ),
        (
            "cut bodies",
            SimConfig {
                truncate_rate: 0.2,
                ..SimConfig::default()
            },
        ),
        (
            "slow answers",
            SimConfig {
                latency: Duration::from_millis(50),
                latency_jitter: Duration::from_millis(400),
                ..SimConfig::default()
            },
        ),
        (
            "404 window",
            SimConfig {
                young_not_found: Duration::from_secs(1),
                missing_rate: 0.1,
                ..SimConfig::default()
            },
        ),
        (
            "401 part way",
            SimConfig {
                unauthorized_after: Some(60),
                ..SimConfig::default()
            },
        ),
    ];
    // The cases run side by side; each has its own simulator and output.
    let mut cases = tokio::task::JoinSet::new();
    for (name, faults) in campaign {
        cases.spawn(run_fault_case(name, faults));
    }
    while let Some(case) = cases.join_next().await {
        case.unwrap();
    }
}

async fn run_fault_case(name: &'static str, faults: SimConfig) {
    let dir = tempfile::tempdir().unwrap();
    {
        let sim = start_sim(faults).await;
        let mut all = ids(150, DAY, &name.replace(' ', ""));
        all.extend(ids(
            10,
            Duration::ZERO,
            &format!("{}young", name.replace(' ', "")),
        ));
        let input = write_lines(dir.path(), &format!("{name}.txt"), &all);
        let out = dir.path().join(name.replace(' ', "_"));
        let mut settings = settings(&sim, &input, &out, Format::Parquet);
        // Few tries and short timeouts, so faults leave IDs pending.
        settings.fetch.max_attempts = 2;
        settings.fetch.timeout = Duration::from_millis(200);
        settings.fetch.not_found_grace = Duration::from_secs(3);
        settings.fetch.backoff_initial = Duration::from_millis(20);
        settings.fetch.backoff_max = Duration::from_millis(200);
        let first = export(&settings).await;
        let (exported, failed, pending) = check_accounted(&out, &all);
        assert_eq!(exported + failed + pending, all.len() as u64, "{name}");
        assert_eq!(
            (first.counts.exported, first.counts.pending),
            (exported, pending),
            "{name}"
        );

        // A second run against a healthy API finishes what was pending.
        let healthy = start_sim(SimConfig {
            missing_rate: if name == "404 window" { 0.1 } else { 0.0 },
            ..SimConfig::default()
        })
        .await;
        let mut settings = settings.clone();
        settings.api.base_url = healthy.base_url().parse().unwrap();
        // A generous timeout: a timed-out request the server did answer would
        // rightly be fetched again, and that is not what this run checks.
        settings.fetch.timeout = Duration::from_secs(30);
        let second = export(&settings).await;
        let (exported2, failed2, pending2) = check_accounted(&out, &all);
        assert_eq!(pending2, 0, "{name}: {:?}", second.counts);
        // Failed IDs stay failed. In the 404-window case a permanently
        // missing ID that timed out in the first run (pending) fails now.
        if name == "404 window" {
            assert!(failed2 >= failed, "{name}: failed IDs stay failed");
        } else {
            assert_eq!(failed2, failed, "{name}: failed IDs stay failed");
        }
        assert_eq!(
            exported2 + (failed2 - failed),
            exported + pending,
            "{name}: every pending ID was finished"
        );
        assert_eq!(
            healthy.stats().duplicate_ok,
            0,
            "{name}: {:?}",
            second.counts
        );
        // Only pending IDs were fetched again; a missing one is asked up to
        // eight times before its 404 is final.
        let refetched = healthy.stats().metadata_requests;
        if name == "404 window" {
            assert!(
                (pending..=pending * 8).contains(&refetched),
                "{name}: {refetched} requests for {pending} pending IDs"
            );
        } else {
            assert_eq!(
                refetched, pending,
                "{name}: only pending IDs were fetched again"
            );
        }
    }
}
