//! `genledger state …`: the ledger looked after from outside a run.

use std::path::Path;

use anyhow::Context;

use super::load_settings;
use crate::cli::{FailuresArgs, StateArgs, StateCommand, SummaryFormat};
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::export::{failures, first_kept_day};
use crate::ledger::{Ledger, LedgerInfo, Pruned, StateLock};
use crate::state::check::{self, CheckOptions, CheckReport};
use crate::state::rebuild;

pub fn run(file: Option<&Path>, command: StateCommand) -> anyhow::Result<ExitStatus> {
    match command {
        StateCommand::Info(args) => {
            let (settings, ledger, _lock) = open(file, &args)?;
            let info = ledger.info()?;
            print_info(&settings, &info, args.format)?;
            Ok(ExitStatus::Success)
        }
        StateCommand::Prune(args) => {
            let (settings, mut ledger, _lock) = open(file, &args.state)?;
            let before = ledger.info()?.bytes;
            let pruned = ledger.prune(first_kept_day(&settings), true, args.dry_run)?;
            let after = ledger.info()?.bytes;
            match args.state.format {
                SummaryFormat::Json => println!(
                    "{}",
                    serde_json::json!({"dry_run": args.dry_run, "pruned": pruned, "bytes_before": before, "bytes_after": after})
                ),
                SummaryFormat::Text => print_pruned(&pruned, args.dry_run, before, after),
            }
            Ok(ExitStatus::Success)
        }
        StateCommand::Rebuild(args) => {
            let settings = load_settings(file, &args.flags)?;
            local_output_only(&settings, "state rebuild")?;
            rebuild_state(&settings)
        }
        StateCommand::Check(args) => {
            let (settings, ledger, _lock) = open(file, &args.state)?;
            let options = CheckOptions {
                deep: args.deep,
                first_kept_day: first_kept_day(&settings),
            };
            let report = check::check(&ledger, &settings.output.dir, options)?;
            print_check(&settings, &report, args.state.format)?;
            Ok(if report.ok {
                ExitStatus::Success
            } else {
                ExitStatus::Partial
            })
        }
        StateCommand::Failures(args) => print_failures(file, &args),
    }
}

/// `state failures RUN_ID`: the run's failures CSV on stdout. It only
/// reads, so it takes no state lock and works while a daemon runs.
fn print_failures(file: Option<&Path>, args: &FailuresArgs) -> anyhow::Result<ExitStatus> {
    let settings = load_settings(file, &args.flags.run_flags())?;
    let path = &settings.state_path;
    if !path.is_file() {
        anyhow::bail!(
            "no ledger at `{}` (set `--output` or `state.path`)",
            path.display()
        );
    }
    let ledger = Ledger::open(path, &settings.output.dir)
        .with_context(|| format!("cannot open the ledger `{}`", path.display()))?;
    let Some(run_no) = ledger.run_no_of(&args.run_id)? else {
        anyhow::bail!(
            "the ledger `{}` knows no run `{}` (run IDs name the files of `_manifests/`)",
            path.display(),
            args.run_id
        );
    };
    match failures::write_csv(&ledger, run_no, std::io::stdout().lock()) {
        Ok(rows) => tracing::info!(run_id = %args.run_id, rows, "failures written from the ledger"),
        // The reader had enough (`| head`): not an error.
        Err(e) if is_broken_pipe(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(ExitStatus::Success)
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn print_check(
    settings: &Settings,
    report: &CheckReport,
    format: SummaryFormat,
) -> anyhow::Result<()> {
    if format == SummaryFormat::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let c = &report.checked;
    println!(
        "checked `{}`: integrity, {} committed files, {} manifests, {} queue offsets{}",
        settings.state_path.display(),
        c.committed_files,
        c.manifests,
        c.queue_offsets,
        c.ids_read
            .map(|n| format!(", {n} IDs read back"))
            .unwrap_or_default()
    );
    for w in &report.warnings {
        println!("warning [{}]: {}", w.check, w.message);
    }
    for p in &report.problems {
        println!("problem [{}]: {}", p.check, p.message);
    }
    match report.problems.len() {
        0 => println!("ok"),
        1 => println!("1 problem found"),
        n => println!("{n} problems found"),
    }
    Ok(())
}

/// `state rebuild`, with what it found on stdout and damaged files on stderr.
fn rebuild_state(settings: &Settings) -> anyhow::Result<ExitStatus> {
    let done = rebuild::rebuild(settings)?;
    println!(
        "ledger `{}` rebuilt from `{}`: {} runs, {} files, {} IDs exported, {} contents exported, {} IDs failed",
        settings.state_path.display(),
        settings.output.dir.display(),
        done.runs,
        done.files,
        done.ids_exported,
        done.contents_exported,
        done.ids_failed
    );
    if done.adopted > 0 {
        println!(
            "  {} data files no manifest listed were adopted and listed in a new manifest",
            done.adopted
        );
    }
    if let Some(aside) = &done.set_aside {
        println!(
            "  the ledger that was there is kept as `{}`",
            aside.display()
        );
    }
    if done.damaged.is_empty() {
        return Ok(ExitStatus::Success);
    }
    eprintln!(
        "error: {} listed files are missing or not whole; their IDs will be exported again:",
        done.damaged.len()
    );
    for path in &done.damaged {
        eprintln!("  {}", path.display());
    }
    Ok(ExitStatus::Partial)
}

/// `state rebuild` and `state check` read the output's files from a local
/// directory; a bucket output is refused, not taken for an empty directory.
fn local_output_only(settings: &Settings, command: &str) -> anyhow::Result<()> {
    match &settings.output.remote {
        None => Ok(()),
        Some(url) => anyhow::bail!(
            "`genledger {command}` reads the output from a local directory, and `{url}` is in object storage; \
             copy the output to a local directory and give it as `--output` (with the same `state.path`)"
        ),
    }
}

/// The settings, the ledger (which must exist) and the state lock.
fn open(file: Option<&Path>, args: &StateArgs) -> anyhow::Result<(Settings, Ledger, StateLock)> {
    let settings = load_settings(file, &args.flags.run_flags())?;
    let path = &settings.state_path;
    if !path.is_file() {
        anyhow::bail!(
            "no ledger at `{}` (set `--output` or `state.path`)",
            path.display()
        );
    }
    let lock = StateLock::acquire(path)?;
    let ledger = Ledger::open(path, &settings.output.dir)
        .with_context(|| format!("cannot open the ledger `{}`", path.display()))?;
    Ok((settings, ledger, lock))
}

fn print_info(settings: &Settings, info: &LedgerInfo, format: SummaryFormat) -> anyhow::Result<()> {
    if format == SummaryFormat::Json {
        println!("{}", serde_json::to_string_pretty(info)?);
        return Ok(());
    }
    let retention = settings.retention.map_or_else(
        || "for ever".to_owned(),
        |r| humantime::format_duration(r).to_string(),
    );
    println!("ledger `{}`", settings.state_path.display());
    println!(
        "  size               {:>12} bytes ({} free)",
        info.bytes, info.free_bytes
    );
    println!("  exported (settled) {:>12}", info.settled);
    println!("  exported, content due {:>9}", info.exported_content_due);
    println!("  pending            {:>12}", info.pending);
    println!("  failed             {:>12}", info.failed);
    println!("  runs               {:>12}", info.runs);
    let (open, staged, committed) = info.files;
    println!("  files              {committed:>12} committed ({staged} staged, {open} open)");
    println!("  retention          {retention:>12}");
    if let (Some(first), Some(last)) = (info.settled_by_day.first(), info.settled_by_day.last()) {
        println!(
            "  days               {:>12} ({} to {})",
            info.settled_by_day.len(),
            first.0,
            last.0
        );
        for (day, rows) in &info.settled_by_day {
            println!("    {day}  {rows:>10}");
        }
    }
    Ok(())
}

fn print_pruned(pruned: &Pruned, dry_run: bool, before: u64, after: u64) {
    let verb = if dry_run { "would drop" } else { "dropped" };
    println!(
        "{verb} {} days ({} IDs), {} failed IDs and {} failure rows older than the window; {} days {}compacted; {before} -> {after} bytes",
        pruned.days_dropped,
        pruned.ids_dropped,
        pruned.failed_dropped,
        pruned.failure_rows_dropped,
        pruned.days_compacted,
        if dry_run { "to be " } else { "" }
    );
}
