//! The daemon's stdin, read between ticks.

use std::io::{BufReader, Read};

use super::line::{LineKind, classify, read_line_capped};
use super::{ADMIT_BATCH, CARRIED_MAX, Carried, SourceError, SourceItem};
use crate::ledger::Ledger;
use crate::shard::Shard;

/// The daemon's stdin: records each ID as pending in the ledger as it
/// arrives (the next tick exports it), batching whatever is already buffered.
/// Invalid lines wait in `carried` for the next tick to record. Returns at
/// end of input.
pub fn feed_stdin(
    mut ledger: Ledger,
    shard: Shard,
    carried: &Carried,
    mut reader: BufReader<impl Read>,
) -> Result<u64, SourceError> {
    let mut buf = Vec::with_capacity(128);
    let mut batch: Vec<String> = Vec::new();
    let (mut line_no, mut admitted) = (0u64, 0u64);
    loop {
        buf.clear();
        line_no += 1;
        let (read, overlong, _) =
            read_line_capped(&mut reader, &mut buf).map_err(|source| SourceError::Read {
                path: "stdin".into(),
                line: line_no,
                source,
            })?;
        if read > 0 {
            match classify(&buf, line_no, overlong) {
                LineKind::Skip => {}
                LineKind::Id(id) if shard.owns(&id) => batch.push(id),
                LineKind::Id(_) => {}
                LineKind::Invalid(reason) => {
                    tracing::warn!(line = line_no, %reason, "invalid line on stdin");
                    let mut queue = carried.lock().unwrap_or_else(|e| e.into_inner());
                    if queue.len() < CARRIED_MAX {
                        queue.push_back(SourceItem::Invalid {
                            input: "stdin".into(),
                            line: line_no,
                            reason,
                        });
                    }
                }
            }
        }
        // Admit when nothing more is buffered: batches under load, at once when idle.
        let idle = read == 0 || reader.buffer().is_empty();
        if !batch.is_empty() && (idle || batch.len() >= ADMIT_BATCH) {
            let ids: Vec<&str> = batch.iter().map(String::as_str).collect();
            admitted += ledger.admit_pending(&ids, chrono::Utc::now().timestamp_micros())?;
            batch.clear();
        }
        if read == 0 {
            return Ok(admitted);
        }
    }
}
