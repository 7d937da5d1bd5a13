//! What every handler can reach.

use std::{sync::Arc, time::Instant};

use flow_store::Store;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::KeyUsage, config::Config, gateway::hub::Hub, login_guard::LoginGuard, metrics::Metrics,
    queue::WorkSignal, ratelimit::RateLimiter, speech::SpeechServices,
};

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub rate_limiter: Arc<RateLimiter>,
    pub key_usage: Arc<KeyUsage>,
    /// Slows password guessing on `POST /auth/login`.
    pub login_guard: Arc<LoginGuard>,
    pub hub: Hub,
    /// Wakes idle queue workers when jobs are enqueued.
    pub work_signal: WorkSignal,
    /// Speech-to-text and text-to-speech for the voice agent.
    pub speech: SpeechServices,
    /// The chat API voice commands fall back to when the parser is not sure.
    pub voice_llm: Option<crate::queue::chat::LlmClient>,
    /// Signs connection tokens.
    pub secret: Arc<[u8]>,
    /// Cancelled once on shutdown: sockets close with 1001, background tasks stop.
    pub shutdown: CancellationToken,
    pub started_at: Instant,
}

impl AppState {
    /// State over an opened store.
    pub fn new(
        store: Arc<dyn Store>,
        config: Config,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let secret = config.load_or_create_secret()?;
        let hub = Hub::new(
            store.clone(),
            config.ws_buffer_events,
            metrics.clone(),
            shutdown.clone(),
        );
        let speech = SpeechServices::from_config(&config)?;
        let voice_llm = config
            .voice_llm_fallback
            .then(|| crate::queue::chat::LlmClient::from_config(&config))
            .flatten();
        let login_guard = Arc::new(LoginGuard::new(
            config.login_failures_per_account,
            config.login_failures_per_address,
            std::time::Duration::from_secs(config.login_window_secs),
        ));
        Ok(Self {
            speech,
            voice_llm,
            store,
            config: Arc::new(config),
            metrics,
            rate_limiter: Arc::new(RateLimiter::default()),
            key_usage: Arc::new(KeyUsage::default()),
            login_guard,
            hub,
            work_signal: WorkSignal::default(),
            secret: secret.into(),
            shutdown,
            started_at: Instant::now(),
        })
    }
}
