//! Layered configuration: built-in defaults < TOML file < `GENLEDGER_*`
//! environment < command-line flags, merged by figment and then resolved into
//! [`Settings`], the only configuration type the rest of the crate sees.

mod input;
mod raw;
mod settings;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::{Figment, Provider, Source};

pub use input::Input;
pub use raw::{Compression, Format, RawConfig};
pub use settings::{ApiKey, ApiSettings, FetchSettings, OutputSettings, Schedule, Settings};

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "GENLEDGER_CONFIG";
/// Environment variable holding the OpenRouter API key.
pub const KEY_ENV: &str = "OPENROUTER_API_KEY";

/// What is wrong with the configuration; every variant names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file `{0}` does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Figment(Box<figment::Error>),
    #[error("invalid `{key}` (from {origin}): {message}")]
    Invalid {
        key: &'static str,
        origin: String,
        message: String,
    },
    #[error("failed to read the API key file `{path}` (from {origin})")]
    KeyFile {
        path: PathBuf,
        origin: String,
        source: std::io::Error,
    },
}

/// The merged, not yet validated configuration, with where each value came from.
pub struct Layered {
    figment: Figment,
    pub raw: RawConfig,
}

/// Merges the layers. `file` is `--config`; without it `GENLEDGER_CONFIG` is
/// used. `flags` is the command line's layer, on top of all others.
pub fn load(file: Option<&Path>, flags: impl Provider) -> Result<Layered, ConfigError> {
    let from_env = std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(path) = file.map(Path::to_path_buf).or(from_env) {
        if !path.is_file() {
            return Err(ConfigError::MissingFile(path));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = Env::prefixed("GENLEDGER_").split("__").ignore(&["config"]);
    figment = figment.merge(env).merge(flags);
    let raw = figment
        .extract()
        .map_err(|e| ConfigError::Figment(Box::new(e)))?;
    Ok(Layered { figment, raw })
}

impl Layered {
    /// Where `key` (dotted) got its value: a file path, a variable name, flags or defaults.
    pub fn origin(&self, key: &str) -> String {
        let Some(meta) = self.figment.find_metadata(key) else {
            return "built-in defaults".into();
        };
        match &meta.source {
            Some(Source::File(path)) => format!("`{}`", path.display()),
            _ if meta.name.contains("environment") => {
                // figment's own interpolation prints the dotted key, not the variable.
                let name = key.split('.').collect::<Vec<_>>().join("__").to_uppercase();
                format!("environment variable `GENLEDGER_{name}`")
            }
            _ if meta.name.contains("Serialized") => "built-in defaults".into(),
            _ => meta.name.to_string(),
        }
    }

    /// Validates into [`Settings`], reading the API key from `OPENROUTER_API_KEY`
    /// or `api.key_file`.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let key = self.read_key()?;
        Settings::resolve(&self.raw, key, |key| self.origin(key))
    }

    fn read_key(&self) -> Result<Option<ApiKey>, ConfigError> {
        if let Some(key) = std::env::var(KEY_ENV).ok().filter(|k| !k.trim().is_empty()) {
            return Ok(Some(ApiKey::new(key.trim().to_owned())));
        }
        let Some(path) = &self.raw.api.key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
            path: path.clone(),
            origin: self.origin("api.key_file"),
            source,
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(ConfigError::Invalid {
                key: "api.key_file",
                origin: self.origin("api.key_file"),
                message: format!("`{}` is empty", path.display()),
            });
        }
        Ok(Some(ApiKey::new(key.to_owned())))
    }

    /// The merged configuration as TOML, the API key masked.
    pub fn to_toml(&self, key_present: bool) -> String {
        let body =
            toml::to_string_pretty(&self.raw).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        let key_line = if key_present {
            "**** (set)"
        } else {
            "(not set)"
        };
        format!("# API key: {key_line}\n{body}")
    }
}
