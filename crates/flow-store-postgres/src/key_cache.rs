//! Verified API keys kept in memory, forgotten on every change notice.
//!
//! A read request used to spend more database time finding its key than serving the
//! read. Keys change rarely; when one does (revoked, its tenant deactivated, its rights
//! changed), a trigger NOTIFYs `flow_keys` and every instance drops its whole cache. The
//! instance that made the change also drops it at commit, so its own next request never
//! sees the old key; other instances see the change once the notice arrives
//! (milliseconds). A notice lost while the listener reconnects is covered by dropping
//! the cache on reconnect, and entries expire after [`TTL`] regardless.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use flow_store::ApiKeyWithTenant;

/// The longest an entry is trusted without a fresh lookup.
pub const TTL: Duration = Duration::from_secs(30);

/// Keys by the hash of their secret.
#[derive(Default)]
pub struct KeyCache {
    /// Bumped on every invalidation: a lookup that started before one must not store
    /// what it read.
    generation: AtomicU64,
    entries: Mutex<HashMap<[u8; 32], (ApiKeyWithTenant, Instant)>>,
}

impl KeyCache {
    /// The current generation, taken before a lookup.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A fresh entry for `hash`.
    pub fn get(&self, hash: &[u8; 32]) -> Option<ApiKeyWithTenant> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(key, _)| key.clone())
    }

    /// Stores what a lookup begun at `generation` found, unless the cache was
    /// invalidated meanwhile.
    pub fn insert(&self, hash: [u8; 32], key: ApiKeyWithTenant, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        // Unknown secrets are never stored, so the map only holds real keys; this bound
        // is for a tenant with an unusual number of them.
        if entries.len() >= 100_000 {
            entries.clear();
        }
        entries.insert(hash, (key, Instant::now()));
    }

    /// Forgets everything.
    pub fn invalidate(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}
