//! The dispatcher and the fetch tasks: IDs fanned out to the client, at most
//! a bounded number outstanding, each outcome handed to the sink thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::live::LiveCounts;
use crate::client::{Client, Failure, Fetched};
use crate::record::{Content, FailureRow, Generation, Reason};
use crate::source::SourceItem;
use crate::stop::Stop;
use crate::timestamp;

/// KiB of stored content queued for the sink thread at most. The queue
/// counts outcomes (2,048), and content can be large: 200 KB prompts filled
/// it with 400 MB whenever the sink fell behind.
const CONTENT_QUEUE_KIB: usize = 4 * 1024;
/// Content answers fetched at once at most, whatever `fetch.concurrency`
/// says: each can be megabytes, and memory grew with the number in flight
/// (200 KB prompts: peak RSS 128 MiB at 64 at once, 78 MiB at 16, at the
/// same records/s, which the sink's compression bounds).
const CONTENT_FETCHES: usize = 16;

/// What holds content's memory: fetches in flight, and what waits for the
/// sink.
struct ContentBudget {
    fetches: Semaphore,
    queued: Arc<Semaphore>,
}

/// What the sink thread receives: records with their IDs' numbers in the
/// ledger, by which the sink links them to their files. Failure rows of
/// content carry a content reason ([`Reason::is_content`]). Content holds
/// its share of [`CONTENT_QUEUE_KIB`] until the sink is done with it.
pub(super) enum Outcome {
    Exported(Box<Generation>, i64),
    Content(Box<Content>, i64, OwnedSemaphorePermit),
    Failed(FailureRow),
    Pending(FailureRow),
}

/// What each fetch task gets: the client, the way to the sink, the counts.
pub(super) struct Fanout {
    pub client: Arc<Client>,
    pub sink: mpsc::Sender<Outcome>,
    pub live: Arc<LiveCounts>,
}

/// Fans IDs out to fetch tasks, at most `concurrency × 4` outstanding (fetches
/// waiting out a backoff hold a slot but no connection). Stops taking IDs when
/// the run is stopped, then waits for the outstanding ones.
pub(super) async fn dispatch(
    mut source: mpsc::Receiver<Vec<SourceItem>>,
    fanout: Fanout,
    stop: Arc<Stop>,
    concurrency: usize,
) {
    let slots = Arc::new(Semaphore::new(concurrency * 4 + 16));
    let budget = Arc::new(ContentBudget {
        fetches: Semaphore::new(CONTENT_FETCHES),
        // KiB of content the sink has yet to write.
        queued: Arc::new(Semaphore::new(CONTENT_QUEUE_KIB)),
    });
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
            if let Some(row) = unfetched(&item) {
                if fanout.sink.send(Outcome::Failed(row)).await.is_err() {
                    break 'chunks;
                }
                continue;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break 'chunks;
            };
            let (client, sink, live, budget) = (
                fanout.client.clone(),
                fanout.sink.clone(),
                fanout.live.clone(),
                budget.clone(),
            );
            tasks.spawn(async move {
                fetch_item(item, &client, &sink, &live, &budget).await;
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
    budget: &ContentBudget,
) {
    let (id, seq, line, created_at) = match item {
        SourceItem::Invalid { .. } | SourceItem::OutsideRetention { .. } => return,
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
            let first_404 = first_404_micros.map(timestamp::instant);
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
    // The semaphores are never closed.
    let Ok(fetching) = budget.fetches.acquire().await else {
        return;
    };
    // The slot is held until the content has its share of the sink's
    // queue: released at once, every task could hold a fetched answer
    // while it waited (64 at once: 136 MiB; 16: 79 MiB).
    let fetched = client.fetch_content(&id, created_at).await;
    let outcome = match fetched {
        Fetched::Record(content) => {
            // A content larger than the whole budget waits for all of it.
            let kib = (text_bytes(&content) / 1024 + 1).min(CONTENT_QUEUE_KIB);
            let Ok(share) = budget.queued.clone().acquire_many_owned(kib as u32).await else {
                return;
            };
            Outcome::Content(content, seq, share)
        }
        Fetched::Failed(f) => Outcome::Failed(failure_row(id, line, f)),
        Fetched::Pending(f) => Outcome::Pending(failure_row(id, line, f)),
    };
    drop(fetching);
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

/// The bytes of a content's text fields.
fn text_bytes(content: &Content) -> usize {
    [
        &content.input_prompt,
        &content.input_messages,
        &content.output_completion,
        &content.output_reasoning,
        &content.error,
    ]
    .iter()
    .map(|text| text.as_ref().map_or(0, String::len))
    .sum()
}

fn failure_row(id: String, line: Option<u64>, f: Failure) -> FailureRow {
    FailureRow {
        id,
        line,
        reason: f.reason,
        http_status: f.http_status,
        attempts: f.attempts,
        message: f.message,
        first_404_micros: f.first_404.map(timestamp::micros),
    }
}

/// The failure row of an item that is not fetched at all: an invalid line,
/// or an ID dated before the retention window.
fn unfetched(item: &SourceItem) -> Option<FailureRow> {
    let (id, line, reason, message) = match item {
        SourceItem::Invalid {
            input,
            line,
            reason,
        } => (
            String::new(),
            *line,
            Reason::InvalidId,
            format!("{input} line {line}: {reason}"),
        ),
        SourceItem::OutsideRetention { id, line } => (
            id.clone(),
            *line,
            Reason::OutsideRetention,
            "dated before `state.retention`: not fetched; `--include-old` fetches it".to_owned(),
        ),
        _ => return None,
    };
    Some(FailureRow {
        id,
        line: Some(line),
        reason,
        http_status: None,
        attempts: 0,
        message,
        first_404_micros: None,
    })
}
