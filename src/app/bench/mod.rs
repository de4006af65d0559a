//! `genledger bench`: runs the release binary against the simulator, each in its
//! own process on this machine, and prints throughput, peak memory, files per
//! partition when the input cycles through the days, memory with large
//! prompts, speed and size with millions of IDs already in the ledger, and
//! the rate table (behaviour under each kind of rate limit).

mod content;
mod cycle;
mod ledger;
mod rate;

use std::fs;
use std::io::{BufWriter, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::BenchArgs;
use crate::exit::ExitStatus;

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitStatus> {
    // The measurements drive child processes synchronously; keep them off the runtime.
    tokio::task::spawn_blocking(move || measure(&args))
        .await
        .context("benchmark task failed")?
}

fn measure(args: &BenchArgs) -> anyhow::Result<ExitStatus> {
    let exe = std::env::current_exe().context("cannot find the genledger executable")?;
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("failed to create `{}`", args.dir.display()))?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; run `cargo run --release -- bench` for real figures"
        );
    }
    let mut rows = Vec::new();
    if !args.skip_throughput {
        let small = (args.ids / 10).max(1);
        let sim = Sim::start(&exe, &[])?;
        for n in [small, args.ids] {
            let ids = write_ids(&args.dir, n, n)?;
            eprintln!("throughput: {n} IDs, no limit, no latency ...");
            let out = args.dir.join("out");
            let r = export(&exe, &sim.base_url, &ids, &out, 1_000_000.0, true)?;
            rows.push(format!(
                "throughput {n:>9} IDs   {:>9.0} records/s   exported {}   peak RSS {:.1} MiB",
                r.records_per_sec, r.exported, r.peak_rss_mib
            ));
        }
    }
    if !args.skip_cycle {
        rows.extend(cycle::rows(&exe, &args.dir, args.cycle_ids)?);
    }
    if !args.skip_content {
        rows.extend(content::rows(&exe, &args.dir, args.content_ids)?);
    }
    if !args.skip_ledger {
        rows.extend(ledger::rows(&exe, &args.dir, args.ledger_ids, args.ids)?);
    }
    if !args.skip_rates {
        rows.extend(rate::table(&exe, &args.dir, args.rate, args.rate_secs)?);
    }
    let _ = fs::remove_dir_all(&args.dir);
    println!(
        "genledger bench ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for row in rows {
        println!("  {row}");
    }
    Ok(ExitStatus::Success)
}

/// The parts of an export's JSON summary the benchmark reads.
struct Figures {
    exported: u64,
    content_exported: u64,
    learned: Option<f64>,
    requests: u64,
    rate_limited: u64,
    duration_secs: f64,
    records_per_sec: f64,
    peak_rss_mib: f64,
}

/// Runs one export of `ids` at `rps`; `fresh` starts from an empty output
/// and state, else the run continues the ledger (and its learned rate).
fn export(
    exe: &Path,
    base_url: &str,
    ids: &Path,
    out: &Path,
    rps: f64,
    fresh: bool,
) -> anyhow::Result<Figures> {
    export_with(exe, base_url, ids, out, rps, fresh, &[])
}

/// [`export`] with more `export` flags.
fn export_with(
    exe: &Path,
    base_url: &str,
    ids: &Path,
    out: &Path,
    rps: f64,
    fresh: bool,
    flags: &[&str],
) -> anyhow::Result<Figures> {
    if fresh {
        let _ = fs::remove_dir_all(out);
    }
    let output = Command::new(exe)
        .args([
            "-q",
            "export",
            "--summary",
            "json",
            "--no-progress",
            "--concurrency",
            "64",
        ])
        .arg("--input")
        .arg(ids)
        .arg("--output")
        .arg(out)
        .args(["--base-url", base_url, "--rps", &rps.to_string()])
        .args(flags)
        .env("OPENROUTER_API_KEY", "bench-key")
        .env("GENLEDGER_FETCH__BURST", "5")
        .env_remove("GENLEDGER_CONFIG")
        .stderr(Stdio::inherit())
        .output()
        .context("failed to run the export")?;
    let summary: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("export printed no JSON summary ({})", output.status))?;
    let counts = &summary["counts"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    Ok(Figures {
        exported: counts["exported"].as_u64().unwrap_or(0),
        content_exported: counts["content_exported"].as_u64().unwrap_or(0),
        learned: summary["rate"]["learned"].as_f64(),
        requests: counts["requests"].as_u64().unwrap_or(0),
        rate_limited: counts["rate_limited"].as_u64().unwrap_or(0),
        duration_secs: num(&summary["duration_secs"]),
        records_per_sec: num(&summary["records_per_sec"]),
        peak_rss_mib: num(&summary["peak_rss_bytes"]) / (1024.0 * 1024.0),
    })
}

/// A simulator child process, killed when dropped.
struct Sim {
    child: Child,
    listen: String,
    base_url: String,
}

impl Sim {
    fn start(exe: &Path, extra: &[&str]) -> anyhow::Result<Sim> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(exe)
            .args([
                "-q",
                "simulate",
                "--listen",
                &listen,
                "--track-ids",
                "false",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .context("failed to start the simulator")?;
        let sim = Sim {
            child,
            base_url: format!("http://{listen}/api/v1"),
            listen,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&sim.listen).is_err() {
            if Instant::now() > deadline {
                bail!("the simulator did not start listening on {}", sim.listen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(sim)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` distinct IDs created over the last three days; another `seed` gives
/// other IDs.
fn write_ids(dir: &Path, n: u64, seed: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("ids-{n}-{seed}.txt"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut out = BufWriter::new(fs::File::create(&path)?);
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..n {
        let created = now - 600 - rng.u64(0..3 * 86_400);
        writeln!(out, "gen-{created}-{i:08}{:012x}", rng.u64(..) >> 16)?;
    }
    out.flush()?;
    Ok(path)
}
