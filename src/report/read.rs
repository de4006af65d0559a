//! Reads an export directory's `generations` data files back, streaming,
//! one [`Line`] per row: Parquet batch by batch (only the columns a line
//! holds, `rows`), CSV row by row.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::rows::{read_csv, read_parquet};
use super::{Dim, Line, Report};

/// What reading an export directory found besides its lines.
#[derive(Debug, Clone, Default)]
pub struct ExportFiles {
    /// The export's root (the directory holding `generations/`).
    pub root: PathBuf,
    /// Data files read.
    pub files: usize,
    /// Parquet files whose money columns were float64 rather than decimal.
    pub float_files: usize,
}

/// Reads every data file under `dir/generations/date=*/`, summing by model
/// and by day, and by `by` when given.
pub fn read_export(dir: &Path, by: &[Dim]) -> anyhow::Result<Report> {
    let mut report = Report::new(dir, by);
    let files = each_line(dir, |line| report.add(line))?;
    report.dir = files.root;
    report.files = files.files;
    report.float_files = files.float_files;
    Ok(report)
}

/// Calls `each` with every row of every data file under
/// `dir/generations/date=*/`.
pub fn each_line(
    dir: &Path,
    mut each: impl FnMut(Line<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<ExportFiles> {
    let root = export_root(dir)?;
    let files = data_files(&root)?;
    if files.is_empty() {
        bail!(
            "no export files in `{}` (expected generations/date=*/part-*.parquet or .csv)",
            root.display()
        );
    }
    let mut found = ExportFiles {
        root,
        ..ExportFiles::default()
    };
    for path in &files {
        let read = match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => read_parquet(path, &mut each).map(|float| {
                found.float_files += usize::from(float);
            }),
            _ => read_csv(path, &mut each),
        };
        read.with_context(|| format!("failed to read `{}`", path.display()))?;
        found.files += 1;
    }
    Ok(found)
}

/// `dir` itself when it holds `generations/`; else its only subdirectory
/// that does (the demo writes `parquet/` and `csv/` copies of one export,
/// which must not be summed together).
fn export_root(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("generations").is_dir() {
        return Ok(dir.to_owned());
    }
    let entries =
        fs::read_dir(dir).with_context(|| format!("failed to read `{}`", dir.display()))?;
    let mut exports: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("generations").is_dir())
        .collect();
    exports.sort();
    match exports.as_slice() {
        [] => bail!(
            "no export files in `{}`: it has no `generations` directory",
            dir.display()
        ),
        [one] => Ok(one.clone()),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect();
            bail!(
                "`{}` holds several exports ({}), which may hold the same generations; \
                 report on one of them, e.g. `genledger report {}`",
                dir.display(),
                names.join(", "),
                several[0].display()
            )
        }
    }
}

/// Data files in `date=` partitions, sorted; hidden (temporary) files skipped.
fn data_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let table = root.join("generations");
    let list = |dir: &Path| -> anyhow::Result<Vec<PathBuf>> {
        let entries =
            fs::read_dir(dir).with_context(|| format!("failed to read `{}`", dir.display()))?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to read `{}`", dir.display()))?;
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with('.') {
                paths.push(entry.path());
            }
        }
        paths.sort();
        Ok(paths)
    };
    let mut files = Vec::new();
    for partition in list(&table)? {
        let is_partition = partition
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("date="));
        if !is_partition || !partition.is_dir() {
            continue;
        }
        let data = list(&partition)?.into_iter().filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str());
            matches!(ext, Some("parquet" | "csv")) && p.is_file()
        });
        files.extend(data);
    }
    Ok(files)
}
