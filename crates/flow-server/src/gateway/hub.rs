//! Fan-out: one dispatcher per tenant with connected sockets tails the tenant's event log
//! and broadcasts each event, serialised once, to that tenant's sockets.
//!
//! Commit notices from the store only wake dispatchers; what is sent always comes from the
//! log in sequence order, so a lost notice delays an event (until the next poll) but never
//! loses or reorders one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
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
    capacity: usize,
    metrics: Metrics,
    shutdown: CancellationToken,
}

impl Hub {
    /// A hub over `store`; `capacity` events are buffered per tenant.
    pub fn new(
        store: Arc<dyn Store>,
        capacity: usize,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(HubInner {
                store,
                tenants: Mutex::new(HashMap::new()),
                capacity,
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
                        channel
                            .pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend(notice.events.iter().cloned());
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
        let (sender, receiver) = broadcast::channel(self.inner.capacity);
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

    /// Broadcasts every event after `last`: straight from the notices when they continue
    /// the sequence, otherwise from the log.
    async fn dispatch(&mut self) -> Result<(), StoreError> {
        let last = self.last;
        let mut announced =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        announced.retain(|e| e.seq > last);
        announced.sort_by_key(|e| e.seq);
        let contiguous = announced
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == last + 1 + i as i64);
        if !announced.is_empty() && contiguous {
            for event in &announced {
                self.publish(event);
            }
            return Ok(());
        }
        let mut tx = self.hub.inner.store.read(self.tenant).await?;
        loop {
            let batch = tx.list_events(self.last, 500).await?;
            for event in &batch {
                self.publish(event);
            }
            if batch.len() < 500 {
                return Ok(());
            }
        }
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
