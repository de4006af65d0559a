//! The benchmark's content run: metadata and stored content of IDs whose
//! prompts are 200 KiB of text zstd cannot shrink much, to show that memory
//! holds whatever the rows' size.

use std::fs;
use std::path::Path;

use super::{Sim, export_with, write_ids};

/// Bytes of each stored prompt the simulator serves.
const PROMPT_BYTES: usize = 200 << 10;

pub(super) fn rows(exe: &Path, dir: &Path, n: u64) -> anyhow::Result<Vec<String>> {
    let sim = Sim::start(exe, &["--content-prompt-bytes", &PROMPT_BYTES.to_string()])?;
    let ids = write_ids(dir, n, n + 1)?;
    let out = dir.join("content-out");
    eprintln!(
        "content: {n} IDs with {} KiB prompts ...",
        PROMPT_BYTES >> 10
    );
    let r = export_with(
        exe,
        &sim.base_url,
        &ids,
        &out,
        1_000_000.0,
        true,
        &["--with-content"],
    )?;
    let written = bytes_under(&out.join("content"));
    let _ = fs::remove_dir_all(&out);
    let _ = fs::remove_file(&ids);
    Ok(vec![format!(
        "content {n:>9} IDs, {} KiB prompts   {:>6.0} records/s   content exported {}   \
         {:.1} GiB of content files   peak RSS {:.1} MiB",
        PROMPT_BYTES >> 10,
        r.records_per_sec,
        r.content_exported,
        written as f64 / f64::from(1u32 << 30),
        r.peak_rss_mib
    )])
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
