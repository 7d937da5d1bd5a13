//! Caps on open sockets per credential and per tenant, so that one key cannot hold the
//! process's connections (two tokens once held 20,000 sockets).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use flow_app::auth::Caller;
use flow_store::TenantId;

use flow_app::error::ApiError;

use crate::error::{ErrorCode, HttpError};

/// Who a socket is counted against.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Holder {
    /// The API key or the signed-in user behind the socket (the audit trail's actor).
    Credential(String),
    Tenant(TenantId),
}

/// The open sockets of one kind (event streams, or voice sessions) in this process.
pub struct OpenSockets {
    /// What the refusal calls them ("sockets", "voice sessions").
    what: &'static str,
    per_credential: usize,
    per_tenant: usize,
    open: Mutex<HashMap<Holder, usize>>,
}

impl OpenSockets {
    /// At most `per_credential` open per key (or user), `per_tenant` per tenant.
    pub fn new(what: &'static str, per_credential: usize, per_tenant: usize) -> Arc<Self> {
        Arc::new(Self {
            what,
            per_credential,
            per_tenant,
            open: Mutex::default(),
        })
    }

    /// A place for one more socket of `caller`, or 429 `too_many_sockets`.
    pub fn admit(self: &Arc<Self>, caller: &Caller) -> Result<SocketPlace, HttpError> {
        let holders = [
            (
                Holder::Credential(caller.actor.id.clone()),
                self.per_credential,
                "credential",
            ),
            (Holder::Tenant(caller.tenant_id), self.per_tenant, "tenant"),
        ];
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for (holder, cap, name) in &holders {
            if open.get(holder).copied().unwrap_or(0) >= *cap {
                return Err(HttpError(
                    ApiError::new(
                        ErrorCode::TooManySockets,
                        format!(
                            "this {name} has {cap} {} open, its limit; close one first",
                            self.what
                        ),
                    )
                    .retry_after(1),
                ));
            }
        }
        for (holder, _, _) in &holders {
            *open.entry(holder.clone()).or_default() += 1;
        }
        Ok(SocketPlace {
            sockets: self.clone(),
            holders: holders.map(|(holder, _, _)| holder),
        })
    }
}

/// One open socket's place; dropping it (when the socket ends) frees it.
pub struct SocketPlace {
    sockets: Arc<OpenSockets>,
    holders: [Holder; 2],
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        let mut open = self.sockets.open.lock().unwrap_or_else(|e| e.into_inner());
        for holder in &self.holders {
            if let Some(count) = open.get_mut(holder) {
                *count -= 1;
                if *count == 0 {
                    open.remove(holder);
                }
            }
        }
    }
}
