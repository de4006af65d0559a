//! What the daemon's `/metrics` (Prometheus text, encoded by
//! `prometheus-client`) and `/healthz` report. The request counters and the
//! running tick's counts are live: they move during a long tick, fed by the
//! run's progress reports; the `_total` ID counters grow as each tick ends.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::health::{HealthRule, Verdict};
use crate::client::RequestCounters;
use crate::export::summary::Counts;
use crate::limiter::Pacer;
use crate::progress::{Progress, Snapshot};

/// What the daemon has done since it started, and how the last tick went.
pub struct DaemonMetrics {
    pub requests: Arc<RequestCounters>,
    pub pacer: Arc<Pacer>,
    exported: AtomicU64,
    failed: AtomicU64,
    content_exported: AtomicU64,
    content_failed: AtomicU64,
    ticks_ok: AtomicU64,
    ticks_failed: AtomicU64,
    ticks_skipped: AtomicU64,
    /// Unix seconds of the end of the last tick that finished without error; 0 = none yet.
    last_success: AtomicU64,
    /// Seconds the last tick took, as `f64` bits.
    last_tick_secs: AtomicU64,
    /// The ledger's (pending, exported, failed) after the last tick.
    ledger: Mutex<(u64, u64, u64)>,
    /// False while the last tick ended in an error.
    healthy: AtomicBool,
    /// The running tick's counts so far (the last tick's, between ticks).
    tick: Mutex<Snapshot>,
    /// Unix milliseconds of the last sign of life: the start, a tick's end,
    /// or a running tick that finished an ID or got an answer.
    last_activity_ms: AtomicI64,
    /// When quiet counts as stalled; without one only a failed tick is unhealthy.
    health: Option<HealthRule>,
    /// The last reconciliation (`reconcile.cron`): requests missing, their
    /// cost in USD, and when it ran (Unix seconds).
    reconciled: Mutex<Option<(u64, f64, i64)>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

impl DaemonMetrics {
    pub fn new(requests: Arc<RequestCounters>, pacer: Arc<Pacer>) -> DaemonMetrics {
        DaemonMetrics {
            requests,
            pacer,
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            content_exported: AtomicU64::new(0),
            content_failed: AtomicU64::new(0),
            ticks_ok: AtomicU64::new(0),
            ticks_failed: AtomicU64::new(0),
            ticks_skipped: AtomicU64::new(0),
            last_success: AtomicU64::new(0),
            last_tick_secs: AtomicU64::new(0),
            ledger: Mutex::new((0, 0, 0)),
            healthy: AtomicBool::new(true),
            tick: Mutex::new(Snapshot::default()),
            last_activity_ms: AtomicI64::new(Utc::now().timestamp_millis()),
            health: None,
            reconciled: Mutex::new(None),
        }
    }

    /// Records what the last reconciliation found.
    pub fn reconcile_done(&self, missing_requests: u64, missing_cost_usd: f64, at: DateTime<Utc>) {
        let mut reconciled = self.reconciled.lock().unwrap_or_else(|e| e.into_inner());
        *reconciled = Some((missing_requests, missing_cost_usd, at.timestamp()));
    }

    /// Judges quiet by `rule`, counting from `started`.
    pub fn with_health(mut self, rule: HealthRule, started: DateTime<Utc>) -> DaemonMetrics {
        self.health = Some(rule);
        self.mark_activity(started);
        self
    }

    fn mark_activity(&self, at: DateTime<Utc>) {
        self.last_activity_ms
            .fetch_max(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// The last sign of life.
    pub fn last_activity(&self) -> DateTime<Utc> {
        let ms = self.last_activity_ms.load(Ordering::Relaxed);
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    /// What `/healthz` says at `now`.
    pub fn verdict(&self, now: DateTime<Utc>) -> Verdict {
        let failed = !self.healthy.load(Ordering::Relaxed);
        match &self.health {
            Some(rule) => rule.verdict(failed, self.last_activity(), now),
            None if failed => Verdict::LastTickFailed,
            None => Verdict::Healthy,
        }
    }

    /// A running tick's progress: its counts so far; a count that moved
    /// (an ID finished, an answer came) is a sign of life.
    pub fn tick_progress(&self, snapshot: &Snapshot, now: DateTime<Utc>) {
        let mut tick = self.tick.lock().unwrap_or_else(|e| e.into_inner());
        let moved = (snapshot.done, snapshot.requests) != (tick.done, tick.requests);
        *tick = *snapshot;
        drop(tick);
        if moved {
            self.mark_activity(now);
        }
    }

    /// Records a tick that ran to its end (whatever its IDs came to).
    pub fn tick_done(&self, counts: &Counts, secs: f64, ledger: Option<(u64, u64, u64)>) {
        self.exported.fetch_add(counts.exported, Ordering::Relaxed);
        self.failed.fetch_add(counts.failed, Ordering::Relaxed);
        self.content_exported
            .fetch_add(counts.content_exported, Ordering::Relaxed);
        self.content_failed
            .fetch_add(counts.content_failed, Ordering::Relaxed);
        self.ticks_ok.fetch_add(1, Ordering::Relaxed);
        self.last_tick_secs.store(secs.to_bits(), Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.last_success.store(now, Ordering::Relaxed);
        if let Some(counts) = ledger {
            *self.ledger.lock().unwrap_or_else(|e| e.into_inner()) = counts;
        }
        self.healthy.store(true, Ordering::Relaxed);
        self.mark_activity(Utc::now());
    }

    pub fn tick_failed(&self, secs: f64) {
        self.ticks_failed.fetch_add(1, Ordering::Relaxed);
        self.last_tick_secs.store(secs.to_bits(), Ordering::Relaxed);
        self.healthy.store(false, Ordering::Relaxed);
        self.mark_activity(Utc::now());
    }

    pub fn tick_skipped(&self) {
        self.ticks_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("genledger");
        self.register_requests(&mut registry);
        self.register_ids(&mut registry);
        self.register_tick(&mut registry);
        self.register_ticks(&mut registry);
        self.register_rates(&mut registry);
        self.register_reconcile(&mut registry);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// Requests by answer status, and the 429s among them.
    fn register_requests(&self, registry: &mut Registry) {
        let requests = Family::<StatusLabel, Counter>::default();
        for (status, n) in self.requests.by_status() {
            let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
            requests.get_or_create(&StatusLabel { status }).inc_by(n);
        }
        registry.register(
            "requests",
            "Requests to the generation endpoint by answer status (none: no answer)",
            requests,
        );
        registry.register(
            "rate_limited",
            "429 answers",
            counter(load(&self.requests.rate_limited)),
        );
    }

    /// What this process exported and failed, and the ledger's totals.
    fn register_ids(&self, registry: &mut Registry) {
        registry.register(
            "ids_exported",
            "IDs exported by this process",
            counter(load(&self.exported)),
        );
        registry.register(
            "ids_failed",
            "IDs recorded as failed by this process (invalid lines included)",
            counter(load(&self.failed)),
        );
        registry.register(
            "contents_exported",
            "Generation contents (prompt and completion) exported by this process",
            counter(load(&self.content_exported)),
        );
        registry.register(
            "contents_failed",
            "Generation contents recorded as failed by this process",
            counter(load(&self.content_failed)),
        );
        let (pending, exported, failed) = *self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let ledger = Family::<StatusLabel, Gauge>::default();
        for (status, n) in [
            ("pending", pending),
            ("exported", exported),
            ("failed", failed),
        ] {
            ledger
                .get_or_create(&StatusLabel {
                    status: status.into(),
                })
                .set(n as i64);
        }
        registry.register(
            "ledger_ids",
            "IDs in the state ledger by status, after the last tick",
            ledger,
        );
    }

    /// The running tick's counts, live (the last tick's between ticks).
    fn register_tick(&self, registry: &mut Registry) {
        let tick = *self.tick.lock().unwrap_or_else(|e| e.into_inner());
        let ids = Family::<OutcomeLabel, Gauge>::default();
        for (outcome, n) in [
            ("exported", tick.exported),
            ("failed", tick.failed),
            ("pending", tick.pending),
        ] {
            ids.get_or_create(&OutcomeLabel { outcome }).set(n as i64);
        }
        registry.register(
            "tick_ids",
            "IDs the running tick has finished so far, by outcome (the last tick's between ticks)",
            ids,
        );
        let contents = Family::<OutcomeLabel, Gauge>::default();
        for (outcome, n) in [
            ("exported", tick.content_exported),
            ("failed", tick.content_failed),
        ] {
            contents
                .get_or_create(&OutcomeLabel { outcome })
                .set(n as i64);
        }
        registry.register(
            "tick_contents",
            "Contents the running tick has finished so far, by outcome (the last tick's between ticks)",
            contents,
        );
    }

    /// Ticks by outcome, the last success and the last tick's duration.
    fn register_ticks(&self, registry: &mut Registry) {
        let ticks = Family::<OutcomeLabel, Counter>::default();
        for (outcome, n) in [
            ("ok", &self.ticks_ok),
            ("error", &self.ticks_failed),
            ("skipped", &self.ticks_skipped),
        ] {
            ticks
                .get_or_create(&OutcomeLabel { outcome })
                .inc_by(load(n));
        }
        registry.register("ticks", "Scheduled ticks by outcome", ticks);
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time the last successful tick ended (0: none yet)",
            float(load(&self.last_success) as f64),
        );
        registry.register(
            "last_tick_duration_seconds",
            "How long the last tick took",
            float(f64::from_bits(load(&self.last_tick_secs))),
        );
    }

    /// The request rate now, and the limit learned from the API.
    fn register_rates(&self, registry: &mut Registry) {
        registry.register(
            "rate_per_second",
            "Current adaptive request rate",
            float(self.pacer.rate()),
        );
        // Absent until a limit is learned: 0 would read as "the API allows nothing".
        if let Some(learned) = self.pacer.learned() {
            registry.register(
                "learned_rate_per_second",
                "The API's request limit as learned from its answers (kept for the next run)",
                float(learned),
            );
        }
    }
}

impl DaemonMetrics {
    /// The last reconciliation's findings; absent until one ran.
    fn register_reconcile(&self, registry: &mut Registry) {
        let reconciled = *self.reconciled.lock().unwrap_or_else(|e| e.into_inner());
        let Some((missing, cost, at)) = reconciled else {
            return;
        };
        registry.register(
            "reconcile_missing_requests",
            "Requests OpenRouter's Activity API counted that the export lacks (last 30 completed days)",
            float(missing as f64),
        );
        registry.register(
            "reconcile_missing_cost_usd",
            "The cost of the requests the export lacks, per the Activity API",
            float(cost),
        );
        registry.register(
            "reconcile_last_timestamp_seconds",
            "Unix time of the last reconciliation",
            float(at as f64),
        );
    }
}

/// The daemon hands its metrics to each tick as the run's progress reporter.
impl Progress for DaemonMetrics {
    fn update(&self, snapshot: &Snapshot) {
        self.tick_progress(snapshot, Utc::now());
    }

    fn finish(&self) {}
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn counter(n: u64) -> Counter {
    let c = Counter::<u64>::default();
    c.inc_by(n);
    c
}

fn float(v: f64) -> Gauge<f64, AtomicU64> {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(v);
    g
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn value(text: &str, name: &str) -> f64 {
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("Prometheus text");
        let sample = scrape.samples.iter().find(|s| s.metric == name);
        match sample.map(|s| &s.value) {
            // The parser reads an OpenMetrics `_total` sample as untyped.
            Some(
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v)
                | prometheus_parse::Value::Gauge(v),
            ) => *v,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn content_counts_add_up_over_ticks() {
        let pacer = Arc::new(Pacer::new(10.0, NonZeroU32::MIN, Some(8.0)));
        let metrics = DaemonMetrics::new(Arc::default(), pacer);
        let tick = Counts {
            exported: 5,
            content_exported: 4,
            content_failed: 1,
            ..Counts::default()
        };
        metrics.tick_done(&tick, 0.5, None);
        metrics.tick_done(&tick, 0.5, None);
        let text = metrics.render();
        assert_eq!(value(&text, "genledger_ids_exported_total"), 10.0);
        assert_eq!(value(&text, "genledger_contents_exported_total"), 8.0);
        assert_eq!(value(&text, "genledger_contents_failed_total"), 2.0);
    }

    #[test]
    fn the_learned_rate_is_shown_once_there_is_one() {
        let remembered = Arc::new(Pacer::new(10.0, NonZeroU32::MIN, Some(8.0)));
        let text = DaemonMetrics::new(Arc::default(), remembered).render();
        assert_eq!(value(&text, "genledger_learned_rate_per_second"), 8.0);
        let rate = value(&text, "genledger_rate_per_second");
        assert!(rate < 8.0 && rate > 7.0, "on the plateau under it: {rate}");
        let fresh = Arc::new(Pacer::new(10.0, NonZeroU32::MIN, None));
        let text = DaemonMetrics::new(Arc::default(), fresh).render();
        assert!(!text.contains("genledger_learned_rate_per_second"));
        assert_eq!(value(&text, "genledger_rate_per_second"), 10.0);
    }

    #[test]
    fn a_running_tick_shows_its_counts_before_it_ends() {
        let pacer = Arc::new(Pacer::new(10.0, NonZeroU32::MIN, None));
        let metrics = DaemonMetrics::new(Arc::default(), pacer);
        let midway = Snapshot {
            done: 7,
            exported: 5,
            failed: 1,
            pending: 1,
            requests: 9,
            ..Snapshot::default()
        };
        metrics.update(&midway);
        let text = metrics.render();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("Prometheus text");
        let tick = |outcome: &str| {
            let sample = scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == "genledger_tick_ids" && s.labels.get("outcome") == Some(outcome)
                })
                .unwrap_or_else(|| panic!("no tick_ids{{outcome={outcome}}} in {text}"));
            match sample.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            (tick("exported"), tick("failed"), tick("pending")),
            (5.0, 1.0, 1.0)
        );
        assert_eq!(
            value(&text, "genledger_ids_exported_total"),
            0.0,
            "the counter grows when the tick's files are committed"
        );
    }

    #[test]
    fn a_moving_tick_stays_healthy_and_a_quiet_one_stalls() {
        let schedule = crate::config::Schedule::parse("0 */5 * * * *").unwrap();
        let rule = HealthRule::new(schedule, std::time::Duration::from_secs(30));
        let start = DateTime::parse_from_rfc3339("2030-01-01T12:01:00Z")
            .unwrap()
            .to_utc();
        let pacer = Arc::new(Pacer::new(10.0, NonZeroU32::MIN, None));
        let metrics = DaemonMetrics::new(Arc::default(), pacer).with_health(rule, start);
        let minutes = |m: i64| start + chrono::Duration::minutes(m);
        assert_eq!(metrics.verdict(minutes(13)), Verdict::Healthy);
        assert_eq!(
            metrics.verdict(minutes(15)),
            Verdict::Stalled { since: start },
            "no tick ended and none moved through 12:05, 12:10 and 12:15"
        );
        // A long tick that keeps getting answers is alive.
        let mut snapshot = Snapshot::default();
        for m in [4, 9, 14] {
            snapshot.requests += 100;
            metrics.tick_progress(&snapshot, minutes(m));
        }
        assert_eq!(metrics.verdict(minutes(20)), Verdict::Healthy);
        // The same counts again are no sign of life.
        metrics.tick_progress(&snapshot, minutes(20));
        assert_eq!(
            metrics.verdict(minutes(31)),
            Verdict::Stalled { since: minutes(14) }
        );
        metrics.tick_failed(1.0);
        assert_eq!(metrics.verdict(Utc::now()), Verdict::LastTickFailed);
    }
}
