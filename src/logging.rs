//! Logging to stderr with `tracing`: `-v`/`-q` choose the level, `RUST_LOG`
//! overrides, `--log-format json` suits daemons.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Dependencies at warn, except the platform verifier: it logs each refused
/// certificate at error, once per request, while the run's stop message names
/// that cause and its fix once.
const DEPENDENCIES: &str = "warn,rustls_platform_verifier=off";

pub fn init(verbose: u8, quiet: bool, format: LogFormat) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    // Our own crate at the chosen level; dependencies stay at warn unless RUST_LOG says otherwise.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{DEPENDENCIES},genledger={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
