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

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::client::{Client, Failure, Fetched, Reason, RequestCounters, RequestTotals};
use crate::config::Settings;
use crate::ledger::{Checkpointer, IdStatus, Ledger, Reconciled, StateLock};
use crate::limiter::Pacer;
use crate::manifest::{Manifest, RunInfo};
use crate::progress::{Progress, Snapshot};
use crate::queue::QueueFiles;
use crate::record::{Content, Generation};
use crate::sink::{FailureRow, Sink, SinkError, SinkOutput, format_timestamp};
use crate::source::{Carried, IdSource, ReadMode, SourceCounts, SourceItem};
use crate::stop::{Stop, StopReason};
use crate::summary::{Counts, RateReport, RunReport, peak_rss_bytes};

/// IDs queued between the source and the dispatcher, in chunks.
const SOURCE_QUEUE: usize = 1024;
/// Outcomes queued between the fetch tasks and the sink.
const SINK_QUEUE: usize = 2048;
/// How long the sink thread waits for more outcomes before it sleeps on the queue.
const SINK_NAP: Duration = Duration::from_millis(2);

/// What the sink thread receives: records with their IDs' numbers in the
/// ledger, by which the sink links them to their files. Failure rows of
/// content carry a content reason ([`Reason::is_content`]).
enum Outcome {
    Exported(Box<Generation>, i64),
    Content(Box<Content>, i64),
    Failed(FailureRow),
    Pending(FailureRow),
}

/// Live counts shared by the sink thread, the fetch tasks and the progress ticker.
#[derive(Default)]
struct LiveCounts {
    exported: AtomicU64,
    failed: AtomicU64,
    pending: AtomicU64,
    /// Content fetches begun for records fetched in this run.
    content_wanted: AtomicU64,
    content_exported: AtomicU64,
    content_failed: AtomicU64,
}

/// How this process runs an export, beyond the configuration.
#[derive(Default)]
pub struct RunOptions {
    /// Re-queue IDs that earlier runs recorded as failed.
    pub retry_failed: bool,
    /// Daemon mode: queue files read from their saved offsets, and invalid
    /// stdin lines carried over from between ticks.
    pub queues: Option<Arc<Mutex<QueueFiles>>>,
    pub carried: Option<Carried>,
    /// What outlives one run in the daemon: the held lock, the request
    /// counters and the adapted rate.
    pub daemon: Option<DaemonShared>,
}

/// State the daemon keeps across ticks.
#[derive(Clone)]
pub struct DaemonShared {
    pub requests: Arc<RequestCounters>,
    pub pacer: Arc<Pacer>,
}

/// The state a run holds: the lock, its ledger entry, its identity.
struct RunState {
    /// `None` when the daemon holds the lock for all its ticks.
    _lock: Option<StateLock>,
    ledger: Ledger,
    run_no: i64,
    run_id: String,
    shard: String,
    started_at: String,
}

/// Runs one export over `settings.inputs` (and whatever earlier runs left pending).
pub async fn run(
    settings: &Settings,
    options: &RunOptions,
    stop: Arc<Stop>,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    if settings.inputs.is_empty() && options.queues.is_none() {
        anyhow::bail!("no input: give `--input PATH` (or `-` for stdin) or set `input.paths`");
    }
    let mut state = open_state(settings, options)?;
    let (requests, pacer) = match &options.daemon {
        Some(shared) => (shared.requests.clone(), shared.pacer.clone()),
        None => (
            Arc::new(RequestCounters::default()),
            Arc::new(Pacer::new(
                settings.fetch.requests_per_second,
                settings.fetch.burst,
                learned_rate(&state.ledger, settings),
            )),
        ),
    };
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
    let run = (state.run_no, state.run_id.clone(), state.shard.clone());
    let mode = ReadMode {
        shard: settings.shard,
        queues: options.queues.clone(),
        carried: options.carried.clone(),
        content: settings.content,
    };
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
    let stop_reason = stop.reason();
    let stopped = stop_reason.as_ref().map(describe_stop);
    let exit_code = RunReport::exit_code_for(&counts, stop_reason.as_ref());
    let nothing_new = output.data_files.is_empty()
        && output.content_files.is_empty()
        && output.failures_file.is_none();
    let manifest_path = if nothing_new {
        // Nothing new: no empty files, no manifest; the ledger records the run.
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
        let manifest = Manifest::new(info, &output, counts);
        Some(
            manifest
                .write(&settings.output.dir)
                .context("failed to write the run manifest")?,
        )
    };
    let finished_at = format_timestamp(chrono::Utc::now().timestamp_micros());
    if let Some(rate) = pacer.learned() {
        state
            .ledger
            .save_learned_rate(settings.api.base_url.as_str(), rate, &finished_at)
            .context("failed to keep the learned rate in the ledger")?;
    }
    state
        .ledger
        .finish_run(
            state.run_no,
            &finished_at,
            exit_code,
            manifest_path.as_deref(),
        )
        .context("failed to record the run in the ledger")?;
    let c = &counts;
    tracing::info!(run_id = %state.run_id, exported = c.exported, failed = c.failed, pending = c.pending,
        content_exported = c.content_exported, content_failed = c.content_failed, content_pending = c.content_pending,
        "export finished");
    let rate = RateReport {
        configured: settings.fetch.requests_per_second,
        current: pacer.rate(),
        learned: pacer.learned(),
    };
    Ok(report(
        state.run_id,
        exit_code,
        counts,
        rate,
        started.elapsed(),
        output,
        manifest_path,
        stopped,
    ))
}

/// The rate an earlier run learned for this API, if the ledger keeps one; a
/// ledger that cannot say is no reason to stop (the run learns afresh).
pub fn learned_rate(ledger: &Ledger, settings: &Settings) -> Option<f64> {
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

/// Takes the lock, opens the ledger, settles what a dead run left, and records
/// this run's start.
fn open_state(settings: &Settings, options: &RunOptions) -> anyhow::Result<RunState> {
    let out_dir = &settings.output.dir;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("failed to create output directory `{}`", out_dir.display()))?;
    let lock = match options.daemon {
        Some(_) => None,
        None => Some(StateLock::acquire(&settings.state_path)?),
    };
    let mut ledger = Ledger::open(&settings.state_path, out_dir)
        .context("cannot use the state ledger; nothing was fetched or written")?;
    let shard = settings.shard.label();
    let reconciled = ledger
        .reconcile(&shard)
        .context("failed to reconcile the output with the ledger")?;
    if reconciled != Reconciled::default() {
        tracing::warn!(?reconciled, "settled what an earlier run left unfinished");
    }
    if options.retry_failed {
        let (requeued, content) = ledger.requeue_failed()?;
        tracing::info!(
            requeued,
            content,
            "failed IDs (and failed contents) re-queued"
        );
    }
    let run_id = new_run_id();
    let started_at = format_timestamp(chrono::Utc::now().timestamp_micros());
    let run_no = ledger.begin_run(&run_id, &shard, &started_at)?;
    tracing::info!(%run_id, output = %out_dir.display(), "export started");
    Ok(RunState {
        _lock: lock,
        ledger,
        run_no,
        run_id,
        shard,
        started_at,
    })
}

/// Source thread → dispatcher → fetch tasks → sink thread, until the input
/// and the leftovers are done or the run stops.
async fn pipeline(
    settings: &Settings,
    (run_no, run_id, shard): (i64, String, String),
    mode: ReadMode,
    client: Arc<Client>,
    stop: &Arc<Stop>,
    live: &Arc<LiveCounts>,
) -> anyhow::Result<(SourceCounts, SinkOutput)> {
    let out_dir = &settings.output.dir;
    let _checkpointer = Checkpointer::start(&settings.state_path, out_dir)?;
    let (source_tx, source_rx) = mpsc::channel(SOURCE_QUEUE / crate::source::CHUNK);
    let source_ledger = Ledger::open_for_admission(&settings.state_path, out_dir)?;
    source_ledger.leave_checkpoints_to_background()?;
    let source = IdSource::new(settings.inputs.clone(), source_ledger, run_no, mode);
    let source_task = tokio::task::spawn_blocking(move || source.run(source_tx));

    let (sink_tx, sink_rx) = mpsc::channel(SINK_QUEUE);
    let sink_ledger = Ledger::open(&settings.state_path, out_dir)?;
    sink_ledger.leave_checkpoints_to_background()?;
    let sink = Sink::new(&settings.output, &run_id, &shard, sink_ledger);
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

    let source_result = source_task.await;
    let output = match sink_thread.join() {
        Ok(result) => {
            result.context("failed to write output; files already committed are complete")?
        }
        Err(_) => anyhow::bail!("the sink thread panicked; files already committed are complete"),
    };
    if dispatched.is_err() {
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

#[allow(clippy::too_many_arguments)]
fn report(
    run_id: String,
    exit_code: u8,
    counts: Counts,
    rate: RateReport,
    duration: Duration,
    output: SinkOutput,
    manifest: Option<PathBuf>,
    stopped: Option<String>,
) -> RunReport {
    let secs = duration.as_secs_f64();
    RunReport {
        run_id,
        exit_code,
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
        manifest,
        stopped,
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

/// What each fetch task gets: the client, the way to the sink, the counts.
struct Fanout {
    client: Arc<Client>,
    sink: mpsc::Sender<Outcome>,
    live: Arc<LiveCounts>,
}

/// Fans IDs out to fetch tasks, at most `concurrency × 4` outstanding (fetches
/// waiting out a backoff hold a slot but no connection). Stops taking IDs when
/// the run is stopped, then waits for the outstanding ones.
async fn dispatch(
    mut source: mpsc::Receiver<Vec<SourceItem>>,
    fanout: Fanout,
    stop: Arc<Stop>,
    concurrency: usize,
) {
    let slots = Arc::new(Semaphore::new(concurrency * 4 + 16));
    let mut tasks = JoinSet::new();
    'chunks: loop {
        let chunk = tokio::select! {
            biased;
            _ = stop.stopped() => break,
            chunk = source.recv() => match chunk { Some(chunk) => chunk, None => break },
        };
        for item in chunk {
            // IDs of a chunk not dispatched stay pending in the ledger.
            if stop.is_stopped() {
                break 'chunks;
            }
            while tasks.try_join_next().is_some() {}
            if let SourceItem::Invalid {
                input,
                line,
                reason,
            } = item
            {
                let message = format!("{input} line {line}: {reason}");
                let row = FailureRow {
                    id: String::new(),
                    line: Some(line),
                    reason: Reason::InvalidId,
                    http_status: None,
                    attempts: 0,
                    message,
                    first_404_micros: None,
                };
                if fanout.sink.send(Outcome::Failed(row)).await.is_err() {
                    break 'chunks;
                }
                continue;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break 'chunks;
            };
            let (client, sink, live) = (
                fanout.client.clone(),
                fanout.sink.clone(),
                fanout.live.clone(),
            );
            tasks.spawn(async move {
                fetch_item(item, &client, &sink, &live).await;
                drop(permit);
            });
        }
    }
    // Dropping the receiver ends the source; IDs it had not sent stay untouched.
    drop(source);
    while tasks.join_next().await.is_some() {}
}

/// One fetch task: the metadata, then (when due) the content.
async fn fetch_item(
    item: SourceItem,
    client: &Client,
    sink: &mpsc::Sender<Outcome>,
    live: &LiveCounts,
) {
    let (id, seq, line, created_at) = match item {
        SourceItem::Invalid { .. } => return,
        SourceItem::ContentOnly {
            id,
            seq,
            created_at,
        } => (id, seq, None, created_at),
        SourceItem::Id {
            id,
            seq,
            line,
            first_404_micros,
            content,
        } => {
            let first_404 = first_404_micros.map(instant);
            let fetched = fetch_metadata(&id, seq, line, first_404, client, sink).await;
            let Some(created_at) = fetched else {
                return;
            };
            if !content {
                return;
            }
            live.content_wanted.fetch_add(1, Ordering::Relaxed);
            (id, seq, line, created_at)
        }
    };
    let outcome = match client.fetch_content(&id, created_at).await {
        Fetched::Record(content) => Outcome::Content(content, seq),
        Fetched::Failed(f) => Outcome::Failed(failure_row(id, line, f)),
        Fetched::Pending(f) => Outcome::Pending(failure_row(id, line, f)),
    };
    let _ = sink.send(outcome).await;
}

/// Fetches one ID's metadata and hands the outcome to the sink, before any
/// content is asked for, so content never holds a record back. Returns the
/// record's `created_at` when a record was handed on.
async fn fetch_metadata(
    id: &str,
    seq: i64,
    line: Option<u64>,
    first_404: Option<SystemTime>,
    client: &Client,
    sink: &mpsc::Sender<Outcome>,
) -> Option<Option<i64>> {
    let (outcome, created_at) = match client.fetch(id, first_404).await {
        Fetched::Record(record) => {
            let created_at = record.created_at;
            (Outcome::Exported(record, seq), Some(created_at))
        }
        Fetched::Failed(f) => (Outcome::Failed(failure_row(id.to_owned(), line, f)), None),
        Fetched::Pending(f) => (Outcome::Pending(failure_row(id.to_owned(), line, f)), None),
    };
    sink.send(outcome).await.ok()?;
    created_at
}

fn failure_row(id: String, line: Option<u64>, f: Failure) -> FailureRow {
    FailureRow {
        id,
        line,
        reason: f.reason,
        http_status: f.http_status,
        attempts: f.attempts,
        message: f.message,
        first_404_micros: f.first_404.map(micros),
    }
}

/// Microseconds since the epoch, as the ledger keeps instants.
fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// An instant the ledger kept, in microseconds since the epoch.
fn instant(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64)
}

/// The sink thread: writes every outcome; on an output error it stops the run
/// (data is at risk) and drops the unfinished files.
fn drain_into_sink(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Outcome>,
    live: &LiveCounts,
    stop: &Stop,
) -> Result<SinkOutput, SinkError> {
    while let Some(outcome) = next_outcome(&mut rx) {
        let written = match &outcome {
            Outcome::Exported(record, seq) => {
                sink.write(record, *seq).map(|()| Some(&live.exported))
            }
            Outcome::Content(content, seq) => sink
                .write_content(content, *seq)
                .map(|()| Some(&live.content_exported)),
            Outcome::Failed(row) => sink.write_failure(row, IdStatus::Failed).map(|()| {
                Some(if row.reason.is_content() {
                    &live.content_failed
                } else {
                    &live.failed
                })
            }),
            // Pending content is counted at the end, from what was due.
            Outcome::Pending(row) => sink
                .write_failure(row, IdStatus::Pending)
                .map(|()| (!row.reason.is_content()).then_some(&live.pending)),
        };
        match written {
            Ok(counter) => {
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "output failed; stopping the run");
                stop.trigger(StopReason::OutputFailed);
                sink.abandon();
                return Err(e);
            }
        }
    }
    sink.finish().map(|(output, _ledger)| output)
}

/// The next outcome. When the queue runs dry the thread naps briefly before
/// it blocks, so outcomes are taken in bursts instead of one thread wake-up
/// each (the wake-ups cost more CPU than writing the rows).
fn next_outcome(rx: &mut mpsc::Receiver<Outcome>) -> Option<Outcome> {
    match rx.try_recv() {
        Ok(outcome) => return Some(outcome),
        Err(mpsc::error::TryRecvError::Disconnected) => return None,
        Err(mpsc::error::TryRecvError::Empty) => {}
    }
    std::thread::sleep(SINK_NAP);
    rx.blocking_recv()
}

fn spawn_ticker(
    live: Arc<LiveCounts>,
    requests: Arc<RequestCounters>,
    pacer: Arc<Pacer>,
    progress: Arc<dyn Progress>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(200));
        loop {
            interval.tick().await;
            progress.update(&snapshot(&live, &requests, &pacer));
        }
    })
}

fn snapshot(live: &LiveCounts, requests: &RequestCounters, pacer: &Pacer) -> Snapshot {
    let exported = live.exported.load(Ordering::Relaxed);
    let failed = live.failed.load(Ordering::Relaxed);
    let pending = live.pending.load(Ordering::Relaxed);
    Snapshot {
        done: exported + failed + pending,
        exported,
        failed,
        pending,
        content_exported: live.content_exported.load(Ordering::Relaxed),
        content_failed: live.content_failed.load(Ordering::Relaxed),
        requests: requests.requests.load(Ordering::Relaxed),
        rate_limited: requests.rate_limited.load(Ordering::Relaxed),
        rate: pacer.rate(),
    }
}

/// `pending` covers every ID read but not finished: those recorded as pending
/// and those a stopped run never got to; `content_pending` likewise for the
/// contents this run set out to fetch.
fn counts(source: SourceCounts, live: &LiveCounts, requests: &RequestTotals) -> Counts {
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let exported = load(&live.exported);
    let failed = load(&live.failed);
    let failed_ids = failed.saturating_sub(source.invalid);
    let content_exported = load(&live.content_exported);
    let content_failed = load(&live.content_failed);
    let content_due = load(&live.content_wanted) + source.content_only;
    Counts {
        input_lines: source.lines,
        ids: source.ids,
        invalid_lines: source.invalid,
        duplicates_skipped: source.duplicates,
        already_exported: source.already_exported,
        previously_failed: source.previously_failed,
        resumed: source.resumed,
        exported,
        failed,
        pending: source.to_fetch.saturating_sub(exported + failed_ids),
        content_exported,
        content_failed,
        content_pending: content_due.saturating_sub(content_exported + content_failed),
        requests: requests.requests,
        rate_limited: requests.rate_limited,
        retries: requests.retries,
        other_shards: source.other_shards,
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
        StopReason::Interrupted => "interrupted; work committed so far is intact".into(),
        StopReason::OutputFailed => {
            "stopped: output or input failed; files already renamed into place are complete".into()
        }
    }
}

/// `20261121T213000Z-3fa9`: sortable by start time, unique per process.
fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        fastrand::u16(..)
    )
}
