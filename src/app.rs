//! The commands: each turns parsed flags and the layered configuration into a
//! library call and an exit code.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::{Cli, Command, ExportArgs, RunFlags, SummaryFormat};
use crate::config::{self, ConfigError, Settings};
use crate::ledger::LedgerError;
use crate::progress::{Progress, Silent, TerminalProgress};
use crate::stop::{Stop, StopReason};
use crate::summary::RunReport;
use crate::{bench, daemon, demo, export, simulator};

/// Exit code for a usage, configuration or I/O error.
pub const EXIT_ERROR: u8 = 2;

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Export(args) => run_export(cli.config.as_deref(), args).await,
        Command::Daemon(args) => {
            let settings = load_settings(cli.config.as_deref(), &args.flags)?;
            let shutdown = Arc::new(Stop::default());
            watch_signals(shutdown.clone());
            daemon::run(settings, shutdown).await
        }
        Command::Simulate(args) => simulator::serve_forever(args.sim, args.listen)
            .await
            .map(|()| 0),
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Schema(args) => crate::ddl::run(cli.config.as_deref(), &args),
        Command::Report(args) => crate::report::run(&args),
        Command::CheckConfig(args) => {
            let settings = load_settings(cli.config.as_deref(), &args.flags)?;
            println!(
                "configuration is valid (output to `{}`)",
                settings.output.dir.display()
            );
            Ok(0)
        }
        Command::ShowConfig(args) => {
            let layered = config::load(cli.config.as_deref(), &args.flags.overrides())?;
            let key_present = std::env::var(config::KEY_ENV).is_ok_and(|k| !k.trim().is_empty())
                || layered.raw.api.key_file.is_some();
            print!("{}", layered.to_toml(key_present));
            Ok(0)
        }
    }
}

/// Exit code when interrupted (committed work is intact).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Exit code when another process holds the state.
pub const EXIT_LOCKED: u8 = 4;

/// The exit code for an error that ended a command.
pub fn exit_code_for(error: &anyhow::Error) -> u8 {
    let locked = error
        .chain()
        .any(|cause| matches!(cause.downcast_ref(), Some(LedgerError::Locked { .. })));
    if locked { EXIT_LOCKED } else { EXIT_ERROR }
}

/// The layered configuration with the flags on top, narrowed to `--shard`.
fn load_settings(
    file: Option<&std::path::Path>,
    flags: &RunFlags,
) -> Result<Settings, ConfigError> {
    let settings = config::load(file, &flags.overrides())?.resolve()?;
    Ok(settings.for_shard(flags.shard.unwrap_or_default()))
}

async fn run_export(file: Option<&std::path::Path>, args: ExportArgs) -> anyhow::Result<u8> {
    let settings = load_settings(file, &args.flags)?;
    let stop = Arc::new(Stop::default());
    watch_signals(stop.clone());
    let progress: Arc<dyn Progress> = if args.no_progress {
        Arc::new(Silent)
    } else {
        Arc::new(TerminalProgress::new(None))
    };
    let options = export::RunOptions {
        retry_failed: args.retry_failed,
        ..export::RunOptions::default()
    };
    let report = export::run(&settings, &options, stop, progress).await?;
    print_report(&report, args.summary)?;
    Ok(report.exit_code)
}

/// Prints the summary on stdout; a refused key also goes to stderr, where
/// someone watching logs will see it.
pub fn print_report(report: &RunReport, format: SummaryFormat) -> anyhow::Result<()> {
    if let Some(stopped) = &report.stopped {
        eprintln!("error: {stopped}");
    }
    let mut out = std::io::stdout().lock();
    match format {
        SummaryFormat::Text => write!(out, "{report}"),
        SummaryFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(report)?),
    }
    .context("failed to print the summary")
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
                std::process::exit(i32::from(EXIT_INTERRUPTED));
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
