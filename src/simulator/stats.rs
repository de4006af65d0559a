//! What the simulator served: lock-free counters, optional per-ID tracking and the snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

/// A snapshot of the simulator's counters (also served at `GET /_sim/stats`).
///
/// Only the two generation endpoints count; `/_sim/stats` and unknown paths do not.
/// Every counted request ends as exactly one of: a status in `by_status`, or a reset.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Every request received on either endpoint.
    pub requests: u64,
    pub metadata_requests: u64,
    pub content_requests: u64,
    /// Complete 200 answers (truncated ones do not count).
    pub served_ok: u64,
    /// Status sent, truncated 200s included under 200.
    pub by_status: BTreeMap<u16, u64>,
    /// 429s sent.
    pub rate_limited: u64,
    /// Requests that arrived while an announced 429 window was in force.
    pub during_pause: u64,
    /// Of those, the ones decided more than 20 ms after the window's first 429: a client
    /// cannot blame them on requests already in flight.
    pub late_in_pause: u64,
    /// Connections dropped without any answer.
    pub resets: u64,
    /// 200s whose body was cut.
    pub truncated: u64,
    /// Distinct IDs given a complete metadata 200 (only with `track_ids`).
    pub unique_ids_ok: u64,
    /// Complete metadata 200s for an ID that already had one (only with `track_ids`).
    pub duplicate_ok: u64,
    /// Per whole second since the first request: `[answers other than 429, 429s]` on the
    /// generation endpoints, for the first two hours.
    pub timeline: Vec<[u64; 2]>,
    /// The rate limit in force when the snapshot was taken (None when unlimited).
    pub effective_rate: Option<f64>,
}

/// Statuses are HTTP codes below 600; one slot each keeps `by_status` lock-free.
const STATUS_SLOTS: usize = 600;

/// Seconds the timeline covers; two slots each, preallocated so the hot path never locks.
const TIMELINE_SECONDS: usize = 7_200;

/// The live counters behind [`Stats`].
pub(crate) struct Counters {
    requests: AtomicU64,
    metadata_requests: AtomicU64,
    content_requests: AtomicU64,
    served_ok: AtomicU64,
    rate_limited: AtomicU64,
    during_pause: AtomicU64,
    late_in_pause: AtomicU64,
    resets: AtomicU64,
    truncated: AtomicU64,
    unique_ids_ok: AtomicU64,
    duplicate_ok: AtomicU64,
    by_status: Box<[AtomicU64]>,
    /// When the first request arrived: second 0 of the timeline.
    first: OnceLock<Instant>,
    /// `[other, 429]` per second, flattened.
    timeline: Box<[AtomicU64]>,
    /// One past the last timeline second with an answer.
    seconds: AtomicU64,
    /// Complete metadata 200s per ID, when tracking is on.
    ids: Option<Mutex<HashMap<Box<str>, u64>>>,
}

impl Counters {
    pub(crate) fn new(track_ids: bool) -> Self {
        Self {
            requests: AtomicU64::new(0),
            metadata_requests: AtomicU64::new(0),
            content_requests: AtomicU64::new(0),
            served_ok: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            during_pause: AtomicU64::new(0),
            late_in_pause: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            unique_ids_ok: AtomicU64::new(0),
            duplicate_ok: AtomicU64::new(0),
            by_status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            first: OnceLock::new(),
            timeline: (0..2 * TIMELINE_SECONDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            seconds: AtomicU64::new(0),
            ids: track_ids.then(|| Mutex::new(HashMap::new())),
        }
    }

    /// Counts a request arriving `at` and returns its 1-based sequence number.
    pub(crate) fn arrive(&self, metadata: bool, at: Instant) -> u64 {
        self.first.get_or_init(|| at);
        let endpoint = if metadata {
            &self.metadata_requests
        } else {
            &self.content_requests
        };
        endpoint.fetch_add(1, Relaxed);
        self.requests.fetch_add(1, Relaxed) + 1
    }

    /// When the first request arrived; `fallback` before any did.
    pub(crate) fn first_arrival(&self, fallback: Instant) -> Instant {
        self.first.get().copied().unwrap_or(fallback)
    }

    /// Counts an answer with `status` sent `at`, by status and on the timeline.
    pub(crate) fn answered(&self, status: u16, at: Instant) {
        if let Some(slot) = self.by_status.get(usize::from(status)) {
            slot.fetch_add(1, Relaxed);
        }
        let second = at
            .saturating_duration_since(self.first_arrival(at))
            .as_secs();
        let Ok(index) = usize::try_from(second) else {
            return;
        };
        let Some(slot) = self.timeline.get(2 * index + usize::from(status == 429)) else {
            return;
        };
        slot.fetch_add(1, Relaxed);
        // A plain load first: the shared maximum is only written once per second.
        if self.seconds.load(Relaxed) <= second {
            self.seconds.fetch_max(second + 1, Relaxed);
        }
    }

    pub(crate) fn rate_limited(&self, during_pause: bool, late: bool) {
        self.rate_limited.fetch_add(1, Relaxed);
        if during_pause {
            self.during_pause.fetch_add(1, Relaxed);
        }
        if late {
            self.late_in_pause.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn reset(&self) {
        self.resets.fetch_add(1, Relaxed);
    }

    pub(crate) fn truncated(&self) {
        self.truncated.fetch_add(1, Relaxed);
    }

    /// Counts a complete 200; metadata answers also feed the per-ID duplicate tracking.
    pub(crate) fn served_ok(&self, metadata_id: Option<&str>) {
        self.served_ok.fetch_add(1, Relaxed);
        let (Some(ids), Some(id)) = (&self.ids, metadata_id) else {
            return;
        };
        let mut ids = ids.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = ids.get_mut(id) {
            *count += 1;
            self.duplicate_ok.fetch_add(1, Relaxed);
        } else {
            ids.insert(id.into(), 1);
            self.unique_ids_ok.fetch_add(1, Relaxed);
        }
    }

    /// Every ID given a complete metadata 200 (none without `track_ids`).
    pub(crate) fn served_ids(&self) -> Vec<String> {
        self.ids.as_ref().map_or_else(Vec::new, |ids| {
            let ids = ids.lock().unwrap_or_else(PoisonError::into_inner);
            ids.keys().map(|id| id.to_string()).collect()
        })
    }

    /// Complete metadata 200s served for `id` (always 0 without `track_ids`).
    pub(crate) fn ok_count(&self, id: &str) -> u64 {
        self.ids.as_ref().map_or(0, |ids| {
            let ids = ids.lock().unwrap_or_else(PoisonError::into_inner);
            ids.get(id).copied().unwrap_or(0)
        })
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let by_status = self
            .by_status
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Relaxed);
                let code = u16::try_from(code).ok()?;
                (n > 0).then_some((code, n))
            })
            .collect();
        let seconds = usize::try_from(self.seconds.load(Relaxed)).unwrap_or(TIMELINE_SECONDS);
        let timeline = self
            .timeline
            .chunks_exact(2)
            .take(seconds)
            .map(|pair| [pair[0].load(Relaxed), pair[1].load(Relaxed)])
            .collect();
        Stats {
            requests: self.requests.load(Relaxed),
            metadata_requests: self.metadata_requests.load(Relaxed),
            content_requests: self.content_requests.load(Relaxed),
            served_ok: self.served_ok.load(Relaxed),
            by_status,
            rate_limited: self.rate_limited.load(Relaxed),
            during_pause: self.during_pause.load(Relaxed),
            late_in_pause: self.late_in_pause.load(Relaxed),
            resets: self.resets.load(Relaxed),
            truncated: self.truncated.load(Relaxed),
            unique_ids_ok: self.unique_ids_ok.load(Relaxed),
            duplicate_ok: self.duplicate_ok.load(Relaxed),
            timeline,
            effective_rate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_only_when_tracking() {
        let counters = Counters::new(true);
        let t0 = Instant::now();
        assert_eq!(counters.arrive(true, t0), 1);
        assert_eq!(counters.arrive(false, t0), 2);
        counters.served_ok(Some("a"));
        counters.served_ok(Some("a"));
        counters.served_ok(Some("b"));
        counters.served_ok(None);
        counters.answered(200, t0);
        counters.answered(200, t0);
        counters.answered(429, t0);
        counters.rate_limited(true, false);
        let stats = counters.snapshot();
        assert_eq!(
            (stats.unique_ids_ok, stats.duplicate_ok, stats.served_ok),
            (2, 1, 4)
        );
        assert_eq!(stats.by_status, BTreeMap::from([(200, 2), (429, 1)]));
        assert_eq!((stats.rate_limited, stats.during_pause), (1, 1));
        assert_eq!((stats.metadata_requests, stats.content_requests), (1, 1));
        assert_eq!(counters.ok_count("a"), 2);

        let untracked = Counters::new(false);
        untracked.served_ok(Some("a"));
        untracked.served_ok(Some("a"));
        let stats = untracked.snapshot();
        assert_eq!(
            (stats.unique_ids_ok, stats.duplicate_ok, stats.served_ok),
            (0, 0, 2)
        );
    }

    #[test]
    fn timeline_counts_answers_per_second_since_the_first_request() {
        let counters = Counters::new(false);
        let t0 = Instant::now();
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        assert!(counters.snapshot().timeline.is_empty());
        counters.arrive(true, t0);
        counters.answered(200, at(10));
        counters.answered(429, at(999));
        counters.answered(404, at(2_500));
        counters.answered(429, at(2_600));
        counters.answered(200, at(8_000_000));
        counters.rate_limited(true, true);
        let stats = counters.snapshot();
        assert_eq!(stats.timeline, vec![[1, 1], [0, 0], [1, 1]]);
        assert_eq!((stats.during_pause, stats.late_in_pause), (1, 1));
        assert_eq!(
            stats.by_status.get(&200),
            Some(&2),
            "beyond the cap still counts"
        );
    }
}
