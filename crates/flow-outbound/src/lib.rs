//! Every call Flow makes to another system: the OpenAI-compatible chat API ([`llm`]) and
//! the speech providers ([`speech`]). Each client owns its timeouts and turns the other
//! side's failures into errors that say whether another try could help.

pub mod llm;
pub mod speech;

pub use llm::{Completion, LlmClient, LlmConfig};

/// Why a call to another system failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// Worth another try: unreachable, timed out, overloaded (429, 5xx), or garbled.
    #[error("{0}")]
    Retryable(String),
    /// Will fail again: the other side refused the request itself.
    #[error("{0}")]
    Permanent(String),
}
