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

/// Credentials and data go to a plain-http endpoint only on loopback: a
/// MinIO on the LAN over http is refused before anything is fetched or
/// written, as a plain-http API is.
#[tokio::test]
async fn a_plain_http_endpoint_off_loopback_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/genledger.db");
    let mut cmd = with_output("export", "s3://bucket/usage", dir.path());
    cmd.env("GENLEDGER_STATE__PATH", &state)
        .env("AWS_ENDPOINT", "http://minio.internal:9000")
        .env("AWS_ALLOW_HTTP", "true")
        .stdin(std::process::Stdio::null());
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`AWS_ENDPOINT` = `http://minio.internal:9000` is plain http to a host that is not loopback"),
        "{stderr}"
    );
    assert!(!state.exists() && !genledger::layout::spool_dir(&state).exists());
}

mod moto;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use genledger::simulator::SimConfig;
use moto::{BUCKET, Moto};
use sha2::{Digest, Sha256};

/// An export of `input` to `s3://BUCKET/prefix` on `moto`, with its ledger
/// at `state`; files rotate at `rows` rows.
fn s3_export(moto: &Moto, base: &str, input: &Path, state: &Path, prefix: &str) -> Command {
    let out = format!("s3://{BUCKET}/{prefix}");
    let mut cmd = crate::crash::export_command(base, input, Path::new(&out));
    cmd.env("GENLEDGER_STATE__PATH", state);
    moto.env(&mut cmd);
    cmd
}

/// What a bucket prefix holds after the runs: every manifest's listed
/// objects, checked whole against their SHA-256; the IDs of each table's
/// listed files (each ID counted once per file it is in).
struct Published {
    /// Object key (relative to the prefix) → times listed by a manifest.
    listed: HashMap<String, usize>,
    /// Rows of every listed Parquet file of `generations`.
    rows: Vec<Row>,
    /// ID → how many listed `content` rows hold it.
    content_ids: HashMap<String, usize>,
}

async fn published(moto: &Moto, prefix: &str) -> Published {
    let mut found = Published {
        listed: HashMap::new(),
        rows: Vec::new(),
        content_ids: HashMap::new(),
    };
    for key in moto.keys(&format!("{prefix}/_manifests/")).await {
        let bytes = moto.get(&key).await.unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for f in manifest["files"].as_array().unwrap() {
            let rel = f["path"].as_str().unwrap();
            let data = moto
                .get(&format!("{prefix}/{rel}"))
                .await
                .unwrap_or_else(|| panic!("{rel} listed by {key} but missing"));
            assert_eq!(f["bytes"].as_u64().unwrap(), data.len() as u64, "{rel}");
            assert_eq!(f["sha256"], hex::encode(Sha256::digest(&data)), "{rel}");
            *found.listed.entry(rel.to_owned()).or_default() += 1;
            if !rel.ends_with(".parquet") {
                continue;
            }
            let rows = parquet_bytes_rows(data);
            assert_eq!(f["rows"].as_u64().unwrap(), rows.len() as u64, "{rel}");
            match f["kind"].as_str().unwrap() {
                "content" => {
                    for row in rows {
                        let id = row["id"].clone().unwrap();
                        *found.content_ids.entry(id).or_default() += 1;
                    }
                }
                _ => found.rows.extend(rows),
            }
        }
    }
    found
}

/// The promise, read from the bucket: every ID in exactly one listed file,
/// every object under a final name listed by exactly one manifest, no
/// multipart upload left, and nothing left in the local spool.
async fn check_bucket_exactly_once(
    moto: &Moto,
    prefix: &str,
    ids: &[String],
    content: bool,
    state: &Path,
) {
    let found = published(moto, prefix).await;
    let mut seen = HashSet::new();
    for row in &found.rows {
        let id = row["id"].clone().unwrap();
        assert!(seen.insert(id.clone()), "{id} is in two listed files");
    }
    let wanted: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(seen.len(), wanted.len(), "IDs lost");
    assert_eq!(seen, wanted);
    if content {
        assert!(
            found.content_ids.values().all(|&n| n == 1),
            "content doubled"
        );
        let with_content: HashSet<String> = found.content_ids.keys().cloned().collect();
        assert_eq!(with_content, wanted, "content lost");
    }
    for table in ["generations", "content", "failures"] {
        for key in moto.keys(&format!("{prefix}/{table}/")).await {
            let rel = key.strip_prefix(&format!("{prefix}/")).unwrap();
            assert_eq!(
                found.listed.get(rel),
                Some(&1),
                "{rel} must be listed by exactly one manifest"
            );
        }
    }
    // A process killed between the server starting an upload and the ledger
    // recording its ID leaves an upload nobody can name again (object_store
    // cannot list uploads). It holds no data: parts are sent only once the
    // ID is recorded. Any upload holding a part is a failure.
    for (key, id) in moto.uploads().await {
        assert_eq!(
            moto.parts(&key, &id).await,
            0,
            "{key}: an upload with data left"
        );
    }
    let spool = genledger::layout::spool_dir(state);
    let left: Vec<_> = all_files(&spool);
    assert!(left.is_empty(), "files left in the spool: {left:?}");
}

/// The same IDs to `s3://` and to a local directory read back as the same
/// rows (but `run_id` and `exported_at`); a second run adds nothing; the
/// server refuses a second create-only put of a manifest (moto 5.2.0 and
/// 5.2.1 did not, and the manifest's promise rests on it).
#[tokio::test]
async fn s3_and_local_exports_of_the_same_ids_read_back_the_same() {
    let moto = Moto::start().await;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(200, Duration::from_secs(86_400 * 3), "s3");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let state = dir.path().join("state/genledger.db");
    let base = sim.base_url();
    for _ in 0..2 {
        let mut cmd = s3_export(&moto, &base, &input, &state, "a/b");
        cmd.stderr(std::process::Stdio::piped());
        let output = run(cmd).await;
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    }
    check_bucket_exactly_once(&moto, "a/b", &ids, false, &state).await;
    let manifests = moto.keys("a/b/_manifests/").await;
    assert_eq!(
        manifests.len(),
        1,
        "the second run found nothing new: {manifests:?}"
    );
    let again = moto.put_if_absent(&manifests[0], b"{}").await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "a second create-only put of a manifest must be refused: {again:?}"
    );
    assert_ne!(moto.get(&manifests[0]).await.unwrap().as_ref(), b"{}");

    let local = dir.path().join("local");
    let output = run(crate::crash::export_command(&base, &input, &local)).await;
    assert_eq!(output.status.code(), Some(0));
    let strip = |mut rows: Vec<Row>| {
        for row in &mut rows {
            row.remove("run_id");
            row.remove("exported_at");
        }
        rows.sort_by(|a, b| a["id"].cmp(&b["id"]));
        rows
    };
    let remote = strip(published(&moto, "a/b").await.rows);
    assert_eq!(remote.len(), ids.len());
    assert_eq!(remote, strip(parquet_rows(&local)));
}

/// Content with 300 KiB prompts makes a content file of about 24 MiB, three
/// parts: killed once its first part is in, the upload is left unfinished
/// in the bucket, and the next start aborts it before anything else.
#[tokio::test]
async fn a_multipart_upload_killed_half_way_is_aborted_at_the_next_start() {
    let moto = Moto::start().await;
    let sim = start_sim(SimConfig {
        content_prompt_bytes: Some(300 << 10),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(100, Duration::from_secs(86_400 * 3), "mp");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let state = dir.path().join("state/genledger.db");
    let command = || {
        let mut cmd = s3_export(&moto, &sim.base_url(), &input, &state, "mp");
        cmd.arg("--with-content")
            .env("GENLEDGER_OUTPUT__MAX_ROWS_PER_FILE", "1000");
        cmd
    };
    let mut child = command().spawn().unwrap();
    let started = std::time::Instant::now();
    let upload = loop {
        let uploads = moto.uploads().await;
        if let Some((key, id)) = uploads.first()
            && moto.parts(key, id).await >= 1
        {
            break (key.clone(), id.clone());
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its upload was caught half way"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no multipart upload seen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(upload.0.starts_with("mp/content/"), "{upload:?}");
    assert_eq!(
        moto.uploads().await,
        vec![upload.clone()],
        "killed half way"
    );
    let rel = upload.0.strip_prefix("mp/").unwrap();
    assert_eq!(moto.get(&upload.0).await, None, "no object under {rel} yet");

    let mut cmd = command();
    cmd.stderr(std::process::Stdio::piped());
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    check_bucket_exactly_once(&moto, "mp", &ids, true, &state).await;
}

/// The crash campaign of `crash.rs` against `s3://` on moto: runs with
/// content on (512 KiB prompts, 30 rows a file: about 12 MiB, two parts)
/// killed at random moments,
/// simulator faults on, then a clean run. Nothing lost, nothing doubled,
/// every listed object whole, no unlisted object, no upload left.
/// `S3_KILL_ROUNDS` sets the number of killed runs (8 here, to keep the
/// suite short on two cores; the README gives the 24-round command).
#[tokio::test]
async fn kill_s3_exports_at_random_moments_then_rerun_exports_every_id_exactly_once() {
    let rounds: usize = std::env::var("S3_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    let moto = Moto::start().await;
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(4),
        latency_jitter: Duration::from_millis(8),
        error_rate: 0.02,
        content_prompt_bytes: Some(512 << 10),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let per_round = 40;
    let ids = ids(
        per_round * rounds,
        Duration::from_secs(86_400 * 2),
        "s3kill",
    );
    let state = dir.path().join("state/genledger.db");
    let base = sim.base_url();
    let command = |input: &Path| {
        let mut cmd = s3_export(&moto, &base, input, &state, "k");
        cmd.arg("--with-content")
            .env("GENLEDGER_OUTPUT__MAX_ROWS_PER_FILE", "30");
        cmd
    };
    let mut rng = fastrand::Rng::with_seed(19);
    let (mut kills, mut left_uploads) = (0, 0);
    for round in 0..rounds {
        let input = write_lines(dir.path(), "ids.txt", &ids[..per_round * (round + 1)]);
        let after = Duration::from_millis(if round % 4 == 0 {
            rng.u64(20..300)
        } else {
            // A run takes seconds here (two fetches at a time of 512 KiB
            // prompts), its uploads late in it.
            rng.u64(500..7_000)
        });
        kills += usize::from(crate::crash::kill_after(command(&input), after).await);
        // Each start aborts what the run before it left; count what it found.
        left_uploads += moto.uploads().await.len();
    }
    eprintln!(
        "{kills} of {rounds} runs killed mid-way, {left_uploads} multipart uploads left unfinished by them"
    );
    assert!(
        kills * 4 >= rounds * 3,
        "only {kills} of {rounds} runs were killed mid-way"
    );
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let mut cmd = command(&input);
    cmd.stderr(std::process::Stdio::piped());
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    check_bucket_exactly_once(&moto, "k", &ids, true, &state).await;
    let spool = genledger::layout::spool_dir(&state);
    let ledger = genledger::ledger::Ledger::open(&state, &spool).unwrap();
    let n = ids.len() as u64;
    assert_eq!(ledger.status_counts().unwrap(), (0, n, 0));
    assert_eq!(ledger.content_counts().unwrap(), (0, n, 0));
}

/// `genledger schema` for a bucket prints the statements that read the
/// files in place, naming the paths the export writes.
#[tokio::test]
async fn schema_for_a_bucket_reads_the_files_in_place() {
    let schema = |dialect: &str, output: &str| {
        let mut cmd = genledger();
        cmd.args([
            "schema",
            "--dialect",
            dialect,
            "--table",
            "generations",
            "--output",
            output,
        ]);
        cmd
    };
    let printed = |output: std::process::Output| {
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    let duckdb = printed(run(schema("duckdb", "s3://acme/usage/openrouter")).await);
    assert!(
        duckdb.contains("read_parquet('s3://acme/usage/openrouter/generations/*/*.parquet', hive_partitioning = true)"),
        "{duckdb}"
    );
    let bigquery = printed(run(schema("bigquery", "gs://acme/usage")).await);
    for wanted in [
        "CREATE EXTERNAL TABLE IF NOT EXISTS `DATASET.generations`",
        "WITH PARTITION COLUMNS (date DATE)",
        "uris = ['gs://acme/usage/generations/*']",
        "hive_partition_uri_prefix = 'gs://acme/usage/generations'",
        "    total_cost BIGNUMERIC,",
        "    exported_at TIMESTAMP\n)",
    ] {
        assert!(bigquery.contains(wanted), "want {wanted:?} in {bigquery}");
    }
    let columns = <genledger::record::Generation as genledger::schema::Row>::COLUMNS.len();
    let typed = bigquery
        .lines()
        .filter(|l| l.starts_with("    ") && !l.contains('='))
        .count();
    assert_eq!(typed, columns, "{bigquery}");
    let snowflake = printed(run(schema("snowflake", "s3://acme/usage")).await);
    for wanted in [
        "URL = 's3://acme/usage/'",
        "CREATE TABLE IF NOT EXISTS generations (",
        "COPY INTO generations\n    FROM @genledger_output/generations/",
        "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE;",
    ] {
        assert!(snowflake.contains(wanted), "want {wanted:?} in {snowflake}");
    }
    // A local output keeps the plain definitions.
    let local = printed(run(schema("duckdb", "out")).await);
    assert!(
        local.contains("CREATE TABLE IF NOT EXISTS generations"),
        "{local}"
    );
    assert!(!local.contains("read_parquet"), "{local}");
}
