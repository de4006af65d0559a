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
//! [`drain`] the sink thread; [`manifest`] and [`summary`] what a run reports;
//! [`failures`] a run's failures file written again from the ledger.

mod dispatch;
mod drain;
pub mod failures;
mod finish;
pub mod guard;
mod live;
pub mod manifest;
mod publish;
mod setup;
pub mod summary;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc;

pub use publish::user_path;
pub use setup::{Session, first_kept_day};
pub use source::{Carried, QueueFiles};

use crate::client::Client;
use crate::config::Settings;
use crate::ledger::{AdmitRules, Checkpointer, Ledger};
use crate::limiter::Pacer;
use crate::objstore::Remote;
use crate::progress::Progress;
use crate::sink::{Sink, SinkError, SinkOutput};
use crate::source::{self, IdSource, ReadMode, SourceCounts, SourceError};
use crate::stop::Stop;
use dispatch::{Fanout, dispatch};
use drain::drain_into_sink;
use finish::{close_failed, finish, report};
use live::{LiveCounts, counts, snapshot, spawn_ticker};
use summary::{Counts, RateReport, RunReport};

/// IDs queued between the source and the dispatcher, in chunks.
const SOURCE_QUEUE: usize = 1024;
/// Outcomes queued between the fetch tasks and the sink.
const SINK_QUEUE: usize = 2048;

/// How this run reads and retries, beyond the configuration.
#[derive(Default)]
pub struct RunOptions {
    /// Re-queue IDs that earlier runs recorded as failed.
    pub retry_failed: bool,
    /// Fetch IDs dated before `state.retention` too (a backfill).
    pub include_old: bool,
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
    // What can be checked is checked before the run is recorded, so a run
    // refused here leaves nothing for the next one to call dead.
    setup::check_run(settings, options.follow.is_some())?;
    let run_id = setup::new_run_id();
    let client = Client::try_new(
        &settings.api,
        &settings.fetch,
        session.pacer.clone(),
        stop.clone(),
        session.requests.clone(),
        run_id.clone(),
    )
    .context("failed to set up the API client")?;
    // A followed input (the daemon's ticks) says it started only at debug:
    // most ticks find nothing, and the tick's end is logged anyway.
    let quiet_start = options.follow.is_some();
    let mut state = session.begin_run(settings, options.retry_failed, run_id, quiet_start)?;
    let run = (state.run_no, state.run_id.as_str(), state.shard.as_str());
    let executed = execute(session, settings, options, run, client, &stop, &progress).await;
    let ran = executed.and_then(|ran| {
        let stopped = stop.reason();
        finish(settings, &mut state, &ran, stopped.as_ref()).map(|finished| (ran, finished))
    });
    match ran {
        Ok((ran, finished)) => Ok(publish::user_paths(
            settings,
            report(
                state.run_id,
                finished,
                ran.counts,
                ran.rate,
                started.elapsed(),
                ran.output,
            ),
        )),
        Err(error) => {
            close_failed(settings, &mut state, &error);
            Err(error)
        }
    }
}

/// What a run that went to its end produced.
pub(super) struct Ran {
    pub output: SinkOutput,
    pub counts: Counts,
    pub rate: RateReport,
}

/// The pipeline with its progress ticker, from the first ID to the last outcome.
async fn execute(
    session: &Session,
    settings: &Settings,
    options: &RunOptions,
    run: (i64, &str, &str),
    client: Client,
    stop: &Arc<Stop>,
    progress: &Arc<dyn Progress>,
) -> anyhow::Result<Ran> {
    let (requests, pacer) = (session.requests.clone(), session.pacer.clone());
    let requests_before = requests.snapshot();
    let live = Arc::new(LiveCounts::default());
    let ticker = spawn_ticker(
        live.clone(),
        requests.clone(),
        pacer.clone(),
        progress.clone(),
    );
    let mode = read_mode(settings, options);
    let remote = session.remote.clone();
    let result = pipeline(settings, run, mode, Arc::new(client), remote, stop, &live).await;
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
    Ok(Ran {
        output,
        counts,
        rate: rate_report(settings, &pacer),
    })
}

/// How the source reads: the shard, queue files followed or not, content or not.
fn read_mode(settings: &Settings, options: &RunOptions) -> ReadMode {
    ReadMode {
        shard: settings.shard,
        queues: options.follow.as_ref().map(|f| f.queues.clone()),
        carried: options.follow.as_ref().map(|f| f.carried.clone()),
        content: settings.content,
        include_old: options.include_old,
    }
}

fn rate_report(settings: &Settings, pacer: &Pacer) -> RateReport {
    RateReport {
        configured: settings.fetch.requests_per_second,
        current: pacer.rate(),
        learned: pacer.learned(),
    }
}

/// Source thread → dispatcher → fetch tasks → sink thread, until the input
/// and the leftovers are done or the run stops.
async fn pipeline(
    settings: &Settings,
    (run_no, run_id, shard): (i64, &str, &str),
    mode: ReadMode,
    client: Arc<Client>,
    remote: Option<Arc<Remote>>,
    stop: &Arc<Stop>,
    live: &Arc<LiveCounts>,
) -> anyhow::Result<(SourceCounts, SinkOutput)> {
    let out_dir = &settings.output.dir;
    let _checkpointer = Checkpointer::start(&settings.state_path, out_dir)?;
    let (source_tx, source_rx) = mpsc::channel(SOURCE_QUEUE / source::CHUNK);
    let mut source_ledger = Ledger::open_for_admission(&settings.state_path, out_dir)?;
    source_ledger.set_admit_rules(AdmitRules {
        content: settings.content,
        first_kept_day: setup::first_kept_day(settings),
        include_old: mode.include_old,
    });
    source_ledger.leave_checkpoints_to_background()?;
    let source = IdSource::new(settings.inputs.clone(), source_ledger, run_no, mode);
    let source_task = tokio::task::spawn_blocking(move || source.run(source_tx));

    let (sink_tx, sink_rx) = mpsc::channel(SINK_QUEUE);
    let mut sink_ledger = Ledger::open(&settings.state_path, out_dir)?;
    sink_ledger.leave_checkpoints_to_background()?;
    if let Some(remote) = remote {
        sink_ledger.set_remote(remote);
    }
    // The sink's failure rows are kept as this run's, for its failures file.
    sink_ledger.set_run(run_no);
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
        // The source asks the ledger about every ID: its failure is the
        // ledger's, not the input's.
        Ok(Err(SourceError::Ledger(e))) => {
            return Err(e).context(
                "the state ledger failed while admitting IDs; files already committed are complete",
            );
        }
        Ok(Err(e)) => {
            return Err(e)
                .context("failed to read the input; files already committed are complete");
        }
        Err(e) => anyhow::bail!("the input reader failed: {e}"),
    };
    Ok((source_counts, output))
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
