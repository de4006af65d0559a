//! `genledger export`: one run over the inputs, a summary, an exit status.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::{load_settings, watch_signals};
use crate::cli::{ExportArgs, SummaryFormat};
use crate::exit::ExitStatus;
use crate::export::summary::RunReport;
use crate::export::{self, RunOptions, Session};
use crate::progress::{Progress, Silent, TerminalProgress};
use crate::stop::Stop;

pub async fn run(file: Option<&Path>, args: ExportArgs) -> anyhow::Result<ExitStatus> {
    let settings = load_settings(file, &args.flags)?;
    let session = Session::open(&settings)?;
    let stop = Arc::new(Stop::default());
    watch_signals(stop.clone());
    let progress: Arc<dyn Progress> = if args.no_progress {
        Arc::new(Silent)
    } else {
        Arc::new(TerminalProgress::new(None))
    };
    let options = RunOptions {
        retry_failed: args.retry_failed,
        include_old: args.include_old,
        ..RunOptions::default()
    };
    let report = export::run_in(&session, &settings, &options, stop, progress).await?;
    print_report(&report, args.summary)?;
    Ok(report.status)
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
