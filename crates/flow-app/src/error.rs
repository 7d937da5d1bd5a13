//! The one error type of Flow's use cases: a stable code from [`ErrorCode`] and a message.
//! The HTTP layer turns the code into a status; sockets send it as it is.

use flow_store::{Constraint, StoreError};

flow_store::string_enum! {
    /// Every error code a client can see. `docs/ARCHITECTURE.md` lists them; a test keeps
    /// the two equal.
    #[derive(Hash)]
    pub enum ErrorCode {
        // Malformed requests.
        InvalidJson = "invalid_json",
        InvalidBody = "invalid_body",
        ValidationFailed = "validation_failed",
        UnsupportedMediaType = "unsupported_media_type",
        PayloadTooLarge = "payload_too_large",
        InvalidQuery = "invalid_query",
        InvalidId = "invalid_id",
        InvalidLimit = "invalid_limit",
        InvalidCursor = "invalid_cursor",
        InvalidSince = "invalid_since",
        InvalidRange = "invalid_range",
        InvalidDay = "invalid_day",
        InvalidEncoding = "invalid_encoding",
        BadRequest = "bad_request",
        // Credentials and rights.
        MissingApiKey = "missing_api_key",
        InvalidApiKey = "invalid_api_key",
        InactiveApiKey = "inactive_api_key",
        InactiveTenant = "inactive_tenant",
        InvalidSourceApp = "invalid_source_app",
        AppNotAllowed = "app_not_allowed",
        TenantMismatch = "tenant_mismatch",
        PermissionDenied = "permission_denied",
        InvalidAuthorization = "invalid_authorization",
        InvalidToken = "invalid_token",
        InvalidCredentials = "invalid_credentials",
        InvalidRefreshToken = "invalid_refresh_token",
        RefreshTokenReused = "refresh_token_reused",
        NotAMember = "not_a_member",
        NoTenant = "no_tenant",
        NotAUser = "not_a_user",
        // Limits.
        RateLimited = "rate_limited",
        TooManyAttempts = "too_many_attempts",
        TooManyConnections = "too_many_connections",
        TooManySockets = "too_many_sockets",
        // Missing things.
        NotFound = "not_found",
        RouteNotFound = "route_not_found",
        MethodNotAllowed = "method_not_allowed",
        // Conflicts with the current state.
        InvalidStatusTransition = "invalid_status_transition",
        ContactEmailExists = "contact_email_exists",
        TenantExists = "tenant_exists",
        UserExists = "user_exists",
        ApiKeyExists = "api_key_exists",
        AlreadyAMember = "already_a_member",
        LastAdmin = "last_admin",
        TenantNotEmpty = "tenant_not_empty",
        JobNotDead = "job_not_dead",
        InvalidReference = "invalid_reference",
        Conflict = "conflict",
        // Voice and speech.
        UnknownCommand = "unknown_command",
        AudioTooLong = "audio_too_long",
        SpeechUnsupported = "speech_unsupported",
        SpeechNotRecognised = "speech_not_recognised",
        SpeechProviderFailed = "speech_provider_failed",
        LlmNotConfigured = "llm_not_configured",
        // The WebSocket gateway.
        UpgradeRequired = "upgrade_required",
        // Flow itself.
        RequestTimeout = "request_timeout",
        ServiceUnavailable = "service_unavailable",
        ServerBusy = "server_busy",
        InternalError = "internal_error",
    }
}

impl ErrorCode {
    /// Whether Flow (or a system behind it) failed, rather than the request: worth
    /// another try later.
    pub const fn is_server_side(self) -> bool {
        matches!(
            self,
            ErrorCode::InternalError
                | ErrorCode::ServiceUnavailable
                | ErrorCode::ServerBusy
                | ErrorCode::SpeechProviderFailed
                | ErrorCode::LlmNotConfigured
        )
    }
}

/// An error answered to a client: a stable machine-readable code and a message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// When to try again (429, 503).
    pub retry_after_secs: Option<u64>,
}

/// The result type of services.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with any code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The same error, telling the client when to try again.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// Well-formed input whose content breaks a rule.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
    }

    /// A row that is missing or belongs to another tenant (indistinguishable).
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// The caller lacks a right.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    /// An internal failure without details: the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::InternalError, "internal server error")
    }

    /// Turns a store error about `what` into the answer a client should see.
    pub fn from_store(what: &str, error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::not_found(what),
            other => other.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The one place where constraint violations become conflict and validation answers.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::not_found("resource"),
            StoreError::Constraint(Constraint::ContactEmailUnique) => Self::new(
                ErrorCode::ContactEmailExists,
                "a contact with this email already exists",
            ),
            StoreError::Constraint(Constraint::TenantSlugUnique) => Self::new(
                ErrorCode::TenantExists,
                "a tenant with this slug already exists",
            ),
            StoreError::Constraint(Constraint::UserEmailUnique) => Self::new(
                ErrorCode::UserExists,
                "an account with this email already exists",
            ),
            StoreError::Constraint(Constraint::ApiKeyUnique) => {
                Self::new(ErrorCode::ApiKeyExists, "this API key already exists")
            }
            StoreError::Constraint(Constraint::ForeignKey) => Self::new(
                ErrorCode::InvalidReference,
                "a referenced record does not exist",
            ),
            StoreError::Constraint(Constraint::Other(name)) => Self::new(
                ErrorCode::Conflict,
                format!("conflicts with an existing record ({name})"),
            ),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::new(
                    ErrorCode::ServiceUnavailable,
                    "the database is unavailable, try again shortly",
                )
            }
            StoreError::Internal(cause) => Self::internal(cause),
        }
    }
}

impl From<flow_outbound::speech::SpeechError> for ApiError {
    fn from(error: flow_outbound::speech::SpeechError) -> Self {
        use flow_outbound::speech::SpeechError;
        match error {
            SpeechError::Unsupported(message) => Self::new(ErrorCode::SpeechUnsupported, message),
            SpeechError::NothingRecognised => Self::new(
                ErrorCode::SpeechNotRecognised,
                "no command was recognised in the audio; try again or send the text",
            ),
            SpeechError::Provider(message) => {
                tracing::warn!(%message, "speech provider failed");
                Self::new(
                    ErrorCode::SpeechProviderFailed,
                    "the speech provider failed; send the text instead",
                )
            }
        }
    }
}

impl From<flow_outbound::speech::AudioError> for ApiError {
    fn from(error: flow_outbound::speech::AudioError) -> Self {
        use flow_outbound::speech::AudioError;
        let code = match error {
            AudioError::Invalid(_) => ErrorCode::ValidationFailed,
            AudioError::TooLong { .. } => ErrorCode::AudioTooLong,
            AudioError::UnsupportedType => ErrorCode::UnsupportedMediaType,
        };
        Self::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list under "## Error codes" in the architecture document.
    fn documented_codes() -> Vec<String> {
        let doc = include_str!("../../../docs/ARCHITECTURE.md");
        let section = doc
            .split("## Error codes")
            .nth(1)
            .expect("ARCHITECTURE.md has an Error codes section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_documented_error_codes_are_exactly_the_enum() {
        let mut documented = documented_codes();
        documented.sort();
        let mut codes: Vec<String> = ErrorCode::ALL.iter().map(|c| c.to_string()).collect();
        codes.sort();
        assert_eq!(documented, codes);
    }

    #[test]
    fn store_failures_keep_their_meaning() {
        assert_eq!(
            ApiError::from(StoreError::Constraint(Constraint::ContactEmailUnique)).code,
            ErrorCode::ContactEmailExists
        );
        assert_eq!(
            ApiError::from_store("lead", StoreError::NotFound).message,
            "lead not found"
        );
        assert!(ApiError::from(StoreError::Unavailable("down".into()))
            .code
            .is_server_side());
    }
}
