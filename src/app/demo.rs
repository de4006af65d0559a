//! `genledger demo`: the one-command tour. Starts the simulator in-process with
//! a few realistic faults, writes a few thousand IDs, exports them to Parquet
//! (and a CSV copy) under `./genledger-demo/`, and prints the summary.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::{print_report, watch_signals};
use crate::cli::{DemoArgs, SummaryFormat};
use crate::config::{ApiKey, Format, RawConfig, Settings};
use crate::exit::ExitStatus;
use crate::export;
use crate::progress::{Silent, TerminalProgress};
use crate::simulator::{SimConfig, Simulator};
use crate::stop::Stop;

/// The key the demo's simulator expects (it is not an OpenRouter key).
const DEMO_KEY: &str = "demo-key-not-secret";
/// Marks a directory as the demo's own, so a rerun may clear it.
const MARKER: &str = ".genledger-demo";

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitStatus> {
    let dir = &args.output;
    prepare_dir(dir)?;
    let sim = Simulator::start(demo_simulator(), "127.0.0.1:0".parse()?)
        .await
        .context("failed to start the simulator")?;
    let ids_path = dir.join("ids.txt");
    write_ids(&ids_path, args.ids)
        .with_context(|| format!("failed to write `{}`", ids_path.display()))?;
    eprintln!(
        "genledger demo: simulator on {} (2% server errors, resets, cut bodies, a 1500 req/s limit, 404s for fresh IDs)\nexporting {} IDs from {} at up to 2000 req/s ...",
        sim.base_url(),
        args.ids,
        ids_path.display()
    );

    let stop = Arc::new(Stop::default());
    watch_signals(stop.clone());
    let settings = demo_settings(
        &sim.base_url(),
        &ids_path,
        &dir.join("parquet"),
        Format::Parquet,
    )?;
    let progress = Arc::new(TerminalProgress::new(Some(args.ids)));
    let options = export::RunOptions::default();
    let report = export::run(&settings, &options, stop.clone(), progress).await?;
    print_report(&report, SummaryFormat::Text)?;

    let csv_settings = demo_settings(&sim.base_url(), &ids_path, &dir.join("csv"), Format::Csv)?;
    let csv_report = export::run(&csv_settings, &options, stop, Arc::new(Silent)).await?;
    let stats = sim.stats();
    sim.shutdown().await;
    println!(
        "  CSV copy           {} files under {}",
        csv_report.files.len(),
        dir.join("csv").display()
    );
    println!(
        "  simulator served   {} requests: {} complete answers, {} 429s, {} resets, {} cut bodies",
        stats.requests, stats.served_ok, stats.rate_limited, stats.resets, stats.truncated
    );
    println!();
    println!("Read it back, for example with DuckDB:");
    println!(
        "  duckdb -c \"SELECT model, count(*), sum(total_cost) FROM '{}/parquet/generations/*/*.parquet' GROUP BY 1 ORDER BY 3 DESC\"",
        dir.display()
    );
    println!("Or cost and tokens by model and day, with a chart:");
    println!(
        "  genledger report {} --svg cost.svg",
        dir.join("parquet").display()
    );
    Ok(match report.status {
        ExitStatus::Success => csv_report.status,
        worse => worse,
    })
}

fn demo_simulator() -> SimConfig {
    SimConfig {
        latency: Duration::from_millis(2),
        latency_jitter: Duration::from_millis(10),
        rate_limit: Some(1500.0),
        rate_burst: Some(50),
        error_rate: 0.02,
        reset_rate: 0.005,
        truncate_rate: 0.005,
        young_not_found: Duration::from_secs(2),
        api_key: Some(DEMO_KEY.into()),
        ..SimConfig::default()
    }
}

fn demo_settings(
    base_url: &str,
    ids: &Path,
    out: &Path,
    format: Format,
) -> anyhow::Result<Settings> {
    let mut raw = RawConfig::default();
    raw.api.base_url = base_url.to_owned();
    raw.input.paths = vec![ids.display().to_string()];
    raw.output.dir = out.to_path_buf();
    raw.output.format = format;
    raw.fetch.requests_per_second = 2000.0;
    raw.fetch.burst = 20;
    raw.fetch.concurrency = 32;
    raw.fetch.max_attempts = 8;
    raw.fetch.backoff_initial = Duration::from_millis(50);
    raw.fetch.backoff_max = Duration::from_secs(2);
    Ok(Settings::resolve(
        &raw,
        Some(ApiKey::new(DEMO_KEY.into())),
        |_| "the demo".into(),
    )?)
}

/// Clears a previous demo's output, but never a directory the demo did not make.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let ours = dir.join(MARKER).exists();
        let empty = fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !ours && !empty {
            anyhow::bail!(
                "`{}` exists and was not made by the demo; pass --output with another directory",
                dir.display()
            );
        }
        if ours {
            fs::remove_dir_all(dir)
                .with_context(|| format!("failed to clear `{}`", dir.display()))?;
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    fs::write(
        dir.join(MARKER),
        "made by `genledger demo`; the demo clears this directory when run again\n",
    )
    .with_context(|| format!("failed to write into `{}`", dir.display()))?;
    Ok(())
}

/// IDs as an application would log them: mostly from the past week, a few
/// created this second (the API answers 404 for those at first), some as JSONL
/// request-log lines, a comment and a repeated ID.
fn write_ids(path: &PathBuf, count: u64) -> std::io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut out = BufWriter::new(fs::File::create(path)?);
    writeln!(out, "# generation IDs written by genledger demo")?;
    let mut rng = fastrand::Rng::with_seed(now);
    let mut first = String::new();
    for i in 0..count {
        let created = if i % 50 == 0 {
            now
        } else {
            now - rng.u64(60..7 * 86_400)
        };
        let suffix: String = (0..20).map(|_| rng.alphanumeric()).collect();
        let id = format!("gen-{created}-{suffix}");
        if i % 10 == 3 {
            writeln!(
                out,
                r#"{{"id":"{id}","model":"logged-by-app","status":200}}"#
            )?;
        } else {
            writeln!(out, "{id}")?;
        }
        if i == 0 {
            first = id;
        }
    }
    writeln!(out, "{first}")?;
    out.flush()
}
