//! Live counts of a run: shared by the fetch tasks, the sink thread and the
//! progress ticker, and turned into the run's final counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::summary::Counts;
use crate::client::{RequestCounters, RequestTotals};
use crate::limiter::Pacer;
use crate::progress::{Progress, Snapshot};
use crate::source::SourceCounts;

/// Live counts shared by the sink thread, the fetch tasks and the progress ticker.
#[derive(Default)]
pub(super) struct LiveCounts {
    pub exported: AtomicU64,
    pub failed: AtomicU64,
    pub pending: AtomicU64,
    /// Content fetches begun for records fetched in this run.
    pub content_wanted: AtomicU64,
    pub content_exported: AtomicU64,
    pub content_failed: AtomicU64,
}

pub(super) fn spawn_ticker(
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

pub(super) fn snapshot(live: &LiveCounts, requests: &RequestCounters, pacer: &Pacer) -> Snapshot {
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
pub(super) fn counts(source: SourceCounts, live: &LiveCounts, requests: &RequestTotals) -> Counts {
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let exported = load(&live.exported);
    let failed = load(&live.failed);
    let failed_ids = failed.saturating_sub(source.invalid + source.outside_retention);
    let content_exported = load(&live.content_exported);
    let content_failed = load(&live.content_failed);
    let content_due = load(&live.content_wanted) + source.content_only;
    Counts {
        input_lines: source.lines,
        ids: source.ids,
        invalid_lines: source.invalid,
        outside_retention: source.outside_retention,
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
