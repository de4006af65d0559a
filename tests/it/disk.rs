//! A full disk, without root: the `genledger export` child runs under a file
//! size limit (`RLIMIT_FSIZE`), so a write past it fails with EFBIG as a write
//! to a full device fails with ENOSPC. The run must stop with one message
//! that names the file and says what is safe, leave nothing partial in view,
//! and a rerun must export every ID exactly once.
//!
//! The ledger is a file too and meets the same limit. Measured with strace on
//! 3,000 IDs: before the data file's first byte the ledger has written at most
//! ~300 KB of database and ~370 KB of log in all (a run under a 300 KB limit
//! still fails on the data file, one under 200 KB on the ledger), while the one
//! data file, uncompressed and closed at 3,000 rows, is ~1.4 MB as Parquet and
//! ~1.9 MB as CSV. The limit sits between them with room on both sides.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use genledger::ledger::Ledger;
use genledger::simulator::SimConfig;

use crate::crash::check_exactly_once;
use crate::support::*;

const IDS: usize = 3_000;
/// Bytes a file of the child may reach.
const FILE_SIZE_LIMIT: u64 = 768 * 1024;

fn export_command(base_url: &str, input: &Path, out: &Path, format: &str) -> Command {
    let mut cmd = genledger();
    cmd.args(["export", "--no-progress", "--rps", "100000"])
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(["--base-url", base_url])
        .env("OPENROUTER_API_KEY", KEY)
        .env("GENLEDGER_OUTPUT__FORMAT", format)
        // One file for the whole input, written when it closes at the last row.
        .env("GENLEDGER_OUTPUT__MAX_ROWS_PER_FILE", IDS.to_string())
        .env("GENLEDGER_OUTPUT__COMPRESSION", "none")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Limits the size of every file the child writes. SIGXFSZ is ignored, so a
/// write past the limit fails with EFBIG instead of killing the process; an
/// ignored signal stays ignored across `exec`.
fn limit_file_size(cmd: &mut Command, bytes: u64) {
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (setrlimit, signal), and nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The temporary directory (kept alive), the output directory in it, and the
/// input's IDs.
type Exported = (tempfile::TempDir, PathBuf, Vec<String>);

/// Runs an export that cannot write its data file, checks what it says and
/// what it leaves, then reruns it without the limit.
async fn full_disk_stops_the_run_then_a_rerun_finishes(format: &str, extension: &str) -> Exported {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(IDS, Duration::from_secs(86_400), &format!("full{format}"));
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let mut cmd = export_command(&sim.base_url(), &input, &out, format);
    limit_file_size(&mut cmd, FILE_SIZE_LIMIT);
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");

    // One message: the file, the cause in words, the OS error once, and
    // what is safe, each said once.
    let file_prefix = format!("`{}/generations/date=", out.display());
    let said = |what: &str| stderr.matches(what).count();
    assert_eq!(said(&file_prefix), 1, "the data file, once: {stderr}");
    assert!(
        stderr.contains(&format!(
            "{extension}`: it would grow past the largest file size"
        )),
        "{stderr}"
    );
    assert_eq!(said("files already committed are complete"), 1, "{stderr}");
    assert_eq!(said("os error"), 1, "{stderr}");
    assert_eq!(said("File too large"), 0, "no raw OS text: {stderr}");
    assert_eq!(said("External"), 0, "no wrapper of the encoder: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");

    // Nothing partial under a final name: the unfinished file is gone, and
    // any file in view reads back whole.
    let in_view: Vec<_> = all_files(&out.join("generations"))
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(in_view.is_empty(), "{in_view:?}");
    assert!(data_files(&out, extension).is_empty());
    {
        let ledger = Ledger::open(&out.join("_state/genledger.db"), &out).unwrap();
        let (pending, exported, failed) = ledger.status_counts().unwrap();
        assert_eq!((pending, exported, failed), (IDS as u64, 0, 0));
    }

    // With room again, the rerun exports everything, once.
    let rerun = run(export_command(&sim.base_url(), &input, &out, format)).await;
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun.stderr));
    (dir, out, ids)
}

#[tokio::test]
async fn full_disk_while_writing_parquet_names_the_file_once_and_the_rerun_exports_once() {
    let (_dir, out, ids) =
        full_disk_stops_the_run_then_a_rerun_finishes("parquet", ".parquet").await;
    check_exactly_once(&out, &ids);
}

#[tokio::test]
async fn full_disk_while_writing_csv_names_the_file_once_and_the_rerun_exports_once() {
    let (_dir, out, ids) = full_disk_stops_the_run_then_a_rerun_finishes("csv", ".csv").await;
    let mut seen: Vec<String> = csv_rows(&out)
        .into_iter()
        .map(|row| row["id"].clone().unwrap())
        .collect();
    seen.sort();
    let mut wanted = ids;
    wanted.sort();
    assert_eq!(seen, wanted, "every ID exactly once");
}
