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
    pub http_header_timeout_ms: u64,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub default_rate_limit_per_minute: u32,
    pub db_read_connections: u32,
    pub db_max_connections: u32,
    pub db_statement_timeout_ms: u64,
    pub db_connections_per_tenant: u32,
    pub db_app_role: String,
    pub db_allow_privileged_role: bool,
    pub secret_key: Option<String>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_days: u64,
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_window_secs: u64,
    pub trust_forwarded_for: bool,
    pub ws_buffer_events: usize,
    pub ws_heartbeat_secs: u64,
    pub ws_idle_timeout_secs: u64,
    pub ws_send_timeout_secs: u64,
    pub ws_max_sockets_per_key: usize,
    pub ws_max_sockets_per_tenant: usize,
    pub ws_deliveries_per_sec_per_tenant: u32,
    pub event_retention_hours: u64,
    pub runtime_threads: usize,
    pub worker_concurrency: u32,
    pub worker_batch: u32,
    pub worker_poll_ms: u64,
    pub worker_lease_secs: u64,
    pub llm_base_url: Option<String>,
    pub llm_api_key: Option<String>,
    pub llm_model: String,
    pub llm_timeout_secs: u64,
    pub speech_to_text: String,
    pub text_to_speech: String,
    pub speech_api_url: Option<String>,
    pub speech_api_key: Option<String>,
    pub speech_stt_model: String,
    pub speech_tts_model: String,
    pub speech_tts_voice: String,
    pub elevenlabs_url: String,
    pub elevenlabs_api_key: Option<String>,
    pub elevenlabs_voice_id: String,
    pub elevenlabs_model: String,
    pub sphinx_bin: String,
    pub espeak_bin: String,
    pub voice_max_audio_secs: u64,
    pub voice_max_sessions_per_key: usize,
    pub voice_max_sessions_per_tenant: usize,
    pub voice_max_buffered_mib: usize,
    pub voice_utterance_timeout_secs: u64,
    pub metrics_token: Option<String>,
    pub backups_kept: usize,
    pub metrics_tenant_label: bool,
    pub voice_llm_fallback: bool,
}

/// Every setting's name, for reading `FLOW_<NAME>` from the environment.
const SETTINGS: &[&str] = &[
    "host",
    "port",
    "data_dir",
    "database_url",
    "log_format",
    "cors_allowed_origins",
    "max_body_bytes",
    "request_timeout_secs",
    "http_header_timeout_ms",
    "max_connections",
    "max_connections_per_address",
    "default_rate_limit_per_minute",
    "db_read_connections",
    "db_max_connections",
    "db_statement_timeout_ms",
    "db_connections_per_tenant",
    "db_app_role",
    "db_allow_privileged_role",
    "secret_key",
    "access_token_ttl_secs",
    "refresh_token_ttl_days",
    "login_failures_per_account",
    "login_failures_per_address",
    "login_window_secs",
    "trust_forwarded_for",
    "ws_buffer_events",
    "ws_heartbeat_secs",
    "ws_idle_timeout_secs",
    "ws_send_timeout_secs",
    "ws_max_sockets_per_key",
    "ws_max_sockets_per_tenant",
    "ws_deliveries_per_sec_per_tenant",
    "event_retention_hours",
    "runtime_threads",
    "worker_concurrency",
    "worker_batch",
    "worker_poll_ms",
    "worker_lease_secs",
    "llm_base_url",
    "llm_api_key",
    "llm_model",
    "llm_timeout_secs",
    "speech_to_text",
    "text_to_speech",
    "speech_api_url",
    "speech_api_key",
    "speech_stt_model",
    "speech_tts_model",
    "speech_tts_voice",
    "elevenlabs_url",
    "elevenlabs_api_key",
    "elevenlabs_voice_id",
    "elevenlabs_model",
    "sphinx_bin",
    "espeak_bin",
    "voice_max_audio_secs",
    "voice_max_sessions_per_key",
    "voice_max_sessions_per_tenant",
    "voice_max_buffered_mib",
    "voice_utterance_timeout_secs",
    "metrics_token",
    "backups_kept",
    "metrics_tenant_label",
    "voice_llm_fallback",
];

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
    /// How the chat API is reached.
    pub fn llm(&self) -> flow_outbound::LlmConfig {
        flow_outbound::LlmConfig {
            base_url: self.llm_base_url.clone(),
            api_key: self.llm_api_key.clone(),
            model: self.llm_model.clone(),
            timeout: std::time::Duration::from_secs(self.llm_timeout_secs),
        }
    }

    /// Which speech providers run, and how they are reached.
    pub fn speech(&self) -> flow_outbound::speech::SpeechConfig {
        flow_outbound::speech::SpeechConfig {
            speech_to_text: self.speech_to_text.clone(),
            text_to_speech: self.text_to_speech.clone(),
            speech_api_url: self.speech_api_url.clone(),
            speech_api_key: self.speech_api_key.clone(),
            speech_stt_model: self.speech_stt_model.clone(),
            speech_tts_model: self.speech_tts_model.clone(),
            speech_tts_voice: self.speech_tts_voice.clone(),
            elevenlabs_url: self.elevenlabs_url.clone(),
            elevenlabs_api_key: self.elevenlabs_api_key.clone(),
            elevenlabs_voice_id: self.elevenlabs_voice_id.clone(),
            elevenlabs_model: self.elevenlabs_model.clone(),
            sphinx_bin: self.sphinx_bin.clone(),
            espeak_bin: self.espeak_bin.clone(),
            max_audio_secs: self.voice_max_audio_secs,
            timeout_secs: self.llm_timeout_secs,
        }
    }

    /// How many connections the listener keeps, and for how long an idle one; a
    /// `max_connections` of 0 is sized from `fd_limit`.
    pub fn connection_limits(&self, fd_limit: u64) -> crate::listener::ConnectionLimits {
        crate::listener::ConnectionLimits {
            max_connections: match self.max_connections {
                0 => crate::listener::ConnectionLimits::max_connections_for(fd_limit),
                n => n,
            },
            max_per_address: self.max_connections_per_address,
            header_timeout: std::time::Duration::from_millis(self.http_header_timeout_ms),
        }
    }

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
            // Only Flow's own keys: other FLOW_* variables (FLOW_BIN in scripts, ...) are not
            // settings and must not stop the server from starting.
            .merge(Env::prefixed("FLOW_").only(SETTINGS))
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
        if self.db_statement_timeout_ms == 0
            || self.db_statement_timeout_ms >= self.request_timeout_secs * 1000
        {
            bail!(
                "db_statement_timeout_ms must be positive and shorter than request_timeout_secs, \
                 so that a request's statements end before the request does"
            );
        }
        if self.backups_kept == 0 {
            bail!("backups_kept must be at least 1");
        }
        if self.metrics_token.as_deref().is_some_and(|t| t.len() < 16) {
            bail!("metrics_token must be at least 16 characters");
        }
        if self.http_header_timeout_ms < 100 {
            bail!("http_header_timeout_ms must be at least 100");
        }
        if self.default_rate_limit_per_minute == 0 {
            bail!("default_rate_limit_per_minute must be positive");
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                bail!(
                    "database_url {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
                    redact(url)
                );
            }
        }
        if !(60..=86_400).contains(&self.access_token_ttl_secs) {
            bail!("access_token_ttl_secs must be 60-86400");
        }
        if self.refresh_token_ttl_days == 0 || self.refresh_token_ttl_days > 365 {
            bail!("refresh_token_ttl_days must be 1-365");
        }
        if self.login_failures_per_account == 0
            || self.login_failures_per_address == 0
            || self.login_window_secs == 0
        {
            bail!("login_failures_per_account, login_failures_per_address and login_window_secs must be positive");
        }
        if self.ws_buffer_events < 16 {
            bail!("ws_buffer_events must be at least 16");
        }
        if self.ws_heartbeat_secs == 0 || self.ws_idle_timeout_secs <= self.ws_heartbeat_secs {
            bail!("ws_idle_timeout_secs must be longer than ws_heartbeat_secs (> 0)");
        }
        if self.ws_max_sockets_per_key == 0
            || self.ws_max_sockets_per_tenant == 0
            || self.ws_deliveries_per_sec_per_tenant == 0
            || self.voice_max_sessions_per_key == 0
            || self.voice_max_sessions_per_tenant == 0
            || self.voice_max_buffered_mib == 0
            || self.voice_utterance_timeout_secs == 0
        {
            bail!("ws_max_sockets_per_*, ws_deliveries_per_sec_per_tenant, voice_max_sessions_per_*, voice_max_buffered_mib and voice_utterance_timeout_secs must be positive");
        }
        if self.ws_send_timeout_secs == 0 || self.event_retention_hours == 0 {
            bail!("ws_send_timeout_secs and event_retention_hours must be positive");
        }
        if self.worker_batch == 0 || self.worker_poll_ms == 0 || self.worker_lease_secs == 0 {
            bail!("worker_batch, worker_poll_ms and worker_lease_secs must be positive");
        }
        if !["local", "openai", "none"].contains(&self.speech_to_text.as_str()) {
            bail!("speech_to_text must be local, openai or none");
        }
        if !["local", "openai", "elevenlabs", "none"].contains(&self.text_to_speech.as_str()) {
            bail!("text_to_speech must be local, openai, elevenlabs or none");
        }
        let needs_api = self.speech_to_text == "openai" || self.text_to_speech == "openai";
        if needs_api && self.speech_api_url.is_none() {
            bail!("speech_to_text or text_to_speech = \"openai\" needs speech_api_url");
        }
        if self.text_to_speech == "elevenlabs" && self.elevenlabs_api_key.is_none() {
            bail!("text_to_speech = \"elevenlabs\" needs elevenlabs_api_key");
        }
        for url in [
            self.speech_api_url.as_deref(),
            Some(self.elevenlabs_url.as_str()),
        ]
        .into_iter()
        .flatten()
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("speech_api_url and elevenlabs_url must be http:// or https:// URLs");
            }
        }
        if self.voice_max_audio_secs == 0 || self.voice_max_audio_secs > 300 {
            bail!("voice_max_audio_secs must be 1-300");
        }
        if let Some(url) = &self.llm_base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("llm_base_url must be an http:// or https:// URL");
            }
        }
        if self.llm_timeout_secs == 0 {
            bail!("llm_timeout_secs must be positive");
        }
        if self.secret_key.as_ref().is_some_and(|k| k.len() < 32) {
            bail!("secret_key must be at least 32 characters");
        }
        for origin in &self.cors_allowed_origins {
            if origin != "*" && axum::http::HeaderValue::from_str(origin).is_err() {
                bail!("cors_allowed_origins: {origin:?} is not a valid origin");
            }
        }
        Ok(())
    }

    /// The token-signing secret: configured, or generated once into the data dir.
    pub fn load_or_create_secret(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(key) = &self.secret_key {
            return Ok(key.as_bytes().to_vec());
        }
        let path = self.data_dir.join("secret.key");
        if let Ok(existing) = std::fs::read_to_string(&path) {
            let existing = existing.trim();
            if existing.len() >= 32 {
                return Ok(existing.as_bytes().to_vec());
            }
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let secret = hex::encode(bytes);
        write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
        Ok(secret.into_bytes())
    }

    /// The database to open: `database_url`, or the embedded file under `data_dir`.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("flow.db").display()))
    }

    /// Threads of the async runtime: `runtime_threads`, or with 0 twice the cores and at
    /// least 4, because the embedded database's statements run on these threads and a
    /// thread inside one serves nothing else meanwhile.
    pub fn runtime_threads(&self) -> usize {
        match self.runtime_threads {
            0 => std::thread::available_parallelism()
                .map_or(4, |cores| cores.get() * 2)
                .max(4),
            threads => threads,
        }
    }

    /// The database URL with its password replaced by `***`, for output and logs.
    pub fn database_url_redacted(&self) -> String {
        redact(&self.database_url())
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
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
            .field("db_max_connections", &self.db_max_connections)
            .field("db_statement_timeout_ms", &self.db_statement_timeout_ms)
            .field("db_connections_per_tenant", &self.db_connections_per_tenant)
            .field("db_allow_privileged_role", &self.db_allow_privileged_role)
            .field("db_app_role", &self.db_app_role)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("runtime_threads", &self.runtime_threads)
            .field("ws_buffer_events", &self.ws_buffer_events)
            .field("ws_heartbeat_secs", &self.ws_heartbeat_secs)
            .field("ws_idle_timeout_secs", &self.ws_idle_timeout_secs)
            .field("ws_send_timeout_secs", &self.ws_send_timeout_secs)
            .field("event_retention_hours", &self.event_retention_hours)
            .field("worker_concurrency", &self.worker_concurrency)
            .field("worker_batch", &self.worker_batch)
            .field("worker_poll_ms", &self.worker_poll_ms)
            .field("worker_lease_secs", &self.worker_lease_secs)
            .field("llm_base_url", &self.llm_base_url)
            .field(
                "llm_api_key",
                &self.llm_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("llm_model", &self.llm_model)
            .field("llm_timeout_secs", &self.llm_timeout_secs)
            .field("voice_llm_fallback", &self.voice_llm_fallback)
            .field("speech_to_text", &self.speech_to_text)
            .field("text_to_speech", &self.text_to_speech)
            .field("speech_api_url", &self.speech_api_url)
            .field(
                "speech_api_key",
                &self.speech_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("speech_stt_model", &self.speech_stt_model)
            .field("speech_tts_model", &self.speech_tts_model)
            .field("speech_tts_voice", &self.speech_tts_voice)
            .field("elevenlabs_url", &self.elevenlabs_url)
            .field(
                "elevenlabs_api_key",
                &self.elevenlabs_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("elevenlabs_voice_id", &self.elevenlabs_voice_id)
            .field("elevenlabs_model", &self.elevenlabs_model)
            .field("sphinx_bin", &self.sphinx_bin)
            .field("espeak_bin", &self.espeak_bin)
            .field("voice_max_audio_secs", &self.voice_max_audio_secs)
            .field(
                "voice_max_sessions_per_key",
                &self.voice_max_sessions_per_key,
            )
            .field(
                "voice_max_sessions_per_tenant",
                &self.voice_max_sessions_per_tenant,
            )
            .field("voice_max_buffered_mib", &self.voice_max_buffered_mib)
            .field(
                "voice_utterance_timeout_secs",
                &self.voice_utterance_timeout_secs,
            )
            .field("http_header_timeout_ms", &self.http_header_timeout_ms)
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_address",
                &self.max_connections_per_address,
            )
            .field("ws_max_sockets_per_key", &self.ws_max_sockets_per_key)
            .field("ws_max_sockets_per_tenant", &self.ws_max_sockets_per_tenant)
            .field(
                "ws_deliveries_per_sec_per_tenant",
                &self.ws_deliveries_per_sec_per_tenant,
            )
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("metrics_tenant_label", &self.metrics_tenant_label)
            .field("backups_kept", &self.backups_kept)
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
    fn a_statement_timeout_must_end_before_the_request() {
        let mut config = Config::defaults();
        config.request_timeout_secs = 5;
        config.db_statement_timeout_ms = 5_000;
        assert!(config.validate().is_err());
        config.db_statement_timeout_ms = 4_000;
        config.validate().unwrap();
    }

    #[test]
    fn every_setting_can_come_from_the_environment() {
        let defaults = serde_json::to_value(Config::defaults()).unwrap();
        let mut names: Vec<&str> = defaults
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort();
        let mut listed = SETTINGS.to_vec();
        listed.sort();
        assert_eq!(names, listed);
    }

    #[test]
    // figment's Jail fixes the closure's error type; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    fn unrelated_flow_variables_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FLOW_BIN", "/usr/local/bin/flow");
            jail.set_env("FLOW_PORT", "4321");
            let config = Config::load(None, Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(config.port, 4321);
            Ok(())
        });
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
