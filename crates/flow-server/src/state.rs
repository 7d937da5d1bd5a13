//! What every handler can reach, and the parts of it that the layers below take
//! (axum `FromRef` substates), so that none of them depends on the whole.

use std::{sync::Arc, time::Instant};

use axum::extract::FromRef;
use flow_app::{auth::KeyUsage, credentials::Credentials, services::users::Sessions};
use flow_jobs::WorkSignal;
use flow_outbound::{speech::SpeechServices, LlmClient};
use flow_store::Store;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::AuthState,
    config::Config,
    gateway::{
        audio_budget::AudioBudget,
        hub::{FanoutLimits, Hub},
        open_sockets::OpenSockets,
    },
    metrics::Metrics,
    ratelimit::RateLimiter,
};

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub auth: AuthState,
    /// Sign-in, refresh and token minting.
    pub sessions: Sessions,
    pub hub: Hub,
    /// Open event sockets per credential and per tenant.
    pub sockets: Arc<OpenSockets>,
    /// Open voice sessions (`/voice/{id}`), each holding audio, per credential and tenant.
    pub voice_sessions: Arc<OpenSockets>,
    /// Audio the voice sessions buffer, all together.
    pub voice_audio: Arc<AudioBudget>,
    /// Wakes idle queue workers when jobs are enqueued.
    pub work_signal: WorkSignal,
    /// Speech-to-text and text-to-speech for the voice agent.
    pub speech: SpeechServices,
    /// The chat API voice commands fall back to when the parser is not sure.
    pub voice_llm: Option<LlmClient>,
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
        let secret: Arc<[u8]> = config.load_or_create_secret()?.into();
        let hub = Hub::new(
            store.clone(),
            FanoutLimits {
                buffer_events: config.ws_buffer_events,
                deliveries_per_sec: config.ws_deliveries_per_sec_per_tenant,
            },
            metrics.clone(),
            shutdown.clone(),
        );
        let speech = SpeechServices::from_config(&config.speech())?;
        let voice_llm = config
            .voice_llm_fallback
            .then(|| LlmClient::from_config(&config.llm()))
            .flatten();
        let auth = AuthState {
            credentials: Credentials {
                store: store.clone(),
                secret: secret.clone(),
                user_rate_limit: config.default_rate_limit_per_minute,
                spent_tokens: Arc::default(),
            },
            rate_limiter: Arc::new(RateLimiter::default()),
            key_usage: Arc::new(KeyUsage::default()),
            trust_forwarded_for: config.trust_forwarded_for,
        };
        let sessions = Sessions {
            store: store.clone(),
            login_guard: Arc::new(flow_app::login_guard::LoginGuard::new(
                config.login_failures_per_account,
                config.login_failures_per_address,
                std::time::Duration::from_secs(config.login_window_secs),
            )),
            secret: secret.clone(),
            access_token_ttl_secs: config.access_token_ttl_secs,
            refresh_token_ttl_days: config.refresh_token_ttl_days,
        };
        let sockets = OpenSockets::new(
            "sockets",
            config.ws_max_sockets_per_key,
            config.ws_max_sockets_per_tenant,
        );
        let voice_sessions = OpenSockets::new(
            "voice sessions",
            config.voice_max_sessions_per_key,
            config.voice_max_sessions_per_tenant,
        );
        let voice_audio = AudioBudget::new(config.voice_max_buffered_mib.saturating_mul(1 << 20));
        Ok(Self {
            speech,
            voice_llm,
            store,
            config: Arc::new(config),
            metrics,
            auth,
            sessions,
            hub,
            sockets,
            voice_sessions,
            voice_audio,
            work_signal: WorkSignal::default(),
            secret,
            shutdown,
            started_at: Instant::now(),
        })
    }
}

impl FromRef<AppState> for AuthState {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}
