//! Layered configuration: built-in defaults < TOML file < `GENLEDGER_*`
//! environment < command-line flags, merged by figment and then resolved into
//! [`Settings`], the only configuration type the rest of the crate sees.

mod error;
mod input;
mod paths;
mod raw;
mod schedule;
mod settings;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::{Figment, Provider};

pub use error::{ConfigError, env_var};
pub use input::Input;
pub use raw::{Compression, Format, RawConfig};
pub use schedule::Schedule;
pub use settings::{ApiKey, ApiSettings, FetchSettings, OutputSettings, Settings};

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "GENLEDGER_CONFIG";
/// Environment variable holding the OpenRouter API key.
pub const KEY_ENV: &str = "OPENROUTER_API_KEY";
/// The environment variable holding the management key (Activity API).
pub const MANAGEMENT_KEY_ENV: &str = "OPENROUTER_MANAGEMENT_KEY";

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
        check_file(&path)?;
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = Env::prefixed("GENLEDGER_").split("__").ignore(&["config"]);
    figment = figment.merge(env).merge(flags);
    let raw = figment.extract().map_err(error::explain)?;
    Ok(Layered { figment, raw })
}

/// A config file must be a readable regular file: `/dev/null` or a directory
/// is named for what it is, not reported missing.
fn check_file(path: &Path) -> Result<(), ConfigError> {
    let unreadable = |source| ConfigError::UnreadableFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::MissingFile(path.to_owned()));
        }
        Err(e) => return Err(unreadable(e)),
        Ok(meta) if !meta.is_file() => {
            return Err(ConfigError::NotAFile {
                path: path.to_owned(),
                kind: paths::kind_of(path).map_or_else(|| "not a file".into(), |k| k.to_string()),
            });
        }
        Ok(_) => {}
    }
    std::fs::File::open(path).map(drop).map_err(unreadable)
}

impl Layered {
    /// Where `key` (dotted) got its value: a file path, a variable name, flags or defaults.
    pub fn origin(&self, key: &str) -> String {
        error::origin_of(self.figment.find_metadata(key), key)
    }

    /// Validates into [`Settings`], reading the API key from `OPENROUTER_API_KEY`
    /// or `api.key_file`.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let key = self.read_key()?;
        let mut settings = Settings::resolve(&self.raw, key, |key| self.origin(key))?;
        settings.management_key =
            self.read_secret(MANAGEMENT_KEY_ENV, "api.management_key_file")?;
        settings.check_paths_from(|key| {
            Some(match key {
                "state.path" if self.raw.state.path.is_none() => {
                    "the default under `output.dir`".into()
                }
                _ => self.origin(key),
            })
        })?;
        Ok(settings)
    }

    fn read_key(&self) -> Result<Option<ApiKey>, ConfigError> {
        self.read_secret(KEY_ENV, "api.key_file")
    }

    /// A key from the environment variable `env`, else from the file named
    /// by the configuration key `file_key`.
    fn read_secret(&self, env: &str, file_key: &str) -> Result<Option<ApiKey>, ConfigError> {
        if let Some(key) = std::env::var(env).ok().filter(|k| !k.trim().is_empty()) {
            return Ok(Some(ApiKey::new(key.trim().to_owned())));
        }
        let path = match file_key {
            "api.management_key_file" => &self.raw.api.management_key_file,
            _ => &self.raw.api.key_file,
        };
        let Some(path) = path else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
            path: path.clone(),
            origin: self.origin(file_key),
            source,
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(ConfigError::Invalid {
                key: file_key.into(),
                origin: self.origin(file_key),
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
