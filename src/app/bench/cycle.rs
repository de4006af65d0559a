//! The benchmark's input-order runs: the same number of IDs over 90 UTC days,
//! in time order and cycling through the days (as a merge of per-service
//! logs or a list sorted by user comes), alternating over a few rounds, each
//! with records/s, peak RSS and the most files any partition got, then the
//! medians.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::{Sim, export};

/// Days the IDs' `gen-<unix>-` seconds (so their `created_at`) span.
const DAYS: u64 = 90;

/// Rounds of the two orders, alternating, so a drift of the machine's speed
/// falls on both: on a shared VM one run's speed moves by up to a fifth.
const ROUNDS: usize = 3;

/// One row per run, the orders alternating, then the medians: the cycling
/// speed as a share of the time-ordered, and the highest peak RSS.
pub(super) fn rows(exe: &Path, dir: &Path, n: u64) -> anyhow::Result<Vec<String>> {
    let sim = Sim::start(exe, &[])?;
    let out = dir.join("cycle-out");
    let inputs = [write_day_ids(dir, n, false)?, write_day_ids(dir, n, true)?];
    let mut rows = Vec::new();
    // Records/s and peak RSS per order: time-ordered, cycling.
    let mut runs: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=ROUNDS {
        for (cycling, ids) in inputs.iter().enumerate() {
            let order = ORDERS[cycling];
            eprintln!("{DAYS} days: {n} IDs, {order}, round {round} of {ROUNDS} ...");
            let r = export(exe, &sim.base_url, ids, &out, 1_000_000.0, true)?;
            let (partitions, most) = files_per_partition(&out.join("generations"))?;
            runs[cycling].push((r.records_per_sec, r.peak_rss_mib));
            rows.push(format!(
                "{DAYS} days {order:<12} {n:>9} IDs   {:>9.0} records/s   exported {}   peak RSS {:.1} MiB   \
                 at most {most} files in each of {partitions} partitions",
                r.records_per_sec, r.exported, r.peak_rss_mib
            ));
        }
    }
    let [ordered, cycling] = runs.map(|order| {
        let speed = median(order.iter().map(|r| r.0).collect());
        let rss = order.iter().map(|r| r.1).fold(0.0, f64::max);
        (speed, rss)
    });
    rows.push(format!(
        "{DAYS} days median of {ROUNDS}: time-ordered {:.0} records/s, cycling {:.0} records/s \
         ({:.0} % of time-ordered); highest peak RSS {:.1} / {:.1} MiB",
        ordered.0,
        cycling.0,
        100.0 * cycling.0 / ordered.0,
        ordered.1,
        cycling.1
    ));
    for ids in &inputs {
        let _ = fs::remove_file(ids);
    }
    let _ = fs::remove_dir_all(&out);
    Ok(rows)
}

const ORDERS: [&str; 2] = ["time-ordered", "cycling"];

/// The middle value (the lower of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// `n` distinct IDs over the last [`DAYS`] UTC days (yesterday the newest):
/// in time order, or cycling through the days, one ID per day in turn.
fn write_day_ids(dir: &Path, n: u64, cycling: bool) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!(
        "ids-{n}-{DAYS}-days-{}.txt",
        ORDERS[usize::from(cycling)]
    ));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let first_day = now / 86_400 * 86_400 - DAYS * 86_400;
    let per_day = n.div_ceil(DAYS);
    let mut out = BufWriter::new(fs::File::create(&path)?);
    let mut rng = fastrand::Rng::with_seed(n);
    for i in 0..n {
        let (day, k) = if cycling {
            (i % DAYS, i / DAYS)
        } else {
            (i / per_day, i % per_day)
        };
        // Within a day the seconds rise with `k`.
        let second = first_day + day * 86_400 + k * 86_399 / per_day;
        writeln!(out, "gen-{second}-{i:08}{:012x}", rng.u64(..) >> 16)?;
    }
    out.flush()?;
    Ok(path)
}

/// The `date=` partitions under `table_dir`, and the most data files any holds.
fn files_per_partition(table_dir: &Path) -> anyhow::Result<(usize, usize)> {
    let read = |dir: &Path| {
        fs::read_dir(dir).with_context(|| format!("failed to read `{}`", dir.display()))
    };
    let (mut partitions, mut most) = (0, 0);
    for partition in read(table_dir)? {
        let files = read(&partition?.path())?
            .filter_map(Result::ok)
            .filter(|f| f.file_name().to_string_lossy().starts_with("part-"))
            .count();
        partitions += 1;
        most = most.max(files);
    }
    Ok((partitions, most))
}
