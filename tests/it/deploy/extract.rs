//! Reads deploy/: the `genledger` command lines of the systemd units, the
//! Kubernetes manifests and the Dockerfile, the configurations shipped there,
//! and the environment variables they set.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Systemd,
    Kubernetes,
    Docker,
}

/// One command line that runs genledger, and where it was found.
#[derive(Debug)]
pub struct Invocation {
    pub kind: Kind,
    pub file: PathBuf,
    pub source: String,
    pub argv: Vec<String>,
    /// `completions` of the Indexed Job whose pods run it.
    pub completions: Option<u64>,
    /// How long the supervisor waits after SIGTERM before it kills
    /// (`TimeoutStopSec`, `terminationGracePeriodSeconds`); None for Docker.
    pub stop_grace: Option<Duration>,
}

/// A configuration file shipped in deploy/: a file, or a ConfigMap entry.
#[derive(Debug)]
pub struct ShippedConfig {
    pub file: PathBuf,
    /// The file name it has once deployed (`genledger.toml`).
    pub name: String,
    pub source: String,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct Deploy {
    pub invocations: Vec<Invocation>,
    pub configs: Vec<ShippedConfig>,
    /// (where, variable name) of every `GENLEDGER_*` variable set.
    pub env: Vec<(String, String)>,
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn is_genledger(program: &str) -> bool {
    Path::new(program)
        .file_name()
        .is_some_and(|n| n == "genledger")
}

/// Reads everything in deploy/ that runs or configures genledger.
pub fn collect() -> Deploy {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut deploy = Deploy::default();
    for path in files_under(&deploy_dir()) {
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match path.extension().and_then(|e| e.to_str()) {
            Some("service" | "timer") => systemd_unit(&path, &rel, &text, &mut deploy),
            Some("yaml" | "yml") => kubernetes(&path, &rel, &text, &mut deploy),
            Some("toml") => deploy.configs.push(ShippedConfig {
                file: path.clone(),
                name,
                source: rel,
                text,
            }),
            _ if name == "Dockerfile" => dockerfile(&path, &rel, &text, &mut deploy),
            _ => {}
        }
    }
    deploy
}

/// Logical lines: comments dropped, backslash continuations joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with(';')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines.push(current);
    lines.retain(|l| !l.is_empty());
    lines
}

/// Splits a systemd command line into words, honouring quotes.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (_, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn systemd_unit(path: &Path, rel: &str, text: &str, deploy: &mut Deploy) {
    // systemd's DefaultTimeoutStopSec.
    let mut stop_grace = Duration::from_secs(90);
    let mut invocations = Vec::new();
    for line in logical_lines(text) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.starts_with("Exec") {
            let argv = words(value.trim_start_matches(['-', '@', ':', '+', '!', '|', ' ']));
            if argv.first().is_some_and(|p| is_genledger(p)) {
                invocations.push(Invocation {
                    kind: Kind::Systemd,
                    file: path.to_path_buf(),
                    source: format!("{rel}: {key}"),
                    argv,
                    completions: None,
                    stop_grace: None,
                });
            }
        } else if key == "TimeoutStopSec" {
            let value = value.trim();
            stop_grace = match value.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => humantime::parse_duration(value)
                    .unwrap_or_else(|e| panic!("{rel}: TimeoutStopSec={value}: {e}")),
            };
        } else if key == "Environment" {
            for assignment in words(value) {
                let name = assignment.split('=').next().unwrap_or_default();
                deploy.env.push((rel.to_owned(), name.to_owned()));
            }
        }
    }
    for mut invocation in invocations {
        invocation.stop_grace = Some(stop_grace);
        deploy.invocations.push(invocation);
    }
}

fn kubernetes(path: &Path, rel: &str, text: &str, deploy: &mut Deploy) {
    for document in serde_norway::Deserializer::from_str(text) {
        let doc = Value::deserialize(document).unwrap_or_else(|e| panic!("{rel}: {e}"));
        if doc.is_null() {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_owned();
        let source = format!("{rel}: {} {name}", doc["kind"].as_str().unwrap_or("?"));
        if doc["kind"] == "ConfigMap" {
            for (key, value) in doc["data"].as_object().into_iter().flatten() {
                if key.ends_with(".toml") {
                    deploy.configs.push(ShippedConfig {
                        file: path.to_path_buf(),
                        name: key.clone(),
                        source: format!("{source}, {key}"),
                        text: value.as_str().unwrap().to_owned(),
                    });
                }
            }
        }
        let pod = Pod {
            completions: None,
            stop_grace: Duration::from_secs(30),
        };
        containers(&doc, path, &source, pod, deploy);
    }
}

/// What a container's pod and job say about how it runs.
#[derive(Clone, Copy)]
struct Pod {
    /// `completions` of the enclosing Indexed Job.
    completions: Option<u64>,
    stop_grace: Duration,
}

/// Finds the containers anywhere in a manifest; those of an Indexed Job
/// remember its `completions`.
fn containers(value: &Value, path: &Path, source: &str, pod: Pod, deploy: &mut Deploy) {
    match value {
        Value::Object(map) => {
            let mut pod = pod;
            if map.get("completionMode").is_some_and(|m| m == "Indexed") {
                pod.completions = map["completions"].as_u64();
            }
            if map.contains_key("containers") {
                // A pod spec; Kubernetes waits 30 s unless it says otherwise.
                let grace = map.get("terminationGracePeriodSeconds");
                pod.stop_grace = Duration::from_secs(grace.and_then(Value::as_u64).unwrap_or(30));
            }
            for key in ["containers", "initContainers"] {
                for container in map.get(key).and_then(Value::as_array).into_iter().flatten() {
                    container_invocation(container, path, source, pod, deploy);
                }
            }
            for child in map.values() {
                containers(child, path, source, pod, deploy);
            }
        }
        Value::Array(items) => {
            for item in items {
                containers(item, path, source, pod, deploy);
            }
        }
        _ => {}
    }
}

fn container_invocation(
    container: &Value,
    path: &Path,
    source: &str,
    pod: Pod,
    deploy: &mut Deploy,
) {
    let strings = |key: &str| -> Vec<String> {
        let list = container[key].as_array().cloned().unwrap_or_default();
        list.iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let name = container["name"].as_str().unwrap_or("?");
    let source = format!("{source}, container {name}");
    for var in container["env"].as_array().into_iter().flatten() {
        deploy
            .env
            .push((source.clone(), var["name"].as_str().unwrap().to_owned()));
    }
    let mut argv = strings("command");
    // Without `command` the image's ENTRYPOINT (`genledger`) runs the args.
    let image = container["image"].as_str().unwrap_or_default();
    if argv.is_empty() && image.contains("genledger") {
        argv.push("genledger".into());
    }
    if argv.first().is_some_and(|p| is_genledger(p)) {
        argv.extend(strings("args"));
        deploy.invocations.push(Invocation {
            kind: Kind::Kubernetes,
            file: path.to_path_buf(),
            source,
            argv,
            completions: pod.completions,
            stop_grace: Some(pod.stop_grace),
        });
    }
}

/// The final stage's ENTRYPOINT + CMD (exec form) and every ENV.
fn dockerfile(path: &Path, rel: &str, text: &str, deploy: &mut Deploy) {
    let (mut entrypoint, mut cmd) = (Vec::<String>::new(), Vec::<String>::new());
    for line in logical_lines(text) {
        let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let exec_form = |rest: &str| -> Vec<String> {
            serde_json::from_str(rest.trim())
                .unwrap_or_else(|e| panic!("{rel}: `{line}` is not in exec (JSON) form: {e}"))
        };
        match instruction.to_ascii_uppercase().as_str() {
            "FROM" => (entrypoint, cmd) = (Vec::new(), Vec::new()),
            "ENTRYPOINT" => entrypoint = exec_form(rest),
            "CMD" => cmd = exec_form(rest),
            "ENV" => {
                for assignment in words(rest) {
                    let name = assignment.split('=').next().unwrap_or_default();
                    deploy.env.push((rel.to_owned(), name.to_owned()));
                }
            }
            _ => {}
        }
    }
    if entrypoint.first().is_some_and(|p| is_genledger(p)) {
        deploy.invocations.push(Invocation {
            kind: Kind::Docker,
            file: path.to_path_buf(),
            source: format!("{rel}: ENTRYPOINT + CMD"),
            argv: entrypoint.into_iter().chain(cmd).collect(),
            completions: None,
            stop_grace: None,
        });
    }
}
