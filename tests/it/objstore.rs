//! Output to object storage: `output.dir` as a bucket URL, the commit
//! protocol without rename, and its reconciliation, against a real
//! S3-compatible server (moto) on loopback.

use std::path::Path;

use crate::support::*;

/// A command that checks or exports with `output.dir` = `out`, from `cwd`.
fn with_output(command: &str, out: &str, cwd: &Path) -> std::process::Command {
    let mut cmd = genledger();
    cmd.current_dir(cwd)
        .args([command, "--output", out])
        .env("OPENROUTER_API_KEY", KEY);
    if command == "export" {
        cmd.args(["--no-progress", "--input", "-"]);
    }
    cmd
}

/// `--output s3://x` used to make a local directory named `s3:`; a scheme
/// genledger cannot write to is an error that says what it can write to.
#[tokio::test]
async fn an_unknown_url_scheme_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["check-config", "export"] {
        let output = run(with_output(command, "hdfs://namenode/usage", dir.path())).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("`output.dir`"), "{stderr}");
        assert!(stderr.contains("the scheme `hdfs`"), "{stderr}");
        assert!(stderr.contains("s3://BUCKET/PREFIX"), "{stderr}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused output left {left:?}");
}

/// The ledger is SQLite on a local disk: a bucket output without
/// `state.path` says what to set, and a ledger in a bucket is refused.
#[tokio::test]
async fn a_remote_output_needs_a_local_state_path() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(with_output("check-config", "s3://bucket/usage", dir.path())).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("set `state.path`"), "{stderr}");
    assert!(stderr.contains("GENLEDGER_STATE__PATH"), "{stderr}");

    let mut cmd = with_output("check-config", "gs://bucket/usage", dir.path());
    cmd.env("GENLEDGER_STATE__PATH", "s3://bucket/state.db");
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("must be on a local disk"), "{stderr}");

    let mut cmd = with_output("check-config", "az://container/usage", dir.path());
    cmd.env(
        "GENLEDGER_STATE__PATH",
        dir.path().join("state/genledger.db"),
    );
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "check-config created {left:?}");
}
