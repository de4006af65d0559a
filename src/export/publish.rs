//! The run's own files outside the ledger's protocol, the failures file and
//! the manifest, put where the output is. A local output has them in place
//! once renamed. A remote output has them written whole in the spool first,
//! then uploaded and removed from it: the failures file plainly (a run that
//! dies has it written again, whole, from the ledger), the manifest last and
//! create-only, so a manifest is never replaced once a reader may have seen it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::summary::RunReport;
use crate::config::Settings;
use crate::layout;
use crate::objstore::Remote;

/// Uploads a file written in the spool (a remote output) and removes the
/// local copy; nothing to do for a local output.
pub(super) fn publish(
    remote: Option<&Remote>,
    out_dir: &Path,
    local: &Path,
    create_only: bool,
) -> anyhow::Result<()> {
    let Some(remote) = remote else {
        return Ok(());
    };
    let relative = layout::relative(out_dir, local);
    remote
        .put_file(&relative, local, create_only)
        .with_context(|| format!("failed to upload `{}`", local.display()))?;
    let _ = std::fs::remove_file(local);
    Ok(())
}

/// Whether run `run_id`'s manifest is published.
pub(super) fn manifest_published(
    remote: Option<&Remote>,
    out_dir: &Path,
    run_id: &str,
    shard: &str,
) -> anyhow::Result<bool> {
    let path = layout::manifest_path(out_dir, run_id, shard);
    let Some(remote) = remote else {
        return Ok(path.exists());
    };
    let relative = layout::relative(out_dir, &path);
    Ok(remote.read(&relative)?.is_some())
}

/// Where a file of the output is, as the user knows it: its path, or for a
/// remote output its object's URL.
pub fn user_path(settings: &Settings, path: &Path) -> PathBuf {
    match &settings.output.remote {
        None => path.to_owned(),
        Some(url) => PathBuf::from(url.object_url(&layout::relative(&settings.output.dir, path))),
    }
}

/// The report's paths as the user knows them.
pub(super) fn user_paths(settings: &Settings, mut report: RunReport) -> RunReport {
    if settings.output.remote.is_none() {
        return report;
    }
    let each = |paths: &mut Vec<PathBuf>| {
        for p in paths.iter_mut() {
            *p = user_path(settings, p);
        }
    };
    each(&mut report.files);
    each(&mut report.content_files);
    for p in [&mut report.failures_file, &mut report.manifest]
        .into_iter()
        .flatten()
    {
        *p = user_path(settings, p);
    }
    report
}
