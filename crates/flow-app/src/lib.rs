//! Flow's use cases, independent of any transport: who is calling and what they may do
//! ([`auth`], [`credentials`]), units of work ([`work`]), the business rules
//! ([`services`]), the jobs they enqueue ([`jobs`]) and the processors that run them
//! ([`processors`]). HTTP and WebSocket live in `flow-server`, on top of this crate.
//!
//! Layers, each importing only from those above it in this list:
//! `error`, `validate` → `auth`, `jwt`, `login_guard` → `credentials` → `work` → `jobs`
//! → `services` → `processors`.

pub mod auth;
pub mod credentials;
pub mod error;
pub mod jobs;
pub mod jwt;
pub mod login_guard;
pub mod processors;
pub mod services;
pub mod socket_token;
pub mod validate;
pub mod work;

pub use error::{ApiError, ApiResult, ErrorCode};
