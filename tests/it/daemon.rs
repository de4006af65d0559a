//! The daemon as an operator runs it: the binary on a one-second schedule
//! over a queue file that grows, rotates and ends in a partial line; SIGTERM
//! mid-tick; `/metrics`; and shards that split one input.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use genledger::config::Format;
use genledger::shard::Shard;
use genledger::simulator::{SimConfig, SimHandle};

use crate::support::{self, KEY, genledger, ids, start_sim};

/// IDs in committed files (hidden temporary files skipped), with how often each appears.
fn committed_ids(out: &Path) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let Ok(partitions) = std::fs::read_dir(out.join("generations")) else {
        return seen;
    };
    for partition in partitions {
        for file in std::fs::read_dir(partition.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".parquet") {
                continue;
            }
            for batch in support::read_parquet(&path) {
                let col = batch.column_by_name("id").unwrap().as_string::<i32>();
                for id in col.iter().flatten() {
                    *seen.entry(id.to_owned()).or_insert(0) += 1;
                }
            }
        }
    }
    seen
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn lines(ids: &[String]) -> String {
    ids.iter().map(|id| format!("{id}\n")).collect()
}

fn config(dir: &Path, sim: &SimHandle, queue: &Path, metrics_port: Option<u16>) -> PathBuf {
    let mut toml = format!(
        "shutdown_timeout = \"60s\"\n[api]\nbase_url = \"{}\"\n[input]\npaths = [\"{}\"]\n\
         [output]\ndir = \"{}\"\n[fetch]\nrequests_per_second = 100000.0\nburst = 100\n\
         concurrency = 4\nbackoff_initial = \"1ms\"\nbackoff_max = \"20ms\"\n\
         [schedule]\ncron = \"* * * * * *\"\n",
        sim.base_url(),
        queue.display(),
        dir.join("out").display()
    );
    if let Some(port) = metrics_port {
        toml.push_str(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    }
    let path = dir.join("genledger.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn start_daemon(config: &Path) -> Child {
    start_daemon_with(config, &[])
}

/// The daemon with extra environment variables.
fn start_daemon_with(config: &Path, env: &[(&str, &str)]) -> Child {
    genledger()
        .args(["--config", config.to_str().unwrap(), "-v", "daemon"])
        .env("OPENROUTER_API_KEY", KEY)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the daemon starts")
}

/// Waits (polling the committed files) until `want` distinct IDs are exported.
async fn wait_for(out: &Path, want: usize, daemon: &mut Child) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = committed_ids(out);
        if seen.len() >= want {
            return seen;
        }
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!("the daemon exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {want} IDs exported in time",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM, then the exit code and stderr.
async fn terminate(daemon: Child) -> (Option<i32>, String) {
    let pid = daemon.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = tokio::task::spawn_blocking(move || daemon.wait_with_output().unwrap())
        .await
        .unwrap();
    (output.status.code(), support::text(&output.stderr))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn metric(samples: &[prometheus_parse::Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    let found = samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)));
    match found.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v)) => *v,
        Some(prometheus_parse::Value::Untyped(v)) => *v,
        other => panic!("metric {name} {label:?}: {other:?}"),
    }
}

async fn scrape(port: u16, path: &str) -> (u16, String) {
    genledger::client::install_crypto();
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .expect("metrics endpoint answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_follows_a_growing_rotating_queue_file_and_exports_each_id_once() {
    let sim = start_sim(SimConfig {
        track_ids: true,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let queue = dir.path().join("queue.log");
    let batches: Vec<Vec<String>> = (0..4)
        .map(|n| ids(60, Duration::from_secs(3600), &format!("q{n}")))
        .collect();
    // First batch, then half of a line the writer has not finished.
    let partial = ids(1, Duration::from_secs(3600), "partial").remove(0);
    let (head, tail) = partial.split_at(10);
    append(&queue, &(lines(&batches[0]) + head));
    let port = free_port();
    let mut daemon = start_daemon(&config(dir.path(), &sim, &queue, Some(port)));

    let seen = wait_for(&out, 60, &mut daemon).await;
    assert!(
        !seen.keys().any(|id| partial.starts_with(id.as_str())),
        "a partial line was exported"
    );
    // The writer finishes the line and goes on.
    append(&queue, &(format!("{tail}\n") + &lines(&batches[1])));
    wait_for(&out, 121, &mut daemon).await;

    // Rotation: the file is renamed away, the writer still appends to it
    // briefly (same inode), then a new file takes the name.
    let rotated = dir.path().join("queue.log.1");
    std::fs::rename(&queue, &rotated).unwrap();
    append(&rotated, &lines(&batches[2]));
    append(&queue, &lines(&batches[3]));
    let seen = wait_for(&out, 241, &mut daemon).await;

    let mut expected: Vec<String> = batches.concat();
    expected.push(partial);
    expected.sort();
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(seen.values().all(|&n| n == 1), "an ID was written twice");
    let stats = sim.stats();
    assert_eq!(stats.duplicate_ok, 0, "an ID was fetched twice");
    assert_eq!(stats.unique_ids_ok, 241);

    // /metrics agrees with the files and the simulator, once the tick that
    // wrote the last file has ended (its totals count at the tick's end).
    let deadline = Instant::now() + Duration::from_secs(30);
    let parsed = loop {
        let (status, body) = scrape(port, "/metrics").await;
        assert_eq!(status, 200);
        let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("/metrics parses as Prometheus text");
        let done = metric(&parsed.samples, "genledger_ids_exported_total", None) >= 241.0;
        if done || Instant::now() > deadline {
            break parsed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let samples = &parsed.samples;
    assert_eq!(metric(samples, "genledger_ids_exported_total", None), 241.0);
    assert_eq!(metric(samples, "genledger_ids_failed_total", None), 0.0);
    assert_eq!(
        metric(samples, "genledger_requests_total", Some(("status", "200"))),
        stats.served_ok as f64
    );
    assert_eq!(
        metric(
            samples,
            "genledger_ledger_ids",
            Some(("status", "exported"))
        ),
        241.0
    );
    assert!(metric(samples, "genledger_last_success_timestamp_seconds", None) > 1.7e9);
    assert!(metric(samples, "genledger_rate_per_second", None) > 0.0);
    assert_eq!(scrape(port, "/healthz").await.0, 200);

    let (code, stderr) = terminate(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
}

/// A long tick shows on `/metrics` while it runs: the requests and the tick's
/// IDs so far move before any tick has ended, and `/healthz` stays 200.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_during_a_long_tick() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue.log");
    append(&queue, &lines(&ids(400, Duration::from_secs(3600), "long")));
    let port = free_port();
    let mut daemon = start_daemon(&config(dir.path(), &sim, &queue, Some(port)));
    genledger::client::install_crypto();
    let deadline = Instant::now() + Duration::from_secs(60);
    let samples = loop {
        assert!(Instant::now() < deadline, "no tick made progress in time");
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
            continue;
        };
        let body = response.text().await.unwrap();
        let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("/metrics parses as Prometheus text");
        let exported = metric(
            &parsed.samples,
            "genledger_tick_ids",
            Some(("outcome", "exported")),
        );
        if exported > 0.0 {
            break parsed.samples;
        }
    };
    // 400 answers at 100 ms, four at a time, take ten seconds: the first tick is still running.
    assert_eq!(
        metric(&samples, "genledger_ticks_total", Some(("outcome", "ok"))),
        0.0
    );
    assert!(
        metric(
            &samples,
            "genledger_requests_total",
            Some(("status", "200"))
        ) > 0.0
    );
    assert_eq!(scrape(port, "/healthz").await.0, 200);
    let (code, stderr) = terminate(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_tick_commits_and_exits_0_then_the_next_start_resumes() {
    // Slow answers so the first tick is still running when SIGTERM arrives.
    let sim = start_sim(SimConfig {
        track_ids: true,
        latency: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let queue = dir.path().join("queue.log");
    let first = ids(400, Duration::from_secs(3600), "first");
    append(&queue, &lines(&first));
    let config = config(dir.path(), &sim, &queue, None);
    let mut daemon = start_daemon(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.stats().served_ok < 20 {
        assert!(Instant::now() < deadline, "the first tick never started");
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, stderr) = terminate(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
    let after_stop = committed_ids(&out);
    assert!(
        !after_stop.is_empty() && after_stop.len() < first.len(),
        "expected a part of the IDs committed at the stop, got {}",
        after_stop.len()
    );
    assert!(after_stop.values().all(|&n| n == 1));
    // Everything answered before the stop landed in a committed file.
    assert_eq!(after_stop.len() as u64, sim.stats().served_ok);

    // The next start finishes the IDs the first left pending, and reads only
    // what was appended since (the saved offset), not the whole file again.
    let second = ids(50, Duration::from_secs(3600), "second");
    append(&queue, &lines(&second));
    let mut daemon = start_daemon(&config);
    let seen = wait_for(&out, first.len() + second.len(), &mut daemon).await;
    let (code, stderr) = terminate(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(seen.values().all(|&n| n == 1), "an ID was written twice");
    assert_eq!(sim.stats().duplicate_ok, 0, "an ID was fetched twice");
    let already_exported: u64 = manifests(&out)
        .iter()
        .map(|m| m["counts"]["already_exported"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        already_exported, 0,
        "lines before the saved offset were read again"
    );
}

fn manifests(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(out.join("_manifests"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_shards_split_one_input_into_disjoint_parts_that_cover_it() {
    let sim = start_sim(SimConfig {
        track_ids: true,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let all = ids(900, Duration::from_secs(3600), "shard");
    let input = support::write_lines(dir.path(), "ids.txt", &all);
    let base = support::settings(&sim, &input, &out, Format::Parquet);
    let mut parts = Vec::new();
    for index in 0..3 {
        let shard = Shard { index, count: 3 };
        let settings = base.clone().for_shard(shard);
        assert_eq!(
            settings.fetch.requests_per_second,
            base.fetch.requests_per_second / 3.0
        );
        let report = support::export(&settings).await;
        assert_eq!(report.exit_code, 0);
        assert_eq!(report.counts.exported + report.counts.other_shards, 900);
        let names: Vec<String> = report
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.contains(&format!("-{}-", shard.label()))),
            "{names:?}"
        );
        parts.push(report.counts.exported);
    }
    assert!(parts.iter().all(|&n| n > 200), "an uneven split: {parts:?}");
    // Each shard kept its own ledger.
    for label in ["0of3", "1of3", "2of3"] {
        assert!(
            out.join("_state")
                .join(format!("genledger-{label}.db"))
                .exists()
        );
    }
    let seen = committed_ids(&out);
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(seen.values().all(|&n| n == 1), "shards overlapped");
    assert_eq!(sim.stats().duplicate_ok, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schedule_is_evaluated_in_utc_whatever_the_local_zone() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let queue = dir.path().join("queue.log");
    append(&queue, &lines(&ids(5, Duration::from_secs(3600), "utc")));
    // One firing time, given as UTC hour, minute and second, a few seconds
    // ahead. Under a +05:30 local zone the same fields read as local time
    // would be hours away, so a tick soon proves the schedule is UTC.
    let at = chrono::Utc::now() + chrono::Duration::seconds(8);
    let cron = at.format("%-S %-M %-H * * *").to_string();
    let config = config(dir.path(), &sim, &queue, None);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("* * * * * *", &cron);
    std::fs::write(&config, text).unwrap();
    let mut daemon = start_daemon_with(&config, &[("TZ", "Asia/Kolkata")]);
    wait_for(&out, 5, &mut daemon).await;
    let (code, stderr) = terminate(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
    let next = at.format("%Y-%m-%dT%H:%M:%S").to_string();
    assert!(
        stderr.contains(&next),
        "start-up log does not name {next} (UTC): {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_that_never_appear_hold_no_tick_hostage() {
    // A 404 window, so IDs whose prefix lies ahead are not found yet.
    let sim = start_sim(SimConfig {
        young_not_found: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue.txt");
    // Prefixes a day ahead and in the year 5138: the simulator answers 404
    // for them as for generations not yet written, for good.
    let tomorrow = support::unix_now() + 86_400;
    let never = [
        format!("gen-{tomorrow}-aheadOfTheClock0001"),
        "gen-99999999999-absurdPrefix00000001".to_owned(),
    ];
    let first = ids(20, Duration::from_secs(86_400), "hostage");
    append(&queue, &lines(&never));
    append(&queue, &lines(&first));
    let config = config(dir.path(), &sim, &queue, None);
    let toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[fetch]\n", "[fetch]\nnot_found_grace = \"2s\"\n");
    std::fs::write(&config, toml).unwrap();
    let out = dir.path().join("out");
    let mut daemon = start_daemon(&config);
    wait_for(&out, 20, &mut daemon).await;
    // Later ticks still run and export what is appended.
    let more = ids(10, Duration::from_secs(86_400), "after");
    append(&queue, &lines(&more));
    let seen = wait_for(&out, 30, &mut daemon).await;
    assert!(seen.values().all(|&n| n == 1), "each ID once");
    // The two are failed once the grace has passed since their first 404.
    let state = out.join("_state").join("genledger.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ledger = genledger::ledger::Ledger::open(&state, &out).unwrap();
        let statuses: Vec<_> = never
            .iter()
            .map(|id| ledger.status_of(id).unwrap())
            .collect();
        if statuses
            .iter()
            .all(|s| *s == Some(genledger::record::IdStatus::Failed))
        {
            break;
        }
        assert!(Instant::now() < deadline, "still {statuses:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, stderr) = terminate(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
    let not_found = sim.stats().by_status.get(&404).copied().unwrap_or(0);
    assert!(
        (2..=16).contains(&not_found),
        "at most eight tries each: {not_found}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_reconciles_on_its_schedule_and_reports_what_is_missing_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let made = ids(60, Duration::from_secs(2 * 86_400), "dr");
    let account = support::write_lines(dir.path(), "account.txt", &made);
    let sim = start_sim(SimConfig {
        management_key: Some("mgmt-key-for-the-daemon".into()),
        activity_ids: Some(account),
        ..SimConfig::default()
    })
    .await;
    // Five of the sixty never reach the queue.
    let queue = dir.path().join("queue.log");
    append(&queue, &lines(&made[5..]));
    let port = free_port();
    let config = config(dir.path(), &sim, &queue, Some(port));
    append(&config, "[reconcile]\ncron = \"*/2 * * * * *\"\n");
    let mut daemon = start_daemon_with(
        &config,
        &[("OPENROUTER_MANAGEMENT_KEY", "mgmt-key-for-the-daemon")],
    );
    wait_for(&dir.path().join("out"), 55, &mut daemon).await;
    let missing_cost: f64 = made[..5]
        .iter()
        .map(|id| {
            genledger::simulator::generation(id)
                .total_cost
                .unwrap()
                .parse::<f64>()
                .unwrap()
        })
        .sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no reconciliation with all rows in time"
        );
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, body) = scrape(port, "/metrics").await;
        if !body.contains("genledger_reconcile_missing_requests") {
            continue;
        }
        let parsed =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let missing = metric(
            &parsed.samples,
            "genledger_reconcile_missing_requests",
            None,
        );
        if missing > 5.0 {
            continue; // a reconciliation from before the tick finished
        }
        assert_eq!(missing, 5.0);
        let cost = metric(
            &parsed.samples,
            "genledger_reconcile_missing_cost_usd",
            None,
        );
        assert!(
            (cost - missing_cost).abs() < 1e-9,
            "{cost} vs {missing_cost}"
        );
        break;
    }
    let (code, stderr) = terminate(daemon).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("mgmt-key-for-the-daemon"));
}
