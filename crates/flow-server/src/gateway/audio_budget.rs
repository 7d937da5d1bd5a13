//! The audio all voice sessions of the process may buffer together.

/// Audio buffered by all of the process's voice sessions together, so that many sessions
/// that never end their utterances cannot exhaust memory.
pub struct AudioBudget {
    limit: usize,
    used: std::sync::atomic::AtomicUsize,
}

impl AudioBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            limit,
            used: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Takes `bytes` from the budget, unless that would overdraw it.
    pub(super) fn take(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    pub(super) fn give_back(&self, bytes: usize) {
        self.used
            .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
    }
}
