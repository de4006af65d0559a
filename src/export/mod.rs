//! One export run: the source streams IDs, the dispatcher fans them out to fetch
//! tasks (bounded), and one sink thread owns every output file.
//!
//! ```text
//! IdSource ──ids──▶ dispatcher ──spawn──▶ fetch tasks ──outcomes──▶ sink thread ──▶ files, manifest
//!  (blocking)         (bounded)          (pacer + client)            (owns writers)
//! ```
//!
//! With content export on, a fetch task that got a metadata record hands it to
//! the sink first and then fetches the content through the same client (one
//! pacer, one connection limit, one 429 pause); IDs exported by earlier runs
//! whose content is still due come from the source as content-only items.
//!
//! [`setup`] holds what every run needs first (checks, lock, reconciliation),
//! shared by `export` and each daemon tick; [`dispatch`] the fetch tasks;
//! [`drain`] the sink thread; [`manifest`] and [`summary`] what a run reports.

mod dispatch;
mod drain;
pub mod guard;
mod live;
pub mod manifest;
mod setup;
pub mod summary;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

pub use setup::Session;
pub use source::{Carried, QueueFiles};

use crate::client::Client;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::ledger::{Checkpointer, Ledger};
use crate::limiter::Pacer;
use crate::progress::Progress;
use crate::sink::{Sink, SinkError, SinkOutput};
use crate::source::{self, IdSource, ReadMode, SourceCounts, SourceError};
use crate::stop::{Stop, StopReason};
use crate::timestamp::now_formatted;
use dispatch::{Fanout, dispatch};
use drain::drain_into_sink;
use live::{LiveCounts, counts, snapshot, spawn_ticker};
use manifest::{Manifest, RunInfo};
use setup::RunState;
use summary::{Counts, RateReport, RunReport, peak_rss_bytes};

/// IDs queued between the source and the dispatcher, in chunks.
const SOURCE_QUEUE: usize = 1024;
/// Outcomes queued between the fetch tasks and the sink.
const SINK_QUEUE: usize = 2048;

/// How this run reads and retries, beyond the configuration.
#[derive(Default)]
pub struct RunOptions {
    /// Re-queue IDs that earlier runs recorded as failed.
    pub retry_failed: bool,
    /// Follow the input: queue files are read from their saved offsets, and
    /// invalid stdin lines carried over from between runs are recorded.
    pub follow: Option<Follow>,
}

/// Inputs that grow between runs (see [`RunOptions::follow`]).
#[derive(Clone)]
pub struct Follow {
    pub queues: Arc<std::sync::Mutex<QueueFiles>>,
    pub carried: Carried,
}

/// Runs one export over `settings.inputs` (and whatever earlier runs left
/// pending) in a session of its own.
pub async fn run(
    settings: &Settings,
    options: &RunOptions,
    stop: Arc<Stop>,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<RunReport> {
    let session = Session::open(settings)?;
    run_in(&session, settings, options, stop, progress).await
}

/// Runs one export in `session`, which may outlive it (the daemon's ticks).
pub async fn run_in(
    session: &Session,
    settings: &Settings,
    options: &RunOptions,
    stop: Arc<Stop>,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let mut state = session.begin_run(settings, options.retry_failed)?;
    let (requests, pacer) = (session.requests.clone(), session.pacer.clone());
    let requests_before = requests.snapshot();
    let client = Client::try_new(
        &settings.api,
        &settings.fetch,
        pacer.clone(),
        stop.clone(),
        requests.clone(),
        state.run_id.clone(),
    )
    .context("failed to set up the API client")?;
    let live = Arc::new(LiveCounts::default());
    let ticker = spawn_ticker(
        live.clone(),
        requests.clone(),
        pacer.clone(),
        progress.clone(),
    );
    let run = (state.run_no, state.run_id.as_str(), state.shard.as_str());
    let mode = read_mode(settings, options);
    let result = pipeline(settings, run, mode, Arc::new(client), &stop, &live).await;
    ticker.abort();
    let _ = ticker.await;
    let (source_counts, output) = result?;
    progress.update(&snapshot(&live, &requests, &pacer));
    progress.finish();
    let counts = counts(
        source_counts,
        &live,
        &requests.snapshot().since(&requests_before),
    );
    let rate = rate_report(settings, &pacer);
    let stopped = stop.reason();
    let finished = finish(
        settings,
        &mut state,
        &output,
        counts,
        rate,
        stopped.as_ref(),
    )?;
    Ok(report(
        state.run_id,
        finished,
        counts,
        rate,
        started.elapsed(),
        output,
    ))
}

/// How the source reads: the shard, queue files followed or not, content or not.
fn read_mode(settings: &Settings, options: &RunOptions) -> ReadMode {
    ReadMode {
        shard: settings.shard,
        queues: options.follow.as_ref().map(|f| f.queues.clone()),
        carried: options.follow.as_ref().map(|f| f.carried.clone()),
        content: settings.content,
    }
}

fn rate_report(settings: &Settings, pacer: &Pacer) -> RateReport {
    RateReport {
        configured: settings.fetch.requests_per_second,
        current: pacer.rate(),
        learned: pacer.learned(),
    }
}

/// How a run ended, as recorded.
struct Finished {
    status: ExitStatus,
    manifest: Option<PathBuf>,
    stopped: Option<String>,
}

/// Writes the manifest (last, when the run wrote anything), keeps the
/// learned rate and closes the run in the ledger.
fn finish(
    settings: &Settings,
    state: &mut RunState,
    output: &SinkOutput,
    counts: Counts,
    rate: RateReport,
    stop: Option<&StopReason>,
) -> anyhow::Result<Finished> {
    let stopped = stop.map(describe_stop);
    let status = RunReport::exit_status_for(&counts, stop);
    let nothing_new = output.data_files.is_empty()
        && output.content_files.is_empty()
        && output.failures_file.is_none();
    // Nothing new: no empty files, no manifest; the ledger records the run.
    let manifest = if nothing_new {
        None
    } else {
        let info = RunInfo {
            run_id: &state.run_id,
            shard: &state.shard,
            out_dir: &settings.output.dir,
            started_at: &state.started_at,
            format: settings.output.format.extension(),
            stopped: stopped.clone(),
        };
        let path = Manifest::new(info, output, counts)
            .write(&settings.output.dir)
            .context(
                "files already committed are complete, but the run manifest was not written",
            )?;
        Some(path)
    };
    let finished_at = now_formatted();
    if let Some(learned) = rate.learned {
        state
            .ledger
            .save_learned_rate(settings.api.base_url.as_str(), learned, &finished_at)
            .context("failed to keep the learned rate in the ledger")?;
    }
    state
        .ledger
        .finish_run(
            state.run_no,
            &finished_at,
            status.code(),
            manifest.as_deref(),
        )
        .context("failed to record the run in the ledger")?;
    let c = &counts;
    tracing::info!(run_id = %state.run_id, exported = c.exported, failed = c.failed, pending = c.pending,
        content_exported = c.content_exported, content_failed = c.content_failed, content_pending = c.content_pending,
        "export finished");
    Ok(Finished {
        status,
        manifest,
        stopped,
    })
}

/// Source thread → dispatcher → fetch tasks → sink thread, until the input
/// and the leftovers are done or the run stops.
async fn pipeline(
    settings: &Settings,
    (run_no, run_id, shard): (i64, &str, &str),
    mode: ReadMode,
    client: Arc<Client>,
    stop: &Arc<Stop>,
    live: &Arc<LiveCounts>,
) -> anyhow::Result<(SourceCounts, SinkOutput)> {
    let out_dir = &settings.output.dir;
    let _checkpointer = Checkpointer::start(&settings.state_path, out_dir)?;
    let (source_tx, source_rx) = mpsc::channel(SOURCE_QUEUE / source::CHUNK);
    let source_ledger = Ledger::open_for_admission(&settings.state_path, out_dir)?;
    source_ledger.leave_checkpoints_to_background()?;
    let source = IdSource::new(settings.inputs.clone(), source_ledger, run_no, mode);
    let source_task = tokio::task::spawn_blocking(move || source.run(source_tx));

    let (sink_tx, sink_rx) = mpsc::channel(SINK_QUEUE);
    let sink_ledger = Ledger::open(&settings.state_path, out_dir)?;
    sink_ledger.leave_checkpoints_to_background()?;
    let sink = Sink::new(&settings.output, run_id, shard, sink_ledger);
    let (sink_stop, sink_live) = (stop.clone(), live.clone());
    let sink_thread = std::thread::Builder::new()
        .name("genledger-sink".into())
        .spawn(move || drain_into_sink(sink, sink_rx, &sink_live, &sink_stop))
        .context("failed to start the sink thread")?;

    let fanout = Fanout {
        client,
        sink: sink_tx,
        live: live.clone(),
    };
    // On a worker thread, not the thread that waits for the run: each finished
    // fetch wakes the dispatcher, and waking a worker that is already running
    // costs no system call, while waking the waiting thread costs two.
    let dispatcher = tokio::spawn(dispatch(
        source_rx,
        fanout,
        stop.clone(),
        settings.fetch.concurrency,
    ));
    // Dropping the run (a daemon giving up on a tick) stops the dispatcher
    // and its fetches, as it would if the dispatcher ran in place.
    let _abort = AbortOnDrop(dispatcher.abort_handle());
    let dispatched = dispatcher.await;
    join_stages(source_task.await, sink_thread.join(), dispatched.is_ok())
}

type SourceJoin = Result<Result<SourceCounts, SourceError>, tokio::task::JoinError>;
type SinkJoin = std::thread::Result<Result<SinkOutput, SinkError>>;

/// Gathers the stages' results once the dispatcher is done; the sink's
/// error comes first, since data is at risk.
fn join_stages(
    source_result: SourceJoin,
    sink_result: SinkJoin,
    dispatched: bool,
) -> anyhow::Result<(SourceCounts, SinkOutput)> {
    let output = match sink_result {
        Ok(result) => result.context(
            "output failed, so the run stopped; files already committed are complete and the other IDs stay pending",
        )?,
        Err(_) => anyhow::bail!("the sink thread panicked; files already committed are complete"),
    };
    if !dispatched {
        anyhow::bail!(
            "the dispatcher panicked; files already committed are complete and unfinished IDs stay pending"
        );
    }
    let source_counts = match source_result {
        Ok(Ok(counts)) => counts,
        Ok(Err(e)) => {
            return Err(e)
                .context("failed to read the input; files already committed are complete");
        }
        Err(e) => anyhow::bail!("the input reader failed: {e}"),
    };
    Ok((source_counts, output))
}

fn report(
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
        failures_file: output.failures_file.map(|f| f.path),
        manifest: finished.manifest,
        stopped: finished.stopped,
        peak_rss_bytes: peak_rss_bytes(),
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn describe_stop(reason: &StopReason) -> String {
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
