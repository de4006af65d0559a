//! The benchmark's input-order runs: the same number of IDs over 90 UTC days,
//! once in time order and once cycling through the days (as a merge of
//! per-service logs or a list sorted by user comes), each with records/s,
//! peak RSS and the most files any partition got.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::{Sim, export};

/// Days the IDs' `gen-<unix>-` seconds (so their `created_at`) span.
const DAYS: u64 = 90;

/// One row per order: time-ordered first, then cycling, with its speed as a
/// share of the time-ordered run's.
pub(super) fn rows(exe: &Path, dir: &Path, n: u64) -> anyhow::Result<Vec<String>> {
    let sim = Sim::start(exe, &[])?;
    let out = dir.join("cycle-out");
    let mut rows = Vec::new();
    let mut time_ordered = None;
    for cycling in [false, true] {
        let order = if cycling { "cycling" } else { "time-ordered" };
        let ids = write_day_ids(dir, n, cycling)?;
        eprintln!("{DAYS} days: {n} IDs, {order} ...");
        let r = export(exe, &sim.base_url, &ids, &out, 1_000_000.0, true)?;
        let (partitions, most) = files_per_partition(&out.join("generations"))?;
        let share = match time_ordered {
            Some(base) => format!(
                "   {:.0} % of time-ordered",
                100.0 * r.records_per_sec / base
            ),
            None => String::new(),
        };
        time_ordered.get_or_insert(r.records_per_sec);
        rows.push(format!(
            "{DAYS} days {order:<12} {n:>9} IDs   {:>9.0} records/s   exported {}   peak RSS {:.1} MiB   \
             at most {most} files in each of {partitions} partitions{share}",
            r.records_per_sec, r.exported, r.peak_rss_mib
        ));
        let _ = fs::remove_file(&ids);
    }
    let _ = fs::remove_dir_all(&out);
    Ok(rows)
}

/// `n` distinct IDs over the last [`DAYS`] UTC days (yesterday the newest):
/// in time order, or cycling through the days, one ID per day in turn.
fn write_day_ids(dir: &Path, n: u64, cycling: bool) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("ids-{n}-{DAYS}-days.txt"));
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
