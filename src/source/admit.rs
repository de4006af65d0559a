//! Counting what the ledger said of each offered ID, and what to send on.

use super::IdSource;
use crate::ledger::Admission;

/// What the source does with an admitted ID.
pub(super) enum Admitted {
    Nothing,
    Fetch(i64, Option<i64>, bool),
    ContentOnly(i64),
    OutsideRetention,
}

impl IdSource {
    /// Counts one admission; for an ID to fetch, its number, first 404 and
    /// whether its content is due.
    pub(super) fn count(&mut self, id: &str, admission: Admission) -> Admitted {
        let counts = &mut self.counts;
        let done = matches!(
            admission,
            Admission::AlreadyExported | Admission::AlreadyFailed
        );
        if done
            && !self
                .done_seen
                .insert(xxhash_rust::xxh3::xxh3_64(id.as_bytes()))
        {
            counts.duplicates += 1;
            return Admitted::Nothing;
        }
        if admission == Admission::Duplicate {
            counts.duplicates += 1;
            return Admitted::Nothing;
        }
        counts.ids += 1;
        match admission {
            Admission::Duplicate => Admitted::Nothing,
            Admission::AlreadyExported => {
                counts.already_exported += 1;
                Admitted::Nothing
            }
            Admission::AlreadyFailed => {
                counts.previously_failed += 1;
                Admitted::Nothing
            }
            Admission::ContentDue { seq } => {
                counts.already_exported += 1;
                counts.content_only += 1;
                Admitted::ContentOnly(seq)
            }
            Admission::OutsideRetention => {
                counts.outside_retention += 1;
                Admitted::OutsideRetention
            }
            Admission::Fetch {
                seq,
                first_404_micros,
                content_due,
            } => {
                counts.to_fetch += 1;
                Admitted::Fetch(seq, first_404_micros, content_due)
            }
        }
    }
}
