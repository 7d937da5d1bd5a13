//! Users: their sessions (sign-in, refresh-token rotation, profiles, the spec's cross-app
//! tokens), their passwords, and the members a tenant's admins manage.

mod members;
mod passwords;
mod sessions;

pub use members::*;
pub use passwords::hash_password;
use passwords::verify_password;
pub use sessions::*;

use std::{
    net::IpAddr,
    sync::{Arc, OnceLock},
};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use chrono::Duration;
use flow_store::{
    ActorKind, ApiKeyId, AuditAction, Invitation, InvitationId, Member, Membership, NewInvitation,
    NewRefreshToken, NewUser, RefreshToken, RefreshTokenUse, Role, Severity, Store, StoreError,
    Tenant, TenantId, User, UserId,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{now, security, snapshot, Record, Work};
use crate::{
    auth::{self, role_permissions, Caller, Permissions},
    error::{ApiError, ApiResult, ErrorCode},
    jwt::{self, Claims, Subject},
    login_guard::LoginGuard,
    validate,
};
