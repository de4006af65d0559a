//! The daemon's `/metrics` (Prometheus text, encoded by `prometheus-client`)
//! and `/healthz`, served on `metrics.listen`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::client::RequestCounters;
use crate::export::summary::Counts;
use crate::limiter::Pacer;

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
    }

    pub fn tick_failed(&self, secs: f64) {
        self.ticks_failed.fetch_add(1, Ordering::Relaxed);
        self.last_tick_secs.store(secs.to_bits(), Ordering::Relaxed);
        self.healthy.store(false, Ordering::Relaxed);
    }

    pub fn tick_skipped(&self) {
        self.ticks_skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("genledger");
        self.register_requests(&mut registry);
        self.register_ids(&mut registry);
        self.register_ticks(&mut registry);
        self.register_rates(&mut registry);
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

/// Binds `addr` and serves `/metrics` and `/healthz` until the process ends.
/// Returns the bound address (useful with port 0).
pub async fn serve(addr: SocketAddr, metrics: Arc<DaemonMetrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(metrics.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn answer(
    metrics: Arc<DaemonMetrics>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" if metrics.is_healthy() => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "the last tick failed; see the logs\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(response)
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
}
