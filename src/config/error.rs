//! [`ConfigError`]: what is wrong with the configuration, in the user's words.
//! figment's own messages name keys as it stores them (`"FETCH.CONCURRENCY"`,
//! `"default.fetch.concurency"`) and types as Rust spells them (`usize`); here
//! each error names the dotted key, the file or `GENLEDGER_*` variable it came
//! from, and the kind of value expected.

use std::path::PathBuf;

use figment::error::{Actual, Kind};
use figment::{Metadata, Source};

use super::RawConfig;

/// What is wrong with the configuration; every variant names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file `{0}` does not exist")]
    MissingFile(PathBuf),
    #[error("config file `{path}` is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: String },
    #[error("cannot read config file `{path}`")]
    UnreadableFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file `{path}` is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("invalid `{key}` (from {origin}): {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    #[error("unknown key `{key}` (from {origin}); {hint}")]
    UnknownKey {
        key: String,
        origin: String,
        hint: String,
    },
    #[error("`{key}` `{path}`{} {problem}", from(origin.as_deref()))]
    Path {
        key: &'static str,
        path: PathBuf,
        /// Where the value came from, when known.
        origin: Option<String>,
        problem: String,
    },
    #[error("failed to read the API key file `{path}` (from {origin})")]
    KeyFile {
        path: PathBuf,
        origin: String,
        source: std::io::Error,
    },
}

fn from(origin: Option<&str>) -> String {
    origin.map(|o| format!(" (from {o})")).unwrap_or_default()
}

/// Where `key` got its value, from the metadata of the layer that gave it: a
/// file, a `GENLEDGER_*` variable, the command-line flags or the defaults.
pub(super) fn origin_of(meta: Option<&Metadata>, key: &str) -> String {
    let Some(meta) = meta else {
        return "built-in defaults".into();
    };
    match &meta.source {
        Some(Source::File(path)) => format!("`{}`", path.display()),
        _ if meta.name.contains("environment") => {
            format!("environment variable `{}`", env_var(key))
        }
        _ if meta.name.contains("Serialized") => "built-in defaults".into(),
        _ => meta.name.to_string(),
    }
}

/// The variable that sets a dotted key: `fetch.concurrency` → `GENLEDGER_FETCH__CONCURRENCY`.
pub fn env_var(key: &str) -> String {
    format!("GENLEDGER_{}", key.replace('.', "__").to_uppercase())
}

/// Translates the first of figment's errors (deserialization stops at the
/// first problem, so there is rarely a second).
pub(super) fn explain(error: figment::Error) -> ConfigError {
    let key = error.path.join(".");
    let meta = error.metadata.as_ref();
    let origin = origin_of(meta, &key);
    let file = meta
        .and_then(|m| m.source.as_ref())
        .and_then(Source::file_path);
    let message = match error.kind {
        Kind::Message(message) if key.is_empty() => {
            return match file {
                Some(path) => ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: message.trim_end().to_owned(),
                },
                None => ConfigError::Invalid {
                    key: "(configuration)".into(),
                    origin,
                    message,
                },
            };
        }
        Kind::UnknownField(field, expected) => {
            let hint = unknown_key_hint(&key, &field, expected, is_env(meta));
            return ConfigError::UnknownKey { key, origin, hint };
        }
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) => {
            format!("expected {}, found {}", in_words(&expected), shown(&found))
        }
        Kind::UnknownVariant(found, expected) => {
            format!("`{found}` is not one of {}", listed(expected))
        }
        other => other.to_string(),
    };
    ConfigError::Invalid {
        key,
        origin,
        message,
    }
}

fn is_env(meta: Option<&Metadata>) -> bool {
    meta.is_some_and(|m| m.source.is_none() && m.name.contains("environment"))
}

/// serde's name of the expected type, as a user would say it.
fn in_words(expected: &str) -> String {
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" => "text",
        "path string" => "a path",
        "a duration" => "a duration such as \"30s\", \"500ms\" or \"2m 30s\"",
        "a sequence" => "a list such as [\"ids.txt\"]",
        e if e.starts_with("struct ") => "a section of keys",
        other => other,
    };
    words.to_owned()
}

/// The value that was found, as it would be written.
fn shown(found: &Actual) -> String {
    match found {
        Actual::Str(text) => format!("\"{}\"", text.escape_default()),
        Actual::Bool(b) => b.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(x) => x.to_string(),
        Actual::Seq => "a list".into(),
        Actual::Map => "a section of keys".into(),
        other => other.to_string(),
    }
}

fn listed(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// Suggests the known key closest to `key` (a typo, or `_` written for the
/// variables' `__`), else lists the keys allowed where it was found.
fn unknown_key_hint(key: &str, field: &str, expected: &[&str], env: bool) -> String {
    let spell = |k: &str| {
        if env { env_var(k) } else { k.to_owned() }
    };
    if let Some(known) = closest_key(key) {
        return format!("did you mean `{}`?", spell(&known));
    }
    let section = key.strip_suffix(field).unwrap_or("");
    if env && section.is_empty() {
        // Sections are not variables: show the pattern rather than `GENLEDGER_FETCH`.
        let known = known_keys();
        let is_section = |k: &&str| known.iter().any(|key| key.starts_with(&format!("{k}.")));
        let (sections, keys): (Vec<&str>, Vec<&str>) =
            expected.iter().copied().partition(is_section);
        let keys: Vec<String> = keys.iter().map(|k| format!("`{}`", env_var(k))).collect();
        return format!(
            "variables are named `GENLEDGER_<SECTION>__<KEY>` (e.g. `GENLEDGER_FETCH__CONCURRENCY`) with a section among {}, or {}",
            listed(&sections),
            keys.join(", ")
        );
    }
    let keys: Vec<String> = expected
        .iter()
        .map(|k| format!("`{}`", spell(&format!("{section}{k}"))))
        .collect();
    format!("known keys here: {}", keys.join(", "))
}

/// The known key (a section or a dotted key) nearest in spelling to `key`, if
/// one is near enough to be what was meant.
fn closest_key(key: &str) -> Option<String> {
    known_keys()
        .into_iter()
        .map(|known| (strsim::damerau_levenshtein(key, &known), known))
        .filter(|(distance, known)| *distance <= (known.len() / 4).clamp(1, 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Every section and dotted key of the configuration, read from the defaults
/// serialized (absent options serialize as null, so they are listed too).
fn known_keys() -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, keys: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = value {
            for (name, inner) in map {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                walk(&key, inner, keys);
                keys.push(key);
            }
        }
    }
    let mut keys = Vec::new();
    if let Ok(defaults) = serde_json::to_value(RawConfig::default()) {
        walk("", &defaults, &mut keys);
    }
    keys
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format as _, Serialized, Toml};

    use super::*;

    fn error_of(toml: &str) -> String {
        let figment =
            Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(toml));
        let error = figment.extract::<RawConfig>().unwrap_err();
        explain(error).to_string()
    }

    #[test]
    fn types_are_named_in_words_with_the_dotted_key() {
        let shown = error_of("[fetch]\nconcurrency = \"abc\"\n");
        assert!(
            shown.starts_with("invalid `fetch.concurrency`")
                && shown.ends_with("expected a whole number, found \"abc\""),
            "{shown}"
        );
        assert!(
            !shown.contains("usize") && !shown.contains("default."),
            "{shown}"
        );
        let shown = error_of("[fetch]\ntimeout = 30\n");
        assert!(shown.contains("expected a duration such as"), "{shown}");
        let shown = error_of("[output]\nformat = \"xlsx\"\n");
        assert!(
            shown.ends_with("`xlsx` is not one of `parquet`, `csv`"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_keys_suggest_the_closest_known_key() {
        let shown = error_of("[fetch]\nconcurency = 3\n");
        assert!(
            shown.starts_with("unknown key `fetch.concurency`")
                && shown.ends_with("did you mean `fetch.concurrency`?"),
            "{shown}"
        );
        assert!(error_of("[fetchh]\n").ends_with("did you mean `fetch`?"));
        let far = error_of("[output]\nzzz = 1\n");
        assert!(
            far.contains("known keys here: `output.dir`, `output.format`"),
            "{far}"
        );
    }

    #[test]
    fn variables_are_spelled_with_double_underscores() {
        assert_eq!(env_var("fetch.concurrency"), "GENLEDGER_FETCH__CONCURRENCY");
        // `GENLEDGER_FETCH_CONCURRENCY` arrives as the top-level key `fetch_concurrency`.
        let hint = unknown_key_hint("fetch_concurrency", "fetch_concurrency", &["fetch"], true);
        assert_eq!(hint, "did you mean `GENLEDGER_FETCH__CONCURRENCY`?");
    }
}
