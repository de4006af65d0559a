//! The embedded OpenRouter simulator: both generation endpoints, deterministic records and
//! injectable faults, for `genledger simulate`, the test suite and the benchmark.
//!
//! `activity` serves the account's daily totals to a management key. `record` builds what an ID returns, `faults`, `gate` (the rate limiters) and `long` (when an
//! ID becomes queryable) decide how a request is answered, `response` and `server` put it on
//! the wire, `stats` counts what was served. `config` holds the knobs, `validate` their rules.

mod activity;
mod config;
mod content;
mod details;
mod dice;
mod faults;
mod gate;
mod json;
mod long;
mod pricing;
pub mod record;
mod response;
mod server;
mod stats;
mod validate;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};

pub use activity::SIM_USER_ID;
pub use config::{LimiterKind, RateLimitStyle, SimConfig};
pub use record::{AbsentKeys, SimContent, SimGeneration, content, content_with_prompt, generation};
pub use stats::Stats;
pub use validate::SimConfigError;

use server::Shared;
use stats::Counters;

/// Starts simulators; see [`SimConfig`] for the knobs.
pub struct Simulator;

impl Simulator {
    /// Binds `listen` (port 0 picks a free port) and serves in the background until the
    /// handle is shut down or dropped. An invalid config is an `InvalidInput` error.
    pub async fn start(config: SimConfig, listen: SocketAddr) -> std::io::Result<SimHandle> {
        config
            .validate()
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
        let account = match &config.activity_ids {
            Some(path) => std::fs::read_to_string(path)?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect(),
            None => Default::default(),
        };
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            counters: Counters::new(config.track_ids),
            faults: faults::Faults::new(config),
            account,
        });
        let (shutdown, watcher) = watch::channel(false);
        let task = tokio::spawn(server::accept_loop(listener, Arc::clone(&shared), watcher));
        Ok(SimHandle {
            addr,
            shared,
            shutdown,
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the server too, without waiting.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT/api/v1`; an unspecified listen address is reached through loopback.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/api/v1", SocketAddr::new(ip, self.addr.port()))
    }

    /// A snapshot of the counters, with the rate limit in force now.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Complete metadata 200s served for `id` so far (0 unless `track_ids`).
    pub fn ok_count(&self, id: &str) -> u64 {
        self.shared.counters.ok_count(id)
    }

    /// Stops accepting, lets in-flight answers finish (up to 5 s) and closes every connection.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Runs a simulator until ctrl-c (`genledger simulate`). Prints
/// `simulator listening on <base URL>` to stdout once bound, so whoever started it with port 0
/// learns the port at any verbosity, and logs the address at info.
pub async fn serve_forever(config: SimConfig, listen: SocketAddr) -> anyhow::Result<()> {
    let handle = Simulator::start(config, listen)
        .await
        .with_context(|| format!("failed to start the simulator on `{listen}`"))?;
    announce(&mut std::io::stdout().lock(), &handle.base_url());
    info!(addr = %handle.addr(), base_url = %handle.base_url(), "simulator listening");
    tokio::signal::ctrl_c()
        .await
        .context("failed to wait for ctrl-c")?;
    let stats = handle.stats();
    info!(
        requests = stats.requests,
        served_ok = stats.served_ok,
        rate_limited = stats.rate_limited,
        resets = stats.resets,
        truncated = stats.truncated,
        "simulator stopping"
    );
    handle.shutdown().await;
    Ok(())
}

/// Writes the listening line and flushes; a closed stdout must not stop the server.
fn announce(out: &mut impl Write, base_url: &str) {
    let written = writeln!(out, "simulator listening on {base_url}").and_then(|()| out.flush());
    if let Err(err) = written {
        debug!(%err, "could not print the simulator's address to stdout");
    }
}

#[cfg(test)]
mod tests;
