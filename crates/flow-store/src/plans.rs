//! Query plans, recorded by a backend when a test asks for them.

use std::sync::{Arc, Mutex};

/// Where a backend opened with a plan log writes the plan of each list query it runs,
/// so that a test can check the hot paths are answered from indexes on both databases.
#[derive(Clone, Debug, Default)]
pub struct PlanLog(Arc<Mutex<Vec<String>>>);

impl PlanLog {
    /// Adds one query's plan, in the backend's own words.
    pub fn record(&self, plan: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(plan);
    }

    /// The plans recorded since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
