//! Configuration: the commented defaults file, then a TOML file, then the environment,
//! then flags; validated once at start-up.

use std::{fmt, net::IpAddr, path::PathBuf};

use anyhow::{bail, Context};
use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Serialize};

/// The defaults, with comments: also the documentation of every setting.
pub const DEFAULTS: &str = include_str!("../../../config.default.toml");

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Flow's settings, validated.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub log_format: LogFormat,
    pub cors_allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
    pub default_rate_limit_per_minute: u32,
    pub db_read_connections: u32,
}

/// Settings given on the command line, which win over everything else.
#[derive(Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Loads defaults, `file`, the environment and `overrides`, and validates the result.
    pub fn load(file: Option<&std::path::Path>, overrides: Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Config = figment
            .merge(Env::prefixed("FLOW_").ignore(&["config"]))
            .merge(Env::raw().only(&["database_url"]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults alone, for tests and tools.
    pub fn defaults() -> Self {
        Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("the built-in defaults parse")
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.max_body_bytes < 1024 {
            bail!("max_body_bytes must be at least 1024");
        }
        if self.request_timeout_secs == 0 {
            bail!("request_timeout_secs must be positive");
        }
        if self.default_rate_limit_per_minute == 0 {
            bail!("default_rate_limit_per_minute must be positive");
        }
        if let Some(url) = &self.database_url {
            if !url.starts_with("sqlite:") {
                bail!(
                    "database_url {:?}: only sqlite: URLs are supported so far",
                    redact(url)
                );
            }
        }
        for origin in &self.cors_allowed_origins {
            if origin != "*" && axum::http::HeaderValue::from_str(origin).is_err() {
                bail!("cors_allowed_origins: {origin:?} is not a valid origin");
            }
        }
        Ok(())
    }

    /// The database to open: `database_url`, or the embedded file under `data_dir`.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("flow.db").display()))
    }
}

/// Hides a password in a URL such as `postgres://user:secret@host/db`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..scheme], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(redact))
            .field("log_format", &self.log_format)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field(
                "default_rate_limit_per_minute",
                &self.default_rate_limit_per_minute,
            )
            .field("db_read_connections", &self.db_read_connections)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let config = Config::defaults();
        config.validate().unwrap();
        assert_eq!(config.port, 4000);
        assert!(config.database_url().ends_with("data/flow.db"));
    }

    #[test]
    fn debug_output_hides_passwords() {
        let mut config = Config::defaults();
        config.database_url = Some("postgres://flow:hunter2@db:5432/flow".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("flow:***@db"), "{shown}");
    }
}
