//! `genledger report DIR`: cost and tokens by model and day, read back.

use anyhow::Context;

use crate::cli::ReportArgs;
use crate::exit::ExitStatus;
use crate::report::{ReportFormat, read_export, render, svg};

/// Prints the report on stdout and writes the chart when asked.
pub fn run(args: &ReportArgs) -> anyhow::Result<ExitStatus> {
    let report = read_export(&args.dir, &args.by)?;
    if report.float_files > 0 {
        tracing::warn!(
            files = report.float_files,
            "money columns are float64 (output.money = \"float64\"): each value is summed \
             as the shortest decimal that reads back as its double, so totals are only as \
             exact as those doubles"
        );
    }
    let text = match args.format {
        ReportFormat::Table => render::table(&report),
        ReportFormat::Csv => render::csv(&report)?,
        ReportFormat::Json => render::json(&report)?,
    };
    print!("{text}");
    if let Some(path) = &args.svg {
        std::fs::write(path, svg::chart(&report))
            .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    Ok(ExitStatus::Success)
}
