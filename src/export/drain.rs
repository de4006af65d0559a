//! The sink thread: the one owner of every output file.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::dispatch::Outcome;
use super::live::LiveCounts;
use crate::record::IdStatus;
use crate::sink::{Sink, SinkError, SinkOutput};
use crate::stop::{Stop, StopReason};

/// How long the sink thread waits for more outcomes before it sleeps on the queue.
const SINK_NAP: Duration = Duration::from_millis(2);

/// The sink thread: writes every outcome; on an output error it stops the run
/// (data is at risk), drops the unfinished files and returns the error.
pub(super) fn drain_into_sink(
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
            Outcome::Content(content, seq, _queued) => sink
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
                // Said once, where the run ends (the command's error, the
                // daemon's failed tick), with what is safe; here only for
                // tracing the moment it happened.
                tracing::debug!(error = %e, "output failed; stopping the run");
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
