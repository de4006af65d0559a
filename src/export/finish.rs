//! The end of a run: the manifest written last, the learned rate kept, the
//! run closed in the ledger (as finished, as failed with its error, or
//! forgotten when it found nothing to do), and the report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::Ran;
use super::manifest::{Manifest, RunInfo};
use super::publish::{manifest_published, publish};
use super::setup::RunState;
use super::summary::{Counts, RateReport, RunReport, peak_rss_bytes};
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::layout;
use crate::ledger::DeadRun;
use crate::sink::SinkOutput;
use crate::stop::StopReason;
use crate::timestamp::now_formatted;

/// How a run ended, as recorded.
pub(super) struct Finished {
    status: ExitStatus,
    manifest: Option<PathBuf>,
    stopped: Option<String>,
}

/// Writes the manifest (last, when the run wrote anything), keeps the
/// learned rate and closes the run in the ledger.
pub(super) fn finish(
    settings: &Settings,
    state: &mut RunState,
    ran: &Ran,
    stop: Option<&StopReason>,
) -> anyhow::Result<Finished> {
    let (output, counts, rate) = (&ran.output, ran.counts, ran.rate);
    let stopped = stop.map(describe_stop);
    let status = RunReport::exit_status_for(&counts, stop);
    let nothing_new = output.data_files.is_empty()
        && output.content_files.is_empty()
        && output.failures_file.is_none();
    // Nothing new: no empty files, no manifest; the ledger records the run.
    let manifest = if nothing_new {
        None
    } else {
        Some(write_manifest(
            settings,
            state,
            output,
            counts,
            stopped.clone(),
        )?)
    };
    let finished_at = now_formatted();
    if let Some(learned) = rate.learned {
        state
            .ledger
            .save_learned_rate(settings.api.base_url.as_str(), learned, &finished_at)
            .context("failed to keep the learned rate in the ledger")?;
    }
    let idle = nothing_new && counts.is_idle();
    // A run that found nothing to do (a daemon tick on a quiet queue) leaves
    // no row behind: a 1-second schedule would add 86,400 a day.
    let recorded = if idle {
        state.ledger.forget_run(state.run_no)
    } else {
        state.ledger.finish_run(
            state.run_no,
            &finished_at,
            status.code(),
            manifest.as_deref(),
            None,
        )
    };
    recorded.context("failed to record the run in the ledger")?;
    log_end(&state.run_id, &counts, idle);
    Ok(Finished {
        status,
        manifest,
        stopped,
    })
}

fn log_end(run_id: &str, c: &Counts, idle: bool) {
    if idle {
        tracing::debug!(%run_id, "nothing to do");
    } else {
        tracing::info!(%run_id, exported = c.exported, failed = c.failed, pending = c.pending,
            content_exported = c.content_exported, content_failed = c.content_failed, content_pending = c.content_pending,
            "export finished");
    }
}

/// Writes the run's manifest, after every file it lists is in place (a
/// remote output's failures file uploaded first).
fn write_manifest(
    settings: &Settings,
    state: &RunState,
    output: &SinkOutput,
    counts: Counts,
    stopped: Option<String>,
) -> anyhow::Result<PathBuf> {
    if let Some(file) = &output.failures_file {
        publish(
            state.remote.as_deref(),
            &settings.output.dir,
            &file.path,
            false,
        )?;
    }
    let info = RunInfo {
        run_id: &state.run_id,
        shard: &state.shard,
        out_dir: &settings.output.dir,
        started_at: &state.started_at,
        format: settings.output.format.extension(),
        stopped,
    };
    let path = Manifest::new(info, output, counts)
        .write(&settings.output.dir)
        .context("files already committed are complete, but the run manifest was not written")?;
    publish(state.remote.as_deref(), &settings.output.dir, &path, true)
        .context("files already committed are complete, but the run manifest was not published")?;
    Ok(path)
}

/// Closes a run that ended with an error as such: exit code 2 and the error
/// in the ledger, and a manifest for the files it committed before the
/// error (unless it wrote its own), so the next run does not take it for a
/// run that vanished. Best effort: the error that ended the run is the one
/// reported, and a run that cannot be closed is settled by the next start.
pub(super) fn close_failed(settings: &Settings, state: &mut RunState, error: &anyhow::Error) {
    let message = format!("{error:#}");
    let out = &settings.output.dir;
    let own = layout::manifest_path(out, &state.run_id, &state.shard);
    let remote = state.remote.as_deref();
    let published = manifest_published(remote, out, &state.run_id, &state.shard);
    let manifest = if published.unwrap_or(false) {
        Some(own)
    } else {
        match state.ledger.committed_files(&state.run_id) {
            Ok(files) if !files.is_empty() => {
                let run = DeadRun {
                    run_no: state.run_no,
                    run_id: state.run_id.clone(),
                    started_at: state.started_at.clone(),
                    files,
                };
                let written = Manifest::failed(&run, &state.shard, &message)
                    .write(out)
                    .map_err(anyhow::Error::from)
                    .and_then(|path| publish(remote, out, &path, true).map(|()| path));
                written
                    .map_err(|e| tracing::error!(error = %format!("{e:#}"), "could not write the manifest of the failed run"))
                    .ok()
            }
            _ => None,
        }
    };
    let code = ExitStatus::Error.code();
    let closed = state.ledger.finish_run(
        state.run_no,
        &now_formatted(),
        code,
        manifest.as_deref(),
        Some(&message),
    );
    if let Err(e) = closed {
        tracing::error!(error = %e, "could not record the failed run in the ledger");
    }
}

pub(super) fn report(
    run_id: String,
    finished: Finished,
    counts: Counts,
    rate: RateReport,
    duration: Duration,
    output: SinkOutput,
) -> RunReport {
    let secs = duration.as_secs_f64();
    RunReport {
        run_id,
        exit_code: finished.status.code(),
        status: finished.status,
        counts,
        rate,
        duration_secs: secs,
        records_per_sec: if secs > 0.0 {
            counts.exported as f64 / secs
        } else {
            0.0
        },
        totals: output.totals,
        files: output.data_files.into_iter().map(|f| f.file.path).collect(),
        content_files: output
            .content_files
            .into_iter()
            .map(|f| f.file.path)
            .collect(),
        focus_files: output
            .focus_files
            .into_iter()
            .map(|f| f.file.path)
            .collect(),
        failures_file: output.failures_file.map(|f| f.path),
        manifest: finished.manifest,
        stopped: finished.stopped,
        peak_rss_bytes: peak_rss_bytes(),
    }
}

pub(super) fn describe_stop(reason: &StopReason) -> String {
    match reason {
        StopReason::Refused {
            status: 401,
            message,
        } => format!(
            "OpenRouter refused the API key (401: missing, wrong or disabled key): {message}; nothing more was sent"
        ),
        StopReason::Refused {
            status: 402,
            message,
        } => format!(
            "OpenRouter refused the request for lack of credits (402: add credits to the account): {message}; nothing more was sent"
        ),
        StopReason::Refused { status, message } => {
            format!("OpenRouter refused the run ({status}): {message}")
        }
        StopReason::Unreachable(fault) => format!(
            "cannot reach the API: {fault}; nothing more was sent, and the IDs not exported stay pending for the next run"
        ),
        StopReason::Interrupted => "interrupted; work committed so far is intact".into(),
        StopReason::OutputFailed => {
            "stopped: output or input failed; files already renamed into place are complete".into()
        }
    }
}
