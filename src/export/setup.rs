//! What every run needs before it reads an ID, whoever starts it (`export`
//! once, or the daemon on each tick): the requirements checked before any
//! state is touched, the state lock, the ledger settled after a dead run
//! (its manifest and failures file written), and the run recorded.

use std::sync::Arc;

use anyhow::Context;

use super::manifest::Manifest;
use super::publish::{manifest_published, publish};
use super::{failures, guard};
use crate::client::RequestCounters;
use crate::config::{Input, Settings};
use crate::layout;
use crate::ledger::{Ledger, Pruned, Reconciled, StateLock};
use crate::limiter::Pacer;
use crate::objstore::Remote;
use crate::timestamp::now_formatted;

/// What outlives one run: the state lock, the request counters and the
/// pacer (with the rate it learned). The daemon keeps one for all its ticks.
pub struct Session {
    _lock: StateLock,
    /// The bucket, for a remote output.
    pub(super) remote: Option<Arc<Remote>>,
    pub(super) requests: Arc<RequestCounters>,
    pub(super) pacer: Arc<Pacer>,
}

/// The state one run holds: its ledger entry and its identity.
pub(super) struct RunState {
    pub ledger: Ledger,
    pub run_no: i64,
    pub run_id: String,
    pub shard: String,
    pub started_at: String,
    pub remote: Option<Arc<Remote>>,
}

impl Session {
    /// Checks what a run requires (input, an API key), then creates the output
    /// directory and takes the state lock. Nothing is written before the
    /// checks pass, so a run refused here leaves no trace in the ledger.
    pub fn open(settings: &Settings) -> anyhow::Result<Session> {
        if settings.inputs.is_empty() {
            anyhow::bail!("no input: give `--input PATH` (or `-` for stdin) or set `input.paths`");
        }
        if settings.api.key.is_none() {
            anyhow::bail!(
                "no API key: set the environment variable `OPENROUTER_API_KEY` or `api.key_file` in the configuration"
            );
        }
        settings.check_paths()?;
        let remote = match &settings.output.remote {
            Some(url) => Some(Arc::new(
                Remote::connect(url)
                    .context("cannot use the output; nothing was fetched or written")?,
            )),
            None => None,
        };
        let out_dir = &settings.output.dir;
        std::fs::create_dir_all(out_dir).with_context(|| {
            format!("failed to create output directory `{}`", out_dir.display())
        })?;
        let lock = StateLock::acquire(&settings.state_path)?;
        let ledger = Ledger::open(&settings.state_path, out_dir)
            .context("cannot use the state ledger; nothing was fetched or written")?;
        guard::check_ledger_knows_output(
            &ledger,
            &settings.state_path,
            out_dir,
            remote.as_deref(),
            &settings.shard.label(),
        )?;
        let pacer = Pacer::new(
            settings.fetch.requests_per_second,
            settings.fetch.burst,
            learned_rate(&ledger, settings),
        );
        Ok(Session {
            _lock: lock,
            remote,
            requests: Arc::new(RequestCounters::default()),
            pacer: Arc::new(pacer),
        })
    }

    /// The counters of every request this session sent.
    pub fn requests(&self) -> &Arc<RequestCounters> {
        &self.requests
    }

    /// The pacer every run of this session shares.
    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }

    /// The ledger, publishing to the session's bucket if the output is remote.
    fn open_ledger(&self, settings: &Settings) -> anyhow::Result<Ledger> {
        let mut ledger = Ledger::open(&settings.state_path, &settings.output.dir)
            .context("cannot use the state ledger; nothing was fetched or written")?;
        if let Some(remote) = &self.remote {
            ledger.set_remote(remote.clone());
        }
        Ok(ledger)
    }

    /// Opens the ledger, settles what a dead run left (writing the manifests
    /// it never wrote), and records this run's start.
    pub(super) fn begin_run(
        &self,
        settings: &Settings,
        retry_failed: bool,
        run_id: String,
        quiet_start: bool,
    ) -> anyhow::Result<RunState> {
        let out_dir = &settings.output.dir;
        let mut ledger = self.open_ledger(settings)?;
        let shard = settings.shard.label();
        let reconciled = ledger
            .reconcile()
            .context("failed to reconcile the output with the ledger")?;
        close_dead_runs(&mut ledger, settings, self.remote.as_deref(), &reconciled)?;
        if reconciled != Reconciled::default() {
            tracing::warn!(
                committed = reconciled.committed,
                discarded = reconciled.discarded,
                strays = reconciled.strays,
                dead_runs = reconciled.dead_runs.len(),
                "settled what an earlier run left unfinished"
            );
        }
        let pruned = ledger
            .prune(first_kept_day(settings), false, false)
            .context("failed to keep the ledger small (retention, compaction)")?;
        if pruned != Pruned::default() {
            tracing::info!(
                days_dropped = pruned.days_dropped,
                ids_dropped = pruned.ids_dropped,
                days_compacted = pruned.days_compacted,
                "ledger upkeep"
            );
        }
        if retry_failed {
            let (requeued, content) = ledger.requeue_failed()?;
            tracing::info!(
                requeued,
                content,
                "failed IDs (and failed contents) re-queued"
            );
        }
        let started_at = now_formatted();
        let run_no = ledger.begin_run(&run_id, &shard, &started_at)?;
        if quiet_start {
            tracing::debug!(%run_id, output = %out_dir.display(), "export started");
        } else {
            tracing::info!(%run_id, output = %out_dir.display(), "export started");
        }
        Ok(RunState {
            ledger,
            run_no,
            run_id,
            shard,
            started_at,
            remote: self.remote.clone(),
        })
    }
}

/// Writes, for each run that died before its own manifest, its failures
/// file from the rows the ledger kept, then a manifest listing that file and
/// the files it committed (so every committed file is named by some
/// manifest), and closes it in the ledger. Killed again half-way, the next
/// start does the same again: both files are written whole or not at all.
/// A remote output's manifest may be published already (the run died
/// after uploading it): then it stands, and the run is only closed.
fn close_dead_runs(
    ledger: &mut Ledger,
    settings: &Settings,
    remote: Option<&Remote>,
    reconciled: &Reconciled,
) -> anyhow::Result<()> {
    let (out_dir, shard) = (&settings.output.dir, &settings.shard.label());
    for run in &reconciled.dead_runs {
        if remote.is_some() && manifest_published(remote, out_dir, &run.run_id, shard)? {
            // Killed between its upload and the removal of the local copies.
            let manifest = layout::manifest_path(out_dir, &run.run_id, shard);
            let _ = std::fs::remove_file(&manifest);
            let _ = std::fs::remove_file(layout::failures_path(out_dir, &run.run_id, shard));
            ledger.close_dead_run(run, &now_formatted(), Some(&manifest))?;
            continue;
        }
        let failures = failures::write_dead_run_file(ledger, out_dir, run, shard)
            .context("failed to write the failures file of a run that died")?;
        if let Some((file, _)) = &failures {
            publish(remote, out_dir, &file.path, false)?;
        }
        let manifest = if run.files.is_empty() && failures.is_none() {
            None
        } else {
            let mut manifest = Manifest::recovered(run, shard);
            if let Some((file, rows)) = &failures {
                tracing::info!(run_id = %run.run_id, rows, path = %file.path.display(), "wrote the failures file of a run that died");
                manifest = manifest.with_failures(out_dir, file, *rows);
            }
            let path = manifest
                .write(out_dir)
                .context("failed to write the manifest of a run that died")?;
            publish(remote, out_dir, &path, true)?;
            Some(path)
        };
        ledger.close_dead_run(run, &now_formatted(), manifest.as_deref())?;
    }
    Ok(())
}

/// The rate an earlier run learned for this API, if the ledger keeps one; a
/// ledger that cannot say is no reason to stop (the run learns afresh).
fn learned_rate(ledger: &Ledger, settings: &Settings) -> Option<f64> {
    let api = settings.api.base_url.as_str();
    match ledger.learned_rate(api) {
        Ok(rate) => {
            if let Some(rate) = rate {
                tracing::info!(rate, "starting from the rate the API last accepted");
            }
            rate
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the learned rate; starting from the configured one");
            None
        }
    }
}

/// Checks what a run needs that can change between runs: its input files
/// (when not followed: a followed queue file may appear later) and the
/// output's table directories.
pub(super) fn check_run(settings: &Settings, follow: bool) -> anyhow::Result<()> {
    if !follow {
        for input in &settings.inputs {
            if let Input::File(path) = input {
                std::fs::File::open(path)
                    .with_context(|| format!("cannot read the input file `{}`", path.display()))?;
            }
        }
    }
    for dir in layout::WRITTEN_DIRS {
        let path = settings.output.dir.join(dir);
        if path.exists() && !path.is_dir() {
            anyhow::bail!(
                "`{}` is a file, not a directory: genledger writes its `{dir}` files there",
                path.display()
            );
        }
    }
    Ok(())
}

/// The first day (since the epoch, UTC) `state.retention` keeps.
pub fn first_kept_day(settings: &Settings) -> Option<i64> {
    let retention = settings.retention?;
    let now = chrono::Utc::now().timestamp();
    let start = now - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX / 2);
    Some(start.div_euclid(86_400))
}

/// `20261121T213000Z-3fa9`: sortable by start time, unique per process.
pub(super) fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        fastrand::u16(..)
    )
}
