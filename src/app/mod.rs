//! The commands: each turns parsed arguments and the layered configuration
//! into a library call and an exit status. Only this layer prints to stdout.

mod bench;
mod daemon;
mod demo;
mod endpoint;
mod export;
pub mod health;
pub mod metrics;
mod reconcile;
mod report;
mod schema;
mod state;

use std::path::Path;
use std::sync::Arc;

use crate::cli::{Cli, Command, RunFlags};
use crate::config::{self, ConfigError, Settings};
use crate::exit::ExitStatus;
use crate::ledger::LedgerError;
use crate::stop::{Stop, StopReason};

pub use export::print_report;

/// Runs the command; an error ends it with [`exit_status_for`].
pub async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Export(args) => export::run(file, args).await,
        Command::Daemon(args) => {
            let settings = load_settings(file, &args.flags)?;
            let shutdown = Arc::new(Stop::default());
            watch_signals(shutdown.clone());
            daemon::run(settings, shutdown).await
        }
        Command::Simulate(args) => crate::simulator::serve_forever(args.sim, args.listen)
            .await
            .map(|()| ExitStatus::Success),
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Schema(args) => schema::run(file, &args),
        Command::Report(args) => report::run(&args),
        Command::Reconcile(args) => reconcile::run(file, &args).await,
        Command::CheckConfig(args) => check_config(file, &args.flags),
        Command::State(command) => state::run(file, command),
        Command::ShowConfig(args) => {
            let layered = config::load(file, args.flags.clone())?;
            let key_present = std::env::var(config::KEY_ENV).is_ok_and(|k| !k.trim().is_empty())
                || layered.raw.api.key_file.is_some();
            print!("{}", layered.to_toml(key_present));
            Ok(ExitStatus::Success)
        }
    }
}

/// Validates the configuration as `export` and `daemon` would use it: both
/// call the API, so a missing key is an error here too.
fn check_config(file: Option<&Path>, flags: &RunFlags) -> anyhow::Result<ExitStatus> {
    let settings = load_settings(file, flags)?;
    if settings.api.key.is_none() {
        anyhow::bail!(
            "no API key: set the environment variable `{}` or `api.key_file` in the configuration",
            config::KEY_ENV
        );
    }
    println!(
        "configuration is valid (output to `{}`)",
        settings.output.dir.display()
    );
    Ok(ExitStatus::Success)
}

/// The exit status for an error that ended a command.
pub fn exit_status_for(error: &anyhow::Error) -> ExitStatus {
    let locked = error
        .chain()
        .any(|cause| matches!(cause.downcast_ref(), Some(LedgerError::Locked { .. })));
    if locked {
        ExitStatus::Locked
    } else {
        ExitStatus::Error
    }
}

/// The layered configuration with the flags on top, narrowed to `--shard`.
fn load_settings(file: Option<&Path>, flags: &RunFlags) -> Result<Settings, ConfigError> {
    let settings = config::load(file, flags.clone())?.resolve()?;
    Ok(settings.for_shard(flags.shard.unwrap_or_default()))
}

/// First SIGINT/SIGTERM: stop taking IDs, finish in-flight work, commit.
/// Second: exit 130 at once (committed files are whole either way).
pub fn watch_signals(stop: Arc<Stop>) {
    tokio::spawn(async move {
        let mut signals = 0;
        loop {
            if wait_for_signal().await.is_err() {
                return;
            }
            signals += 1;
            if signals == 1 {
                tracing::warn!(
                    "signal received: finishing in-flight requests and committing; signal again to quit now"
                );
                stop.trigger(StopReason::Interrupted);
            } else {
                eprintln!(
                    "second signal: exiting now; files already renamed into place are complete"
                );
                std::process::exit(i32::from(ExitStatus::Interrupted.code()));
            }
        }
    });
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
