//! Servers unlike the one the code was first written against: a token bucket
//! that always asks for a whole second, windows announced by `X-RateLimit-*`,
//! and generations that ran for many minutes before their IDs were logged.

use std::collections::HashSet;
use std::time::Duration;

use genledger::config::Format;
use genledger::export::summary::RunReport;
use genledger::ledger::Ledger;
use genledger::simulator::{LimiterKind, RateLimitStyle, SimConfig};

use crate::support::*;

const DAY: Duration = Duration::from_secs(86_400);

fn exported_ids(out: &std::path::Path) -> Vec<String> {
    csv_rows(out)
        .into_iter()
        .map(|r| r["id"].clone().unwrap())
        .collect()
}

#[tokio::test]
async fn a_server_that_always_asks_for_a_whole_second_is_learned_and_remembered() {
    let sim = start_sim(SimConfig {
        rate_limit: Some(50.0),
        rate_burst: Some(5),
        retry_after: Some(Duration::from_secs(1)),
        rate_limit_style: RateLimitStyle::RetryAfterSeconds,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let first = ids(150, DAY, "second");
    let input = write_lines(dir.path(), "ids.txt", &first);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Csv);
    // Five times the server's limit, as a user who guessed high would set it.
    settings.fetch.requests_per_second = 250.0;
    settings.fetch.burst = std::num::NonZeroU32::new(5).unwrap();
    let report = export(&settings).await;
    assert_eq!((report.exit_code, report.counts.exported), (0, 150));
    let stats = sim.stats();
    assert!(stats.rate_limited >= 1, "the server did limit");
    assert_eq!(report.counts.rate_limited, stats.rate_limited);
    assert_eq!(stats.duplicate_ok, 0, "no ID fetched twice");
    let learned = report.rate.learned.expect("a limit was learned");
    assert!(
        learned < 250.0,
        "learned {learned}, under the configured rate"
    );
    let kept = Ledger::open(&settings.state_path, &out)
        .unwrap()
        .learned_rate(settings.api.base_url.as_str())
        .unwrap();
    assert_eq!(kept, Some(learned), "kept in the ledger for the next run");

    // The next run starts from the learned rate, not the configured one.
    let second = ids(50, DAY, "again");
    let input = write_lines(dir.path(), "again.txt", &second);
    settings.inputs = vec![genledger::config::Input::File(input)];
    let report = export(&settings).await;
    assert_eq!((report.exit_code, report.counts.exported), (0, 50));
    assert!(
        report.rate.current <= learned,
        "started on the learned plateau: {} > {learned}",
        report.rate.current
    );
    let written: HashSet<String> = exported_ids(&out).into_iter().collect();
    assert_eq!(written.len(), 200, "each ID exactly once");
}

/// Exports `n` IDs against a window of 40 requests per second that
/// announces `X-RateLimit-*` on every answer, its reset in whole epoch
/// seconds, with genledger set to 1000/s (25 times above it) and one request
/// at a time: each answer's Remaining is then exact, so the budget is never
/// overspent by requests already on the wire. Returns the run's report, the
/// server's 429 count and the IDs written.
async fn export_against_window(
    limiter: LimiterKind,
    n: usize,
    tag: &str,
) -> (RunReport, u64, HashSet<String>) {
    let sim = start_sim(SimConfig {
        rate_limit: Some(40.0),
        limiter,
        rate_window: Duration::from_secs(1),
        rate_headers: true,
        rate_limit_style: RateLimitStyle::ResetSeconds,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let all = ids(n, DAY, tag);
    let input = write_lines(dir.path(), "ids.txt", &all);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Csv);
    settings.fetch.requests_per_second = 1000.0;
    settings.fetch.concurrency = 1;
    let report = export(&settings).await;
    let written = exported_ids(&out).into_iter().collect();
    (report, sim.stats().rate_limited, written)
}

#[tokio::test]
async fn an_announced_budget_is_spent_without_a_429() {
    let (report, rate_limited, _) =
        export_against_window(LimiterKind::FixedWindow, 100, "budget").await;
    assert_eq!((report.exit_code, report.counts.exported), (0, 100));
    // Its reset comes in whole seconds, so a hold is probed early; a fixed
    // window refuses the probes, and after two no more are sent.
    assert!(
        rate_limited <= 2,
        "{rate_limited} 429s: waits for the reset"
    );
    assert!(
        report.rate.learned.is_some(),
        "a spent budget is a signal too"
    );
}

#[tokio::test]
async fn a_sliding_window_is_never_overspent_nor_learned_above_its_limit() {
    // A sliding log's reset is when its oldest request leaves, rounded up
    // to a whole second: a spent budget looks up to twice as scarce as it
    // is, and the room it shows afterwards raises the rate again.
    let (report, rate_limited, written) =
        export_against_window(LimiterKind::SlidingWindow, 160, "sliding").await;
    assert_eq!((report.exit_code, report.counts.exported), (0, 160));
    assert!(
        rate_limited <= 2,
        "{rate_limited} 429s: only probes into a hold are ever refused"
    );
    let learned = report.rate.learned.expect("a spent budget is a signal");
    assert!(learned <= 44.0, "learned {learned}, above the log's 40/s");
    assert_eq!(written.len(), 160, "each ID exactly once");
}

#[tokio::test]
async fn generations_logged_long_after_they_started_are_all_exported() {
    // Every generation ran up to 30 minutes; its metadata appears 6 s after
    // it ended (long enough that a loaded machine asks before), and the
    // application logged its ID when it ended.
    let config = SimConfig {
        long_generation_share: 1.0,
        young_not_found: Duration::from_secs(6),
        ..SimConfig::default()
    };
    let now = unix_now();
    let all: Vec<String> = (0..60)
        .map(|i| {
            let tail = format!("longRunning{i:09}");
            let ran = config.generation_duration(&tail).as_secs();
            format!("gen-{}-{tail}", now - ran)
        })
        .collect();
    let sim = start_sim(config).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "ids.txt", &all);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Csv);
    settings.fetch.not_found_grace = Duration::from_secs(120);
    let report = export(&settings).await;
    assert_eq!(
        (
            report.exit_code,
            report.counts.exported,
            report.counts.failed
        ),
        (0, 60, 0)
    );
    let met_404 = sim.stats().by_status.get(&404).copied().unwrap_or(0);
    assert!(met_404 >= 60, "each was asked while still 404: {met_404}");
    let written: HashSet<String> = exported_ids(&out).into_iter().collect();
    assert_eq!(written, all.into_iter().collect::<HashSet<_>>());
}
