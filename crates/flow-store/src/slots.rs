//! A bound on one tenant's share of a backend's connections, and the deadline of the
//! request a database call serves.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{StoreError, StoreResult, TenantId};

/// Connections one tenant may hold at once. Without it, 24 slow searches of one tenant
/// filled a PostgreSQL pool for 10 s and another tenant's create got 503 after 5 s.
#[derive(Debug)]
pub struct TenantSlots {
    per_tenant: usize,
    wait: Duration,
    tenants: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
}

/// A tenant's claim on one connection; released when dropped.
#[derive(Debug)]
pub struct TenantSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl TenantSlots {
    /// At most `per_tenant` (at least 1) connections per tenant; a tenant at its bound
    /// waits up to `wait` for one of its own to come back.
    pub fn new(per_tenant: usize, wait: Duration) -> Self {
        Self {
            per_tenant: per_tenant.max(1),
            wait,
            tenants: Mutex::default(),
        }
    }

    /// Takes one of `tenant`'s slots; `Unavailable` if none frees up in time.
    pub async fn acquire(&self, tenant: TenantId) -> StoreResult<TenantSlot> {
        // One semaphore per tenant that ever used the store: a few bytes each, bounded by
        // the number of tenants.
        let semaphore = self
            .tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone();
        let permit = tokio::time::timeout(self.wait, semaphore.acquire_owned())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "the tenant already uses {} database connections at once",
                    self.per_tenant
                ))
            })?
            .map_err(|_| StoreError::Unavailable("database is closed".into()))?;
        Ok(TenantSlot(permit))
    }
}

tokio::task_local! {
    static REQUEST_DEADLINE: Instant;
}

/// Runs `work` (a request) with `deadline` as the time its database statements must end
/// by: a backend that can bound a statement (PostgreSQL's `statement_timeout`) bounds it by
/// what is left of the request's time.
pub async fn with_deadline<F: Future>(deadline: Instant, work: F) -> F::Output {
    REQUEST_DEADLINE.scope(deadline, work).await
}

/// What is left of the current request's time, if the caller runs within
/// [`with_deadline`].
pub fn time_left() -> Option<Duration> {
    REQUEST_DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}
