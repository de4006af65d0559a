//! What the server accepted lately, counted in slots: the delivery the
//! controller reads a ceiling from, as BBR estimates a path from its
//! delivery rate rather than from the rate sent (why: see `control`).

use std::time::Duration;

use tokio::time::Instant;

/// Delivery is measured over at least this many answers, when there are.
pub(super) const CERTAIN_SAMPLE: f64 = 30.0;
/// Delivery is measured over the most recent [`MEASURE_MIN`], or longer
/// until [`CERTAIN_SAMPLE`] answers are in, and at most this far back: the
/// most recent past is what the rate was nearest the limit, and a span a
/// slow climb mostly spent below it would read the limit low.
const MEASURE_SPAN: Duration = Duration::from_secs(30);
const MEASURE_MIN: Duration = Duration::from_secs(2);

/// Accepted answers per [`SLOT`] over the last [`MEASURE_SPAN`].
#[derive(Debug, Clone, Default)]
pub(super) struct Delivery {
    slots: std::collections::VecDeque<(Instant, u64)>,
}

const SLOT: Duration = Duration::from_millis(10);

impl Delivery {
    pub(super) fn count(&mut self, now: Instant) {
        match self.slots.back_mut() {
            Some((start, n)) if now.saturating_duration_since(*start) < SLOT => *n += 1,
            _ => self.slots.push_back((now, 1)),
        }
        while self
            .slots
            .front()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) > MEASURE_SPAN + SLOT)
        {
            self.slots.pop_front();
        }
    }

    /// The answers of the shortest recent span, back to `floor` at most,
    /// that is [`MEASURE_MIN`] long and holds [`CERTAIN_SAMPLE`] answers:
    /// (answers, span).
    pub(super) fn recent(&self, floor: Instant, now: Instant) -> (u64, Duration) {
        let mut count = 0;
        let mut first = None;
        for &(start, n) in self.slots.iter().rev() {
            if start < floor {
                break;
            }
            count += n;
            first = Some(start);
            let span = now.saturating_duration_since(start);
            if span >= MEASURE_MIN && count as f64 >= CERTAIN_SAMPLE {
                return (count, span);
            }
        }
        // Everything since sending resumed, timed from its first answer:
        // the first request after a pause leaves a period after it ends,
        // and a span from the pause's end would read the limit low.
        let from = first.unwrap_or(floor);
        (count, now.saturating_duration_since(from))
    }

    /// Answers counted in slots that began at or after `from`.
    pub(super) fn since(&self, from: Instant) -> u64 {
        self.slots
            .iter()
            .filter(|(start, _)| *start >= from)
            .map(|(_, n)| n)
            .sum()
    }
}
