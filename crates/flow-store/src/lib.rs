//! Flow's domain model and the storage boundary.
//!
//! Every backend implements [`Store`]. Tenant data is reachable only through a
//! [`TenantRead`] or [`TenantTx`], which a backend opens for exactly one tenant: there
//! is no way to write a tenant query without a tenant context.
//!
//! The rules a backend applies when it writes (ids and timestamps of new records, event
//! routing, email case, the rollup formula, search patterns) live here too, so that
//! backends differ only in SQL.

mod build;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod events;
mod ids;
mod jobs;
mod model;
mod plans;
mod slots;
mod store;
mod vocab;

pub use build::{like_contains, now, LIKE_ESCAPE};
pub use error::{Constraint, StoreError, StoreResult};
pub use events::{EventPriority, EventType};
pub use flow_vocab::{string_enum, UnknownName};
pub use ids::*;
pub use jobs::*;
pub use model::*;
pub use plans::PlanLog;
pub use slots::{time_left, with_deadline, TenantSlot, TenantSlots};
pub use store::*;
pub use vocab::{ActivityKind, ActorKind, AuditAction, IncidentStatus};
