//! `deploy/` against the code: every `genledger …` invocation in the systemd
//! units, the Kubernetes manifests and the Dockerfile parses with the real
//! command line, every configuration shipped there loads and validates with
//! the flags that use it, and every `GENLEDGER_*` variable names a config key.

mod extract;

use std::collections::BTreeSet;

use clap::Parser;
use genledger::cli::{Cli, Command, RunFlags};
use genledger::config::{self, RawConfig, Settings};
use genledger::shard::Shard;
use serde_json::Value;

use extract::{Invocation, Kind, ShippedConfig, collect};

/// Parses `inv` as genledger would. `--shard /N` takes its index from
/// JOB_COMPLETION_INDEX, which Kubernetes sets per pod: every index of the
/// Job must work, and N must be its `completions`.
fn parse(inv: &Invocation) -> Result<Cli, String> {
    let mut argv = inv.argv.clone();
    for i in 0..argv.len() {
        let (flag, value) = match argv[i].split_once('=') {
            Some((flag, value)) => (flag.to_owned(), value.to_owned()),
            None => (
                argv[i].clone(),
                argv.get(i + 1).cloned().unwrap_or_default(),
            ),
        };
        if flag != "--shard" || !value.starts_with('/') {
            continue;
        }
        let completions = inv
            .completions
            .ok_or("`--shard /COUNT` outside an Indexed Job (nothing sets JOB_COMPLETION_INDEX)")?;
        for index in 0..completions {
            let shard = Shard::parse_with(&value, Some(&index.to_string()))?;
            if u64::from(shard.count) != completions {
                return Err(format!(
                    "`--shard {value}` in a Job of {completions} completions"
                ));
            }
        }
        let fixed = format!("0{value}");
        if argv[i].contains('=') {
            argv[i] = format!("--shard={fixed}");
        } else {
            argv[i + 1] = fixed;
        }
    }
    Cli::try_parse_from(&argv).map_err(|e| e.to_string())
}

fn run_flags(cli: &Cli) -> Option<&RunFlags> {
    match &cli.command {
        Command::Export(args) => Some(&args.flags),
        Command::Daemon(args) => Some(&args.flags),
        Command::CheckConfig(args) | Command::ShowConfig(args) => Some(&args.flags),
        _ => None,
    }
}

/// Loads `shipped` through the real loader with `flags` on top. A key file it
/// names is replaced by a temporary one holding a dummy key, so no process
/// environment is changed.
fn load(shipped: &ShippedConfig, flags: &RunFlags) -> Result<Settings, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut table: toml::Table = shipped.text.parse().map_err(|e| format!("{e}"))?;
    if let Some(api) = table.get_mut("api").and_then(toml::Value::as_table_mut)
        && api.contains_key("key_file")
    {
        let key = dir.path().join("openrouter-api-key");
        std::fs::write(&key, "sk-or-v1-deploy-test\n").unwrap();
        api.insert("key_file".into(), key.display().to_string().into());
    }
    let path = dir.path().join(&shipped.name);
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    let settings = config::load(Some(&path), flags.clone())
        .and_then(|layered| layered.resolve())
        .map_err(|e| e.to_string())?;
    Ok(settings.for_shard(flags.shard.unwrap_or_default()))
}

#[test]
fn every_deploy_invocation_parses_with_the_cli() {
    let deploy = collect();
    for kind in [Kind::Systemd, Kind::Kubernetes, Kind::Docker] {
        let n = deploy.invocations.iter().filter(|i| i.kind == kind).count();
        assert!(
            n > 0,
            "found no genledger invocation in deploy/ for {kind:?}: is the extraction broken?"
        );
    }
    let mut errors = Vec::new();
    for inv in &deploy.invocations {
        if let Err(e) = parse(inv) {
            errors.push(format!("{} `{}`:\n{e}", inv.source, inv.argv.join(" ")));
        }
    }
    assert!(
        errors.is_empty(),
        "deploy/ runs genledger in ways the CLI refuses:\n\n{}",
        errors.join("\n\n")
    );
}

#[test]
fn every_deploy_config_loads_with_the_flags_that_use_it() {
    let deploy = collect();
    assert!(
        !deploy.configs.is_empty(),
        "found no configuration in deploy/"
    );
    for shipped in &deploy.configs {
        if let Err(e) = load(shipped, &RunFlags::default()) {
            panic!("{}: {e}", shipped.source);
        }
    }
    let mut used = 0;
    for inv in &deploy.invocations {
        let cli = parse(inv).unwrap_or_else(|e| panic!("{}: {e}", inv.source));
        let (Some(path), Some(flags)) = (&cli.config, run_flags(&cli)) else {
            continue;
        };
        // A unit's --config is the file of that name beside it; a pod's, the
        // ConfigMap entry of that name in the same manifest.
        let name = path.file_name().unwrap().to_string_lossy();
        let shipped = deploy
            .configs
            .iter()
            .find(|c| {
                c.name == name
                    && c.file.parent() == inv.file.parent()
                    && (inv.kind == Kind::Systemd || c.file == inv.file)
            })
            .unwrap_or_else(|| {
                panic!(
                    "{}: no `{name}` shipped beside it for `--config {}`",
                    inv.source,
                    path.display()
                )
            });
        let settings = load(shipped, flags)
            .unwrap_or_else(|e| panic!("{} with {}: {e}", shipped.source, inv.source));
        if matches!(cli.command, Command::Export(_) | Command::Daemon(_)) {
            assert!(
                !settings.inputs.is_empty(),
                "{}: no input in {}",
                inv.source,
                shipped.source
            );
        }
        // What SIGTERM waits for must end before the supervisor kills: the
        // daemon's running tick (shutdown_timeout), or an export's requests
        // in flight (fetch.timeout).
        let (must_end, what) = match cli.command {
            Command::Daemon(_) => (settings.shutdown_timeout, "shutdown_timeout"),
            _ => (settings.fetch.timeout, "fetch.timeout"),
        };
        if let Some(grace) = inv.stop_grace {
            assert!(
                grace > must_end,
                "{}: stops after {grace:?}, not above {what} ({must_end:?}) in {}",
                inv.source,
                shipped.source
            );
        }
        if matches!(cli.command, Command::Daemon(_)) {
            assert!(
                settings.schedule.is_some(),
                "{}: the daemon needs `schedule.cron` in {}",
                inv.source,
                shipped.source
            );
        }
        used += 1;
    }
    assert!(
        used > 0,
        "no invocation in deploy/ uses a shipped configuration"
    );
}

#[test]
fn every_genledger_variable_in_deploy_names_a_config_key() {
    let mut keys = BTreeSet::new();
    flatten_keys(
        "",
        &serde_json::to_value(RawConfig::default()).unwrap(),
        &mut keys,
    );
    let deploy = collect();
    assert!(
        !deploy.env.is_empty(),
        "found no environment variables in deploy/"
    );
    for (source, name) in &deploy.env {
        let Some(rest) = name.strip_prefix("GENLEDGER_") else {
            continue;
        };
        if name == config::CONFIG_ENV {
            continue;
        }
        let key = rest
            .to_lowercase()
            .split("__")
            .collect::<Vec<_>>()
            .join(".");
        assert!(
            keys.contains(&key),
            "{source}: `{name}` names no configuration key (`{key}`); keys: {keys:?}"
        );
    }
}

fn flatten_keys(prefix: &str, value: &Value, keys: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_keys(&path, child, keys);
            }
        }
        _ => {
            keys.insert(prefix.to_owned());
        }
    }
}
