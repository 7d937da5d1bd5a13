//! What every handler can reach.

use std::{sync::Arc, time::Instant};

use flow_store::Store;

use crate::{auth::KeyUsage, config::Config, metrics::Metrics, ratelimit::RateLimiter};

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub rate_limiter: Arc<RateLimiter>,
    pub key_usage: Arc<KeyUsage>,
    pub started_at: Instant,
}

impl AppState {
    /// State over an opened store.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        Self {
            store,
            config: Arc::new(config),
            metrics: Metrics::new(),
            rate_limiter: Arc::new(RateLimiter::default()),
            key_usage: Arc::new(KeyUsage::default()),
            started_at: Instant::now(),
        }
    }
}
