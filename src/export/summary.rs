//! The run report: what a run did, printed for people at the end of every run
//! (also after an interrupt) or as JSON for machines.

use std::fmt;
use std::path::PathBuf;

use crate::exit::ExitStatus;
use crate::sink::Totals;
use crate::stop::StopReason;

/// Counts of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub input_lines: u64,
    pub ids: u64,
    pub invalid_lines: u64,
    pub duplicates_skipped: u64,
    /// In the input, but exported by an earlier run.
    pub already_exported: u64,
    /// In the input, but failed in an earlier run (see `--retry-failed`).
    pub previously_failed: u64,
    /// Pending from earlier runs and fetched although the input did not list them.
    pub resumed: u64,
    pub exported: u64,
    pub failed: u64,
    pub pending: u64,
    /// Stored contents written (content export on).
    pub content_exported: u64,
    /// Contents that will not come (403, 404, another 4xx, an unusable answer).
    pub content_failed: u64,
    /// Contents this run set out to fetch but did not finish; the next run
    /// with content export on fetches them.
    pub content_pending: u64,
    pub requests: u64,
    pub rate_limited: u64,
    pub retries: u64,
    /// IDs left to other shards (`--shard`).
    pub other_shards: u64,
    /// IDs dated before `state.retention`: not fetched, listed as failed.
    pub outside_retention: u64,
}

impl Counts {
    /// Whether the run found nothing to do: no ID, no invalid line, no
    /// leftover, no content due, no request.
    pub fn is_idle(&self) -> bool {
        let Counts {
            input_lines: _,
            ids,
            invalid_lines,
            duplicates_skipped,
            already_exported,
            previously_failed,
            resumed,
            exported,
            failed,
            pending,
            content_exported,
            content_failed,
            content_pending,
            requests,
            rate_limited,
            retries,
            other_shards,
            outside_retention,
        } = *self;
        [
            ids,
            invalid_lines,
            duplicates_skipped,
            already_exported,
            previously_failed,
            resumed,
            exported,
            failed,
            pending,
            content_exported,
            content_failed,
            content_pending,
            requests,
            rate_limited,
            retries,
            other_shards,
            outside_retention,
        ]
        .iter()
        .all(|&n| n == 0)
    }
}

/// The request rate: what was configured, where the run ended, and the
/// server's limit as learned (kept in the ledger for the next run).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RateReport {
    pub configured: f64,
    pub current: f64,
    pub learned: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: String,
    /// The process exit code the run ends with (see [`ExitStatus`]).
    pub exit_code: u8,
    #[serde(skip)]
    pub status: ExitStatus,
    pub counts: Counts,
    /// Requests per second.
    pub rate: RateReport,
    pub duration_secs: f64,
    pub records_per_sec: f64,
    pub totals: Totals,
    pub files: Vec<PathBuf>,
    /// Files of the `content` table.
    pub content_files: Vec<PathBuf>,
    /// Files of the `focus` table.
    pub focus_files: Vec<PathBuf>,
    pub failures_file: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    pub stopped: Option<String>,
    /// Peak resident memory of this process, where the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

impl RunReport {
    pub fn exit_status_for(counts: &Counts, stop: Option<&StopReason>) -> ExitStatus {
        match stop {
            Some(StopReason::Refused { .. }) => ExitStatus::Refused,
            Some(StopReason::Unreachable(_)) => ExitStatus::Unreachable,
            Some(StopReason::Interrupted) => ExitStatus::Interrupted,
            Some(StopReason::OutputFailed) => ExitStatus::Error,
            None if counts.failed
                + counts.pending
                + counts.previously_failed
                + counts.content_failed
                + counts.content_pending
                > 0 =>
            {
                ExitStatus::Partial
            }
            None => ExitStatus::Success,
        }
    }
}

/// Peak RSS from `/proc/self/status` (Linux); `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "genledger run {}", self.run_id)?;
        if let Some(stopped) = &self.stopped {
            writeln!(f, "  STOPPED: {stopped}")?;
        }
        self.write_ids(f)?;
        self.write_requests(f)?;
        self.write_money(f)?;
        self.write_files(f)
    }
}

impl RunReport {
    /// What became of the IDs read.
    fn write_ids(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "  IDs read           {:>10}  ({} lines)",
            c.ids, c.input_lines
        )?;
        writeln!(f, "  exported           {:>10}", c.exported)?;
        writeln!(
            f,
            "  failed             {:>10}  (invalid lines {})",
            c.failed, c.invalid_lines
        )?;
        writeln!(
            f,
            "  pending            {:>10}  (retried by the next run)",
            c.pending
        )?;
        if c.content_exported + c.content_failed + c.content_pending > 0 {
            writeln!(
                f,
                "  content exported   {:>10}  (failed {}, pending {})",
                c.content_exported, c.content_failed, c.content_pending
            )?;
        }
        self.write_earlier(f)
    }

    /// What the input offered that this run did not fetch.
    fn write_earlier(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "  already exported   {:>10}  (by earlier runs)",
            c.already_exported
        )?;
        if c.previously_failed > 0 {
            writeln!(
                f,
                "  previously failed  {:>10}  (--retry-failed tries them again)",
                c.previously_failed
            )?;
        }
        if c.resumed > 0 {
            writeln!(
                f,
                "  resumed            {:>10}  (pending from earlier runs)",
                c.resumed
            )?;
        }
        writeln!(f, "  duplicates skipped {:>10}", c.duplicates_skipped)?;
        if c.outside_retention > 0 {
            writeln!(
                f,
                "  outside retention  {:>10}  (older than state.retention; --include-old fetches them)",
                c.outside_retention
            )?;
        }
        if c.other_shards > 0 {
            writeln!(
                f,
                "  other shards       {:>10}  (left to the other --shard processes)",
                c.other_shards
            )?;
        }
        Ok(())
    }

    /// Requests, the rate and the time they took.
    fn write_requests(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "  requests           {:>10}  (429s {}, retries {})",
            c.requests, c.rate_limited, c.retries
        )?;
        let r = &self.rate;
        let learned = r
            .learned
            .map_or_else(|| "none".to_owned(), |l| format!("{l:.1}/s"));
        writeln!(
            f,
            "  request rate       {:>10.1}/s (learned limit {learned}, configured {:.1}/s)",
            r.current, r.configured
        )?;
        writeln!(
            f,
            "  duration           {:>10.2}s ({:.0} records/s)",
            self.duration_secs, self.records_per_sec
        )?;
        Ok(())
    }

    /// The exact cost, and the models that cost the most.
    fn write_money(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  total cost         {:>10} USD (exact)",
            self.totals.total_cost
        )?;
        let mut models: Vec<_> = self.totals.by_model.iter().collect();
        models.sort_by(|a, b| b.1.total_cost.cmp(&a.1.total_cost).then(a.0.cmp(b.0)));
        if !models.is_empty() {
            writeln!(f, "  top models by cost:")?;
            for (model, totals) in models.iter().take(5) {
                writeln!(
                    f,
                    "    {:<40} {:>22} USD  {:>8} records",
                    model,
                    totals.total_cost.to_string(),
                    totals.records
                )?;
            }
        }
        Ok(())
    }

    /// Where the files went.
    fn write_files(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.files.is_empty() {
            writeln!(f, "  data files         {:>10}", self.files.len())?;
            if let Some(first) = self.files.first() {
                let dir = first.parent().and_then(|p| p.parent()).unwrap_or(first);
                writeln!(f, "    under {}", dir.display())?;
            }
        }
        if let Some(first) = self.content_files.first() {
            let dir = first.parent().and_then(|p| p.parent()).unwrap_or(first);
            writeln!(
                f,
                "  content files      {:>10}  (prompts and completions, owner-only)",
                self.content_files.len()
            )?;
            writeln!(f, "    under {}", dir.display())?;
        }
        if let Some(first) = self.focus_files.first() {
            let dir = first.parent().and_then(|p| p.parent()).unwrap_or(first);
            writeln!(
                f,
                "  FOCUS files        {:>10}  (FOCUS 1.2 cost and usage)",
                self.focus_files.len()
            )?;
            writeln!(f, "    under {}", dir.display())?;
        }
        if let Some(path) = &self.failures_file {
            writeln!(f, "  failures           {}", path.display())?;
        }
        if let Some(path) = &self.manifest {
            writeln!(f, "  manifest           {}", path.display())?;
        }
        Ok(())
    }
}
