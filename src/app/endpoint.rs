//! The daemon's HTTP endpoint on `metrics.listen`: `/metrics` and `/healthz`
//! answered from [`DaemonMetrics`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::health::Verdict;
use super::metrics::DaemonMetrics;

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
        "/healthz" => match metrics.verdict(Utc::now()) {
            Verdict::Healthy => (StatusCode::OK, "text/plain", "ok\n".into()),
            Verdict::LastTickFailed => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "the last tick failed; see the logs\n".into(),
            ),
            Verdict::Stalled { since } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!(
                    "stalled: no tick has finished or made progress since {}; see the logs\n",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ),
        },
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
