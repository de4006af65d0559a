//! The `genledger` executable as a user runs it: exit codes, messages on
//! stderr, configuration layers, and the API key kept out of everything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use genledger::simulator::SimConfig;

use crate::support::*;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The allocator settings that keep a million-ID export within its memory
/// budget must be in force before mimalloc starts; its own report of its
/// options (`MIMALLOC_VERBOSE`) shows whether they are.
#[cfg(target_os = "linux")]
#[test]
fn allocator_returns_freed_memory_at_once_and_commits_on_demand() {
    let out = genledger()
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = text(&out.stderr);
    assert!(report.contains("option 'purge_delay': 0"), "{report}");
    assert!(
        report.contains("option 'arena_eager_commit': 0"),
        "{report}"
    );
}

#[tokio::test]
async fn api_key_never_reaches_output_logs_or_files_even_at_trace() {
    let sim = start_sim(SimConfig {
        error_rate: 0.05,
        scripted_429_every: Some(40),
        scripted_pause: Duration::from_millis(50),
        unauthorized_after: Some(150),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut lines = ids(200, Duration::from_secs(86_400), "leak");
    lines.push("bad\u{1}line".into());
    let input = write_lines(dir.path(), "ids.txt", &lines);
    let out = dir.path().join("out");
    let mut cmd = genledger();
    cmd.args([
        "-vvv",
        "export",
        "--no-progress",
        "--concurrency",
        "4",
        "--rps",
        "5000",
    ])
    .arg("--input")
    .arg(&input)
    .arg("--output")
    .arg(&out)
    .args(["--base-url", &sim.base_url()])
    .env("OPENROUTER_API_KEY", KEY)
    .env("RUST_LOG", "trace")
    .env("GENLEDGER_FETCH__BACKOFF_INITIAL", "1ms")
    .env("GENLEDGER_FETCH__BACKOFF_MAX", "5ms");
    let output = run(cmd).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("refused the API key (401"), "{stderr}");
    assert!(stderr.lines().count() > 50, "trace logging was on");
    let secret = &KEY[10..];
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "key leaked to the terminal"
    );
    let files = all_files(&out);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("_manifests"))
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !text(&bytes).contains(secret),
            "key leaked into {}",
            file.display()
        );
    }

    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut cmd = genledger();
    cmd.arg("show-config")
        .env("GENLEDGER_API__KEY_FILE", &key_file)
        .env("OPENROUTER_API_KEY", KEY);
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).contains("****") && !text(&output.stdout).contains(secret));
}

#[tokio::test]
async fn layers_apply_in_order_defaults_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("genledger.toml");
    std::fs::write(
        &file,
        "[fetch]\nconcurrency = 3\nrequests_per_second = 7.0\nburst = 2\n",
    )
    .unwrap();
    let mut cmd = genledger();
    cmd.args(["show-config", "--concurrency", "5"])
        .arg("--config")
        .arg(&file)
        .env("GENLEDGER_FETCH__REQUESTS_PER_SECOND", "9.5");
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let shown: toml::Value = toml::from_str(&text(&output.stdout)).unwrap();
    let fetch = &shown["fetch"];
    assert_eq!(
        fetch["concurrency"].as_integer(),
        Some(5),
        "flag beats file"
    );
    assert_eq!(
        fetch["requests_per_second"].as_float(),
        Some(9.5),
        "env beats file"
    );
    assert_eq!(fetch["burst"].as_integer(), Some(2), "file beats default");
    assert_eq!(fetch["max_attempts"].as_integer(), Some(6), "default");
}

#[tokio::test]
async fn config_errors_name_the_key_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "bad-type.toml",
            "[fetch]\nrequests_per_second = \"fast\"\n",
            "requests_per_second",
        ),
        ("unknown.toml", "[fetch]\nrps = 5\n", "rps"),
        (
            "zero.toml",
            "[fetch]\nconcurrency = 0\n",
            "fetch.concurrency",
        ),
        (
            "insecure.toml",
            "[api]\nbase_url = \"http://example.com/api/v1\"\n",
            "api.base_url",
        ),
    ];
    for (name, body, key) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, body).unwrap();
        let mut cmd = genledger();
        cmd.arg("check-config").arg("--config").arg(&file);
        let output = run(cmd).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(name),
            "{name}: {stderr}"
        );
    }
    let mut cmd = genledger();
    cmd.arg("check-config").env("GENLEDGER_FETCH__BURST", "0");
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("GENLEDGER_FETCH__BURST"), "{stderr}");
    let mut cmd = genledger();
    cmd.args(["check-config", "--config", "/nonexistent/genledger.toml"]);
    assert_eq!(run(cmd).await.status.code(), Some(2));
}

#[tokio::test]
async fn every_shipped_config_file_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_file("config")).unwrap() {
        let path = entry.unwrap().path();
        let mut cmd = genledger();
        // Every command these files serve calls the API, so a key is needed.
        cmd.arg("check-config")
            .arg("--config")
            .arg(&path)
            .env("OPENROUTER_API_KEY", KEY);
        let output = run(cmd).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            text(&output.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 1);
}

#[tokio::test]
async fn export_without_a_key_or_input_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "ids.txt", &ids(1, Duration::ZERO, "k"));
    let mut cmd = genledger();
    cmd.arg("export")
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out"));
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("no API key"),
        "{}",
        text(&output.stderr)
    );
    let mut cmd = genledger();
    cmd.arg("export")
        .env("OPENROUTER_API_KEY", KEY)
        .arg("--output")
        .arg(dir.path().join("out"));
    let output = run(cmd).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("no input"),
        "{}",
        text(&output.stderr)
    );
}

/// Commands that will call the API need a key; without one they stop before
/// the state is touched, so the next run has no dead run to report.
#[tokio::test]
async fn a_missing_key_stops_before_the_state_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = genledger();
    cmd.arg("check-config").arg("--output").arg(&out);
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("OPENROUTER_API_KEY") && stderr.contains("api.key_file"),
        "{stderr}"
    );

    let sim = start_sim(SimConfig::default()).await;
    let input = write_lines(
        dir.path(),
        "ids.txt",
        &ids(20, Duration::from_secs(3600), "nokey"),
    );
    let export = |key: Option<&str>| {
        let mut cmd = genledger();
        cmd.args(["export", "--no-progress", "--base-url", &sim.base_url()])
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out);
        if let Some(key) = key {
            cmd.env("OPENROUTER_API_KEY", key);
        }
        cmd
    };
    let output = run(export(None)).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(!out.exists(), "a refused run created its output directory");
    assert_eq!(sim.stats().requests, 0);

    let output = run(export(Some(KEY))).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("died"), "{stderr}");
    assert_eq!(parquet_rows(&out).len(), 20);
}

/// A schedule with no next time (`0 0 0 31 2 *`, February 31st) would leave
/// the daemon nothing to do; it is refused by `check-config` and at start-up.
#[tokio::test]
async fn a_schedule_that_never_fires_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "ids.txt", &ids(1, Duration::ZERO, "cron"));
    for command in ["check-config", "daemon"] {
        let mut cmd = genledger();
        cmd.arg(command)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(dir.path().join("out"))
            .env("OPENROUTER_API_KEY", KEY)
            .env("GENLEDGER_SCHEDULE__CRON", "0 0 0 31 2 *");
        let output = run(cmd).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("schedule.cron") && stderr.contains("never fires"),
            "{command}: {stderr}"
        );
    }
}

/// figment's own messages said `expected usize for key "FETCH.CONCURRENCY"`;
/// each error names the variable or file the user wrote, the dotted key and
/// the kind of value in words, and an unknown key suggests the one meant.
#[tokio::test]
async fn config_errors_name_the_variable_or_file_and_the_kind_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let check = |env: Option<(&str, &str)>, file: Option<&Path>| {
        let mut cmd = genledger();
        cmd.arg("check-config");
        if let Some((name, value)) = env {
            cmd.env(name, value);
        }
        if let Some(file) = file {
            cmd.arg("--config").arg(file);
        }
        cmd
    };
    // (variable, config file, what the message must say)
    type Case<'a> = (Option<(&'a str, &'a str)>, Option<&'a str>, &'a [&'a str]);
    let cases: [Case; 5] = [
        (
            Some(("GENLEDGER_FETCH__CONCURRENCY", "abc")),
            None,
            &[
                "invalid `fetch.concurrency` (from environment variable `GENLEDGER_FETCH__CONCURRENCY`)",
                "expected a whole number, found \"abc\"",
            ],
        ),
        (
            Some(("GENLEDGER_FETCH__CONCURENCY", "3")),
            None,
            &[
                "unknown key `fetch.concurency`",
                "did you mean `GENLEDGER_FETCH__CONCURRENCY`?",
            ],
        ),
        (
            Some(("GENLEDGER_FETCH_CONCURRENCY", "3")),
            None,
            &["did you mean `GENLEDGER_FETCH__CONCURRENCY`?"],
        ),
        (
            None,
            Some("[fetch]\nconcurency = 3\n"),
            &[
                "unknown key `fetch.concurency` (from `",
                "did you mean `fetch.concurrency`?",
            ],
        ),
        (
            None,
            Some("[fetch]\ntimeout = \"3 parsecs\"\n"),
            &[
                "invalid `fetch.timeout` (from `",
                "expected a duration such as \"30s\"",
            ],
        ),
    ];
    for (i, (env, toml, wanted)) in cases.into_iter().enumerate() {
        let file = toml.map(|body| {
            let path = dir.path().join(format!("case{i}.toml"));
            std::fs::write(&path, body).unwrap();
            path
        });
        let output = run(check(env, file.as_deref())).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        for part in wanted {
            assert!(stderr.contains(part), "case {i}: want {part:?} in {stderr}");
        }
        if file.is_some() {
            assert!(stderr.contains(&format!("case{i}.toml")), "{stderr}");
        }
        for figment_speak in ["usize", "FETCH.", "default.", "invalid configuration"] {
            assert!(!stderr.contains(figment_speak), "case {i}: {stderr}");
        }
    }
}

/// A path that exists but is the wrong kind is named for what it is, by
/// `check-config` and before a run creates anything.
#[tokio::test]
async fn paths_of_the_wrong_kind_are_named_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = dir.path().join("out");
    let check = |args: &[&std::ffi::OsStr], env: Option<(&str, &Path)>| {
        let mut cmd = genledger();
        cmd.arg("check-config")
            .args(args)
            .env("OPENROUTER_API_KEY", KEY);
        if let Some((name, value)) = env {
            cmd.env(name, value);
        }
        cmd
    };
    let (config, output) = ("--config".as_ref(), "--output".as_ref());
    let cases: Vec<(std::process::Command, String)> = vec![
        (
            check(&[config, dir.path().as_os_str()], None),
            "is a directory, not a regular file".into(),
        ),
        (
            check(&[output, file.as_os_str()], None),
            format!(
                "`output.dir` `{}` (from command-line flags) is a file, not a directory",
                file.display()
            ),
        ),
        (
            check(&[output, file.join("sub").as_os_str()], None),
            format!("cannot be created: `{}` is a file", file.display()),
        ),
        (
            check(
                &[output, out.as_os_str()],
                Some(("GENLEDGER_STATE__PATH", dir.path())),
            ),
            format!(
                "`state.path` `{}` (from environment variable `GENLEDGER_STATE__PATH`) is a directory, not a file",
                dir.path().display()
            ),
        ),
    ];
    for (cmd, wanted) in cases {
        let output = run(cmd).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&wanted), "want {wanted:?} in {stderr}");
        assert!(!stderr.contains("does not exist"), "{stderr}");
    }
    #[cfg(unix)]
    {
        let output = run(check(&["--config".as_ref(), "/dev/null".as_ref()], None)).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("config file `/dev/null` is a character device, not a regular file"),
            "{stderr}"
        );
    }

    // A run refuses the same way, before it creates the output directory.
    let input = write_lines(dir.path(), "ids.txt", &ids(1, Duration::ZERO, "kind"));
    let mut cmd = genledger();
    cmd.args(["export", "--no-progress", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .env("OPENROUTER_API_KEY", KEY)
        .env("GENLEDGER_STATE__PATH", dir.path());
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a directory, not a file"), "{stderr}");
    assert!(!out.exists(), "a refused run created its output directory");
}

/// stderr captured to a file, a pipe or the journal gets plain text: escape
/// codes there are noise (`^[[2m2026-…^[[0m ^[[32m INFO^[[0m`).
#[tokio::test]
async fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(
        dir.path(),
        "ids.txt",
        &ids(3, Duration::from_secs(3600), "ansi"),
    );
    let mut cmd = genledger();
    cmd.args([
        "-v",
        "export",
        "--no-progress",
        "--base-url",
        &sim.base_url(),
    ])
    .arg("--input")
    .arg(&input)
    .arg("--output")
    .arg(dir.path().join("out"))
    .env("OPENROUTER_API_KEY", KEY);
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("INFO") && stderr.contains("export started"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "escape codes in {stderr:?}");
}

/// `--help` says where the key comes from and what each exit code means, and
/// keeps the flags every command takes apart from the command's own.
#[tokio::test]
async fn help_names_the_key_the_exit_codes_and_groups_global_flags() {
    for args in [
        &["--help"][..],
        &["export", "--help"],
        &["daemon", "--help"],
    ] {
        let mut cmd = genledger();
        cmd.args(args);
        let output = run(cmd).await;
        let help = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        for wanted in ["OPENROUTER_API_KEY", "api.key_file", "Exit codes:"] {
            assert!(help.contains(wanted), "{args:?}: no {wanted:?} in {help}");
        }
        for code in [0, 1, 2, 3, 4, 5, 130] {
            assert!(
                help.contains(&format!("\n  {code:<4} ")),
                "{args:?}: exit code {code}"
            );
        }
        let global = help.find("Global options:").expect("a global heading");
        assert!(help.find("--config").unwrap() > global, "{help}");
        assert!(help.find("--log-format").unwrap() > global, "{help}");
    }
    let mut cmd = genledger();
    cmd.args(["export", "--help"]);
    let help = text(&run(cmd).await.stdout);
    let global = help.find("Global options:").unwrap();
    assert!(help.find("--input").unwrap() < global, "{help}");
    assert!(help.find("--retry-failed").unwrap() < global, "{help}");
}
