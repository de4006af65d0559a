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

use super::endpoint;
use super::health::HealthRule;
use super::metrics::DaemonMetrics;
use crate::config::{Input, Schedule, Settings};
use crate::exit::ExitStatus;
use crate::export::{self, Carried, Follow, QueueFiles, RunOptions, Session};
use crate::ledger::Ledger;
use crate::reconcile;
use crate::source;
use crate::stop::{Stop, StopReason};

/// Runs until `shutdown` is triggered (the first SIGINT/SIGTERM), then lets a
/// running tick finish and commit within `shutdown_timeout`. Returns the exit code.
pub async fn run(settings: Settings, shutdown: Arc<Stop>) -> anyhow::Result<ExitStatus> {
    let schedule = settings.schedule.clone().context(
        "`schedule.cron` is not set: the daemon needs a schedule (six fields, seconds first, UTC), e.g. \"0 */5 * * * *\"",
    )?;
    // Every tick shares one session: the lock, the counters, and one pacer
    // that starts where the last run left off.
    let session = Session::open(&settings)?;
    let health = HealthRule::for_settings(schedule.clone(), &settings);
    let metrics = Arc::new(
        DaemonMetrics::new(session.requests().clone(), session.pacer().clone())
            .with_health(health, chrono::Utc::now()),
    );
    if let Some(addr) = settings.metrics_listen {
        let bound = endpoint::serve(addr, metrics.clone())
            .await
            .with_context(|| format!("failed to listen on `metrics.listen` {addr}"))?;
        tracing::info!(%bound, "serving /metrics and /healthz");
    }
    let (tick_settings, follow) = follow_inputs(&settings)?;
    let (tick_tx, mut tick_rx) = mpsc::channel::<()>(1);
    let running = Arc::new(AtomicBool::new(false));
    let scheduler = start_scheduler(&schedule, tick_tx, running.clone(), metrics.clone()).await?;
    if let Some(reconcile_on) = &settings.reconcile_schedule {
        schedule_reconcile(&scheduler, reconcile_on, &settings, metrics.clone()).await?;
    }
    let next = schedule
        .next_after(chrono::Utc::now())
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    tracing::info!(cron = %schedule.expr, next_tick = %next, state = %settings.state_path.display(), "daemon started (schedule in UTC)");

    let mut status = ExitStatus::Success;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopped() => break,
            tick = tick_rx.recv() => {
                if tick.is_none() {
                    break;
                }
                running.store(true, Ordering::SeqCst);
                let options = RunOptions { follow: Some(follow.clone()), ..RunOptions::default() };
                let finished = run_tick(&session, &tick_settings, options, &shutdown, &metrics).await;
                running.store(false, Ordering::SeqCst);
                if !finished {
                    status = ExitStatus::Interrupted;
                    break;
                }
            }
        }
    }
    drop(scheduler);
    if status == ExitStatus::Success {
        tracing::info!("daemon stopped; everything fetched was committed");
    }
    Ok(status)
}

/// The ticks' inputs: the queue files, followed from their saved offsets,
/// and stdin fed to the ledger between ticks by a thread of its own.
fn follow_inputs(settings: &Settings) -> anyhow::Result<(Settings, Follow)> {
    let files: Vec<PathBuf> = settings
        .inputs
        .iter()
        .filter_map(|input| match input {
            Input::File(path) => Some(path.clone()),
            Input::Stdin => None,
        })
        .collect();
    let carried: Carried = Arc::default();
    if settings.inputs.contains(&Input::Stdin) {
        spawn_stdin_feed(settings, carried.clone())?;
    }
    let tick_settings = Settings {
        inputs: files.iter().cloned().map(Input::File).collect(),
        ..settings.clone()
    };
    let follow = Follow {
        queues: Arc::new(Mutex::new(QueueFiles::new(files))),
        carried,
    };
    Ok((tick_settings, follow))
}

/// Registers the cron job. A tick that fires while one runs is skipped and
/// logged, never queued behind it.
async fn start_scheduler(
    schedule: &Schedule,
    tick_tx: mpsc::Sender<()>,
    running: Arc<AtomicBool>,
    metrics: Arc<DaemonMetrics>,
) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new()
        .await
        .context("failed to start the scheduler")?;
    let job = Job::new_async(schedule.expr.as_str(), move |_id, _scheduler| {
        let (tick_tx, running, metrics) = (tick_tx.clone(), running.clone(), metrics.clone());
        Box::pin(async move {
            if running.load(Ordering::SeqCst) || tick_tx.try_send(()).is_err() {
                metrics.tick_skipped();
                tracing::warn!("tick skipped: the previous tick is still running");
            }
        })
    })
    .with_context(|| format!("invalid `schedule.cron` `{}`", schedule.expr))?;
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

/// Adds the daily reconciliation (`reconcile.cron`): the export against the
/// Activity API over the last 30 completed days, its findings in `/metrics`.
/// It only reads committed files, so it runs beside the ticks.
async fn schedule_reconcile(
    scheduler: &JobScheduler,
    schedule: &Schedule,
    settings: &Settings,
    metrics: Arc<DaemonMetrics>,
) -> anyhow::Result<()> {
    let key = settings.management_key.clone().context(
        "`reconcile.cron` is set but there is no management key: set OPENROUTER_MANAGEMENT_KEY or `api.management_key_file`",
    )?;
    let (api, dir) = (settings.api.clone(), settings.output.dir.clone());
    let job = Job::new_async(schedule.expr.as_str(), move |_id, _scheduler| {
        let (api, key, dir, metrics) = (api.clone(), key.clone(), dir.clone(), metrics.clone());
        Box::pin(async move {
            let now = chrono::Utc::now();
            let window = reconcile::Window::last_30_days(now.date_naive());
            let tolerance = reconcile::Tolerance::default();
            match reconcile::reconcile(&api, &key, &dir, window, None, tolerance).await {
                Ok(rows) => {
                    let s = reconcile::summarize(&rows);
                    let cost = s.missing_cost.to_f64();
                    metrics.reconcile_done(s.missing_requests, cost, now);
                    tracing::info!(
                        missing_requests = s.missing_requests,
                        missing_cost_usd = cost,
                        extra_rows = s.extra_rows,
                        "reconciled with the Activity API"
                    );
                }
                Err(e) => tracing::error!("reconcile failed: {e:#}"),
            }
        })
    })
    .with_context(|| format!("invalid `reconcile.cron` `{}`", schedule.expr))?;
    scheduler
        .add(job)
        .await
        .context("failed to schedule the reconciliation")?;
    Ok(())
}

/// One tick. Returns false when a shutdown could not finish within
/// `shutdown_timeout` (the caller exits at once; committed files are whole).
async fn run_tick(
    session: &Session,
    settings: &Settings,
    options: RunOptions,
    shutdown: &Arc<Stop>,
    metrics: &Arc<DaemonMetrics>,
) -> bool {
    let started = Instant::now();
    let stop = Arc::new(Stop::default());
    // The metrics are the tick's progress reporter, so they move while it runs.
    let tick = export::run_in(session, settings, &options, stop.clone(), metrics.clone());
    tokio::pin!(tick);
    let result = tokio::select! {
        result = &mut tick => result,
        _ = shutdown.stopped() => {
            tracing::info!(timeout = %humantime::format_duration(settings.shutdown_timeout), "shutting down: finishing the running tick");
            stop.trigger(StopReason::Interrupted);
            match tokio::time::timeout(settings.shutdown_timeout, &mut tick).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::error!(timeout = %humantime::format_duration(settings.shutdown_timeout), "the tick did not finish within shutdown_timeout; exiting now (committed files are whole, unfinished IDs stay pending)");
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
            if c.is_idle() {
                tracing::debug!(run_id = %report.run_id, secs, "tick found nothing to do");
            } else {
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
            }
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
