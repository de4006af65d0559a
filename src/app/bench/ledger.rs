//! The benchmark's ledger-scale runs: the same export of new IDs into a
//! ledger that already holds a tenth of `--ledger-ids` settled IDs, then
//! all of them, so that admission and commit with 10M settled IDs can be
//! held against 1M; and the ledger's bytes per settled ID once compacted.
//!
//! The ledger is filled through the path `genledger state rebuild` takes
//! (IDs recorded as exported, day by day over 90 days), not by exporting
//! them: 10M exports would take longer than the measurement itself.

use std::fs;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{Sim, export, write_ids};
use crate::layout;
use crate::ledger::{Ledger, Side};
use crate::record::IdStatus;

/// Days the settled IDs' `gen-<unix>-` prefixes span, ending before the
/// days the new IDs come from.
const DAYS: u64 = 90;
/// IDs recorded in one transaction while filling.
const BATCH: usize = 100_000;

/// One row per ledger size: a tenth of `ledger_ids`, then all of them.
pub(super) fn rows(
    exe: &Path,
    dir: &Path,
    ledger_ids: u64,
    new_ids: u64,
) -> anyhow::Result<Vec<String>> {
    let sim = Sim::start(exe, &[])?;
    let out = dir.join("ledger-out");
    let ids = write_ids(dir, new_ids, new_ids + 7)?;
    let mut rows = Vec::new();
    let mut smaller = None;
    for prefilled in [(ledger_ids / 10).max(1), ledger_ids] {
        let _ = fs::remove_dir_all(&out);
        let db = layout::default_ledger_path(&out);
        eprintln!("ledger scale: filling a ledger with {prefilled} settled IDs ...");
        let started = Instant::now();
        fill(&db, &out, prefilled)?;
        let fill_secs = started.elapsed().as_secs_f64();
        eprintln!("ledger scale: exporting {new_ids} new IDs into it ...");
        let r = export(exe, &sim.base_url, &ids, &out, 1_000_000.0, false)?;
        let mut ledger = Ledger::open(&db, &out)?;
        ledger.prune(None, true, false)?;
        let info = ledger.info()?;
        let share = match smaller {
            Some(base) => format!(
                "   {:.0} % of the smaller ledger's",
                100.0 * r.records_per_sec / base
            ),
            None => String::new(),
        };
        smaller.get_or_insert(r.records_per_sec);
        rows.push(format!(
            "ledger {prefilled:>10} IDs before   {:>9.0} records/s   exported {}   peak RSS {:.1} MiB   \
             then {} settled in {:.1} MB: {:.1} bytes/ID (filled in {fill_secs:.0} s){share}",
            r.records_per_sec,
            r.exported,
            r.peak_rss_mib,
            info.settled,
            info.bytes as f64 / 1e6,
            info.bytes as f64 / info.settled.max(1) as f64,
        ));
    }
    let _ = fs::remove_dir_all(&out);
    let _ = fs::remove_file(&ids);
    Ok(rows)
}

/// Records `n` IDs as exported, spread over the [`DAYS`] days before the
/// last four, one day after another (as daily runs would have).
fn fill(db: &Path, out: &Path, n: u64) -> anyhow::Result<()> {
    let mut ledger = Ledger::open(db, out)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let first_day = now / 86_400 * 86_400 - (DAYS + 4) * 86_400;
    let per_day = n.div_ceil(DAYS);
    let mut rng = fastrand::Rng::with_seed(n);
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..n {
        let second = first_day + (i / per_day) * 86_400 + (i % per_day) * 86_399 / per_day;
        batch.push((
            format!("gen-{second}-f{i:09}{:012x}", rng.u64(..) >> 16),
            None,
        ));
        if batch.len() == BATCH || i + 1 == n {
            ledger.restore_ids(&batch, Side::Metadata, IdStatus::Exported, None)?;
            batch.clear();
        }
    }
    Ok(())
}
