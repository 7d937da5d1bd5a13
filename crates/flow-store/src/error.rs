use std::fmt;

/// The result of a storage operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a storage operation failed, in terms the API layer can map to a status code.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist for this tenant (which includes other tenants' rows).
    #[error("not found")]
    NotFound,
    /// A unique or foreign-key constraint rejected the write; names the constraint.
    #[error("constraint violated: {0}")]
    Constraint(Constraint),
    /// The database cannot be reached or is shutting down; worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a broken database. Logged, never shown to clients.
    #[error("database error: {0}")]
    Internal(String),
}

impl StoreError {
    /// An [`StoreError::Internal`] carrying `error`'s message.
    pub fn internal(error: impl fmt::Display) -> Self {
        StoreError::Internal(error.to_string())
    }
}

/// The constraints the API layer turns into 409/422 answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    /// Two contacts of one tenant with the same normalised email.
    ContactEmailUnique,
    /// Two tenants with the same slug.
    TenantSlugUnique,
    /// Two API keys with the same secret (only the fixed demo keys can collide).
    ApiKeyUnique,
    /// Two users with the same email.
    UserEmailUnique,
    /// A reference to a row that does not exist.
    ForeignKey,
    /// Any other unique constraint; the backend names it for the log.
    Other(&'static str),
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::ContactEmailUnique => f.write_str("contacts.email unique per tenant"),
            Constraint::TenantSlugUnique => f.write_str("tenants.slug unique"),
            Constraint::ApiKeyUnique => f.write_str("api_keys.key_hash unique"),
            Constraint::UserEmailUnique => f.write_str("users.email unique"),
            Constraint::ForeignKey => f.write_str("foreign key"),
            Constraint::Other(name) => f.write_str(name),
        }
    }
}
