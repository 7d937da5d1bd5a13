//! Flow's domain model and the storage boundary.
//!
//! Every backend implements [`Store`]. Tenant data is reachable only through a
//! [`TenantRead`] or [`TenantTx`], which a backend opens for exactly one tenant: there
//! is no way to write a tenant query without a tenant context.

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod events;
mod ids;
mod jobs;
mod model;
mod store;
mod vocab;

pub use error::{Constraint, StoreError, StoreResult};
pub use events::{EventPriority, EventType};
pub use ids::*;
pub use jobs::*;
pub use model::*;
pub use store::*;
pub use vocab::{ActorKind, UnknownName};
