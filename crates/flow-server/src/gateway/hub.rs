//! Fan-out: one dispatcher per tenant with connected sockets tails the tenant's event log
//! and broadcasts each event, serialised once, to that tenant's sockets.
//!
//! Commit notices from the store only wake dispatchers; what is sent always comes from the
//! log in sequence order, so a lost notice delays an event (until the next poll) but never
//! loses or reorders one.
//!
//! Fan-out costs the process an event's size times the tenant's sockets, on the same
//! threads that serve every tenant's requests: one tenant importing thousands of leads
//! with hundreds of sockets open would spend the cores on its own deliveries. So each
//! dispatcher spends from a budget of deliveries (events × sockets) per second, and when
//! it is spent publishes later instead: its sockets get their events late, in order,
//! and nothing is lost, since the log still has them. This is the quota Supabase
//! Realtime and Pusher put on a tenant's messages per second.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use flow_store::{EventType, LoggedEvent, Store, StoreError, TenantId};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use super::protocol;
use crate::metrics::Metrics;

/// How often a dispatcher reads its log even without a notice: picks up events written
/// by other processes (the CLI, other instances) and any notice that was missed.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Events published in one broadcast burst at most: a socket writes a burst with one flush.
const MAX_PUBLISH_BATCH: usize = 64;

/// How the hub buffers and paces each tenant's fan-out.
#[derive(Clone, Copy, Debug)]
pub struct FanoutLimits {
    /// Events buffered per tenant; a socket further behind is closed and resumes.
    pub buffer_events: usize,
    /// Deliveries (events × the tenant's sockets) a tenant's dispatcher makes per second.
    pub deliveries_per_sec: u32,
}

/// One event, ready to send.
#[derive(Debug)]
pub struct EventFrame {
    pub seq: i64,
    pub event_type: EventType,
    /// The apps the routing table targets (rooms `app:{name}`).
    pub target_apps: Vec<String>,
    pub timestamp: DateTime<Utc>,
    pub text: Utf8Bytes,
}

impl EventFrame {
    /// Serialises a logged event into a frame.
    pub fn new(logged: &LoggedEvent) -> Self {
        Self {
            seq: logged.seq,
            event_type: logged.event.event_type,
            target_apps: logged.event.target.clone(),
            timestamp: logged.event.timestamp,
            text: protocol::event_frame(logged),
        }
    }
}

struct TenantChannel {
    sender: broadcast::Sender<Arc<EventFrame>>,
    wake: Arc<Notify>,
    /// Events announced by commit notices, not yet dispatched.
    pending: Arc<Mutex<Vec<LoggedEvent>>>,
}

/// The process's event fan-out.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    store: Arc<dyn Store>,
    tenants: Mutex<HashMap<TenantId, TenantChannel>>,
    limits: FanoutLimits,
    metrics: Metrics,
    shutdown: CancellationToken,
}

impl Hub {
    /// A hub over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        limits: FanoutLimits,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(HubInner {
                store,
                tenants: Mutex::new(HashMap::new()),
                limits,
                metrics,
                shutdown,
            }),
        }
    }

    /// Forwards the store's commit notices to the dispatchers until shutdown.
    pub async fn run(self) {
        let mut notices = self.inner.store.commit_notices();
        loop {
            let notice = tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                notice = notices.recv() => notice,
            };
            match notice {
                Ok(notice) if notice.is_for_all_tenants() => {
                    for channel in self.lock().values() {
                        channel.wake.notify_one();
                    }
                }
                Ok(notice) => {
                    let tenants = self.lock();
                    if let Some(channel) = tenants.get(&notice.tenant_id) {
                        let mut pending = channel.pending.lock().unwrap_or_else(|e| e.into_inner());
                        if pending.len() >= self.inner.limits.buffer_events {
                            // A dispatcher this far behind reads the log instead: its
                            // notices must not grow without bound meanwhile.
                            pending.clear();
                        } else {
                            pending.extend(notice.events.iter().cloned());
                        }
                        drop(pending);
                        channel.wake.notify_one();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Notices were dropped: every dispatcher re-reads its log.
                    let tenants = self.lock();
                    for channel in tenants.values() {
                        channel.wake.notify_one();
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// A receiver of `tenant`'s live events, starting a dispatcher if none runs.
    ///
    /// A new dispatcher starts from where the log stood before this call returned, so
    /// every event after the subscriber's own starting point is broadcast.
    pub async fn subscribe(
        &self,
        tenant: TenantId,
    ) -> Result<broadcast::Receiver<Arc<EventFrame>>, StoreError> {
        if let Some(channel) = self.lock().get(&tenant) {
            return Ok(channel.sender.subscribe());
        }
        let last = self
            .inner
            .store
            .read(tenant)
            .await?
            .last_event_seq()
            .await?;
        let mut tenants = self.lock();
        if let Some(channel) = tenants.get(&tenant) {
            return Ok(channel.sender.subscribe());
        }
        let (sender, receiver) = broadcast::channel(self.inner.limits.buffer_events);
        let channel = TenantChannel {
            sender: sender.clone(),
            wake: Arc::new(Notify::new()),
            pending: Arc::new(Mutex::new(Vec::new())),
        };
        let dispatcher = Dispatcher {
            hub: self.clone(),
            tenant,
            sender,
            wake: channel.wake.clone(),
            pending: channel.pending.clone(),
            last,
            budget: DeliveryBudget::new(self.inner.limits.deliveries_per_sec),
        };
        tenants.insert(tenant, channel);
        // Its first round reads the log from `last`, catching what was committed meanwhile.
        tokio::spawn(dispatcher.run());
        Ok(receiver)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, TenantChannel>> {
        self.inner.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Dispatcher {
    hub: Hub,
    tenant: TenantId,
    sender: broadcast::Sender<Arc<EventFrame>>,
    wake: Arc<Notify>,
    pending: Arc<Mutex<Vec<LoggedEvent>>>,
    /// The last sequence number broadcast.
    last: i64,
    budget: DeliveryBudget,
}

impl Dispatcher {
    async fn run(mut self) {
        loop {
            if let Err(error) = self.dispatch().await {
                tracing::warn!(tenant = %self.tenant, %error, "event dispatch failed; retrying");
            }
            if self.retire_if_unused() {
                return;
            }
            tokio::select! {
                () = self.hub.inner.shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    /// Broadcasts every event after `last`, in bursts paced by the delivery budget:
    /// straight from the notices when they continue the sequence, otherwise from the log.
    async fn dispatch(&mut self) -> Result<(), StoreError> {
        loop {
            let sockets = self.sender.receiver_count();
            // A burst small enough that paced bursts stay short, whatever the socket count.
            let burst = (self.budget.burst() / sockets.max(1)).clamp(1, MAX_PUBLISH_BATCH);
            let events = self.next_events(burst).await?;
            if events.is_empty() {
                return Ok(());
            }
            let wait = self.budget.spend(events.len() * sockets, Instant::now());
            if !wait.is_zero() {
                tokio::select! {
                    () = self.hub.inner.shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
            for event in &events {
                self.publish(event);
            }
        }
    }

    /// Up to `limit` events after `last`, in order.
    async fn next_events(&mut self, limit: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        let last = self.last;
        if let Some(announced) = self.announced_after(last, limit) {
            return Ok(announced);
        }
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        self.hub
            .inner
            .store
            .read(self.tenant)
            .await?
            .list_events(last, limit)
            .await
    }

    /// Up to `limit` notices that continue the sequence right after `last`, if any do.
    fn announced_after(&self, last: i64, limit: usize) -> Option<Vec<LoggedEvent>> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|e| e.seq > last);
        pending.sort_by_key(|e| e.seq);
        let contiguous = pending
            .iter()
            .take(limit)
            .enumerate()
            .take_while(|(i, e)| e.seq == last + 1 + *i as i64)
            .count();
        (contiguous > 0).then(|| pending.drain(..contiguous).collect())
    }

    fn publish(&mut self, logged: &LoggedEvent) {
        let frame = Arc::new(EventFrame::new(logged));
        let metrics = &self.hub.inner.metrics;
        let event_type = logged.event.event_type.as_str();
        if frame.target_apps.is_empty() {
            metrics.ws_event_published(event_type, &logged.event.source, "tenant");
        }
        for app in &frame.target_apps {
            metrics.ws_event_published(event_type, &logged.event.source, app);
        }
        self.last = logged.seq;
        // No receivers right now is fine: the socket that subscribes next reads the log.
        let _ = self.sender.send(frame);
    }

    /// Stops when the tenant has no sockets left; `subscribe` starts a new one later.
    fn retire_if_unused(&self) -> bool {
        if self.sender.receiver_count() > 0 {
            return false;
        }
        let mut tenants = self
            .hub
            .inner
            .tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.sender.receiver_count() > 0 {
            return false;
        }
        tenants.remove(&self.tenant);
        true
    }
}

/// A token bucket of deliveries that may go into debt: a burst is published at once and
/// the next waits until the debt is paid back.
struct DeliveryBudget {
    per_sec: f64,
    /// Tokens available; negative while a burst is being paid back.
    tokens: f64,
    updated: Instant,
}

impl DeliveryBudget {
    /// Bursts are a tenth of a second's budget, so a paced tenant's deliveries are spread
    /// evenly instead of arriving as one large burst a second.
    const BURST_SECS: f64 = 0.1;

    fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self {
            per_sec,
            tokens: per_sec * Self::BURST_SECS,
            updated: Instant::now(),
        }
    }

    /// Deliveries one burst may make.
    fn burst(&self) -> usize {
        (self.per_sec * Self::BURST_SECS) as usize
    }

    /// Spends `deliveries` and answers how long to wait before making them.
    fn spend(&mut self, deliveries: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.per_sec * Self::BURST_SECS);
        self.tokens -= deliveries as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_lets_a_burst_through_and_paces_what_follows() {
        let start = Instant::now();
        let mut budget = DeliveryBudget::new(1_000);
        assert_eq!(budget.burst(), 100);
        assert_eq!(budget.spend(100, start), Duration::ZERO);
        // Spent: the next 50 wait for 50 deliveries' worth of refill.
        assert_eq!(budget.spend(50, start), Duration::from_millis(50));
        // 50 ms later that debt is paid, and 10 more wait 10 ms.
        let later = start + Duration::from_millis(50);
        assert_eq!(budget.spend(10, later), Duration::from_millis(10));
        // An idle second refills only one burst, not a second's worth.
        let idle = later + Duration::from_secs(1);
        assert_eq!(budget.spend(100, idle), Duration::ZERO);
        assert!(budget.spend(1, idle) > Duration::ZERO);
    }
}
