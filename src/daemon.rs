//! `genledger daemon`: exports on a cron schedule. Each tick is one export run
//! over what is new in the queue files (from their saved offsets) plus the IDs
//! stdin recorded as pending since the last tick. Ticks never overlap; the
//! state lock is held for the daemon's whole life.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::app::EXIT_INTERRUPTED;
use crate::client::RequestCounters;
use crate::config::{Settings, parse_cron};
use crate::export::{self, DaemonShared, RunOptions};
use crate::ledger::{Ledger, StateLock};
use crate::limiter::Pacer;
use crate::metrics::DaemonMetrics;
use crate::progress::Silent;
use crate::queue::QueueFiles;
use crate::source::{self, Carried, Input};
use crate::stop::{Stop, StopReason};

/// Runs until `shutdown` is triggered (the first SIGINT/SIGTERM), then lets a
/// running tick finish and commit within `shutdown_timeout`. Returns the exit code.
pub async fn run(settings: Settings, shutdown: Arc<Stop>) -> anyhow::Result<u8> {
    let cron = settings.cron.clone().context(
        "`schedule.cron` is not set: the daemon needs a schedule (six fields, seconds first, UTC), e.g. \"0 */5 * * * *\"",
    )?;
    let schedule =
        parse_cron(&cron).map_err(|e| anyhow::anyhow!("invalid `schedule.cron`: {e}"))?;
    let files: Vec<PathBuf> = settings
        .inputs
        .iter()
        .filter_map(|input| match input {
            Input::File(path) => Some(path.clone()),
            Input::Stdin => None,
        })
        .collect();
    let with_stdin = settings.inputs.contains(&Input::Stdin);
    if files.is_empty() && !with_stdin {
        anyhow::bail!(
            "no input: give `--input PATH` (a queue file, or `-` for stdin) or set `input.paths`"
        );
    }
    let out_dir = &settings.output.dir;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("failed to create output directory `{}`", out_dir.display()))?;
    let _lock = StateLock::acquire(&settings.state_path)?;

    // Every tick shares one pacer, which starts where the last run left off.
    let learned = {
        let ledger = Ledger::open(&settings.state_path, out_dir)
            .context("cannot use the state ledger; nothing was fetched or written")?;
        crate::export::learned_rate(&ledger, &settings)
    };
    let shared = DaemonShared {
        requests: Arc::new(RequestCounters::default()),
        pacer: Arc::new(Pacer::new(
            settings.fetch.requests_per_second,
            settings.fetch.burst,
            learned,
        )),
    };
    let metrics = Arc::new(DaemonMetrics::new(
        shared.requests.clone(),
        shared.pacer.clone(),
    ));
    if let Some(addr) = settings.metrics_listen {
        let bound = crate::metrics::serve(addr, metrics.clone())
            .await
            .with_context(|| format!("failed to listen on `metrics.listen` {addr}"))?;
        tracing::info!(%bound, "serving /metrics and /healthz");
    }
    let carried: Carried = Arc::default();
    if with_stdin {
        spawn_stdin_feed(&settings, carried.clone())?;
    }
    let tick_settings = Settings {
        inputs: files.iter().cloned().map(Input::File).collect(),
        ..settings.clone()
    };
    let queues = Arc::new(Mutex::new(QueueFiles::new(files)));

    let (tick_tx, mut tick_rx) = mpsc::channel::<()>(1);
    let running = Arc::new(AtomicBool::new(false));
    let scheduler = start_scheduler(&cron, tick_tx, running.clone(), metrics.clone()).await?;
    let next = schedule
        .find_next_occurrence(&chrono::Utc::now(), false)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    tracing::info!(%cron, next_tick = %next, state = %settings.state_path.display(), "daemon started (schedule in UTC)");

    let mut code = 0;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopped() => break,
            tick = tick_rx.recv() => {
                if tick.is_none() {
                    break;
                }
                running.store(true, Ordering::SeqCst);
                let options = RunOptions {
                    retry_failed: false,
                    queues: Some(queues.clone()),
                    carried: Some(carried.clone()),
                    daemon: Some(shared.clone()),
                };
                let finished = run_tick(&tick_settings, options, &shutdown, &metrics).await;
                running.store(false, Ordering::SeqCst);
                if !finished {
                    code = EXIT_INTERRUPTED;
                    break;
                }
            }
        }
    }
    drop(scheduler);
    if code == 0 {
        tracing::info!("daemon stopped; everything fetched was committed");
    }
    Ok(code)
}

/// Registers the cron job. A tick that fires while one runs is skipped and
/// logged, never queued behind it.
async fn start_scheduler(
    cron: &str,
    tick_tx: mpsc::Sender<()>,
    running: Arc<AtomicBool>,
    metrics: Arc<DaemonMetrics>,
) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new()
        .await
        .context("failed to start the scheduler")?;
    let job = Job::new_async(cron, move |_id, _scheduler| {
        let (tick_tx, running, metrics) = (tick_tx.clone(), running.clone(), metrics.clone());
        Box::pin(async move {
            if running.load(Ordering::SeqCst) || tick_tx.try_send(()).is_err() {
                metrics.tick_skipped();
                tracing::warn!("tick skipped: the previous tick is still running");
            }
        })
    })
    .with_context(|| format!("invalid `schedule.cron` `{cron}`"))?;
    scheduler
        .add(job)
        .await
        .context("failed to schedule the export")?;
    scheduler
        .start()
        .await
        .context("failed to start the scheduler")?;
    Ok(scheduler)
}

/// One tick. Returns false when a shutdown could not finish within
/// `shutdown_timeout` (the caller exits at once; committed files are whole).
async fn run_tick(
    settings: &Settings,
    options: RunOptions,
    shutdown: &Arc<Stop>,
    metrics: &DaemonMetrics,
) -> bool {
    let started = Instant::now();
    let stop = Arc::new(Stop::default());
    let tick = export::run(settings, &options, stop.clone(), Arc::new(Silent));
    tokio::pin!(tick);
    let result = tokio::select! {
        result = &mut tick => result,
        _ = shutdown.stopped() => {
            tracing::info!(timeout = ?settings.shutdown_timeout, "shutting down: finishing the running tick");
            stop.trigger(StopReason::Interrupted);
            match tokio::time::timeout(settings.shutdown_timeout, &mut tick).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::error!(timeout = ?settings.shutdown_timeout, "the tick did not finish within shutdown_timeout; exiting now (committed files are whole, unfinished IDs stay pending)");
                    return false;
                }
            }
        }
    };
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(report) => {
            let c = &report.counts;
            if let Some(stopped) = report.stopped.as_ref().filter(|_| !shutdown.is_stopped()) {
                tracing::error!(run_id = %report.run_id, "tick stopped: {stopped}");
            }
            tracing::info!(
                run_id = %report.run_id,
                exported = c.exported,
                failed = c.failed,
                pending = c.pending,
                already_exported = c.already_exported,
                files = report.files.len(),
                secs,
                "tick finished"
            );
            let ledger = Ledger::open(&settings.state_path, &settings.output.dir)
                .and_then(|l| l.status_counts())
                .ok();
            metrics.tick_done(c, secs, ledger);
        }
        Err(e) => {
            metrics.tick_failed(secs);
            tracing::error!("tick failed: {e:#}");
        }
    }
    true
}

fn spawn_stdin_feed(settings: &Settings, carried: Carried) -> anyhow::Result<()> {
    let ledger = Ledger::open_for_admission(&settings.state_path, &settings.output.dir)?;
    let shard = settings.shard;
    std::thread::Builder::new()
        .name("genledger-stdin".into())
        .spawn(move || {
            let reader = BufReader::with_capacity(1 << 16, std::io::stdin());
            match source::feed_stdin(ledger, shard, &carried, reader) {
                Ok(n) => tracing::info!(recorded = n, "stdin closed"),
                Err(e) => tracing::error!("reading stdin failed: {e:#}"),
            }
        })
        .context("failed to start the stdin reader")?;
    Ok(())
}
