use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::DailyRollup;
use crate::{
    Activity, ActivityFilter, ApiKey, ApiKeyId, ApiKeyWithTenant, AuditEntry, AuditFilter,
    ClaimRequest, Contact, ContactFilter, ContactId, Conversation, ConversationId, Deal,
    DealFilter, DealId, Incident, IncidentId, Invitation, InvitationId, Job, JobId, JobState, Lead,
    LeadFilter, LeadId, LoggedEvent, Member, Membership, NewApiKey, NewAuditEntry, NewEvent,
    NewInvitation, NewJob, NewRefreshToken, NewUser, QueueCounts, RefreshToken, RefreshTokenUse,
    Role, Settlement, StoreError, StoreResult, Tenant, TenantId, User, UserCredentials, UserId,
};

/// A database that holds every tenant's data: the one thing a backend implements.
///
/// Platform-level operations (tenants, key lookup) live here; everything a tenant owns
/// is reached through [`Store::read`] or [`Store::begin`], which bind one tenant.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and health output.
    fn backend(&self) -> &'static str;

    /// Whether all tenants' writes take turns on one writer (the embedded backend), so
    /// that bulk work must leave it free part of the time for everyone else's.
    fn writes_share_one_writer(&self) -> bool {
        false
    }

    /// Brings the schema up to date.
    async fn migrate(&self) -> StoreResult<()>;

    /// A cheap round trip that proves the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates a tenant. Fails with a constraint error if the slug is taken.
    async fn create_tenant(&self, name: &str, slug: &str) -> StoreResult<Tenant>;

    /// A tenant by id.
    async fn get_tenant(&self, id: TenantId) -> StoreResult<Tenant>;

    /// A tenant by slug.
    async fn find_tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>>;

    /// Suspends or resumes a tenant: keys of an inactive tenant are refused.
    async fn set_tenant_active(&self, id: TenantId, active: bool) -> StoreResult<()>;

    /// All tenants, oldest first.
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;

    /// The key whose secret hashes to `key_hash`, with its tenant's state.
    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyWithTenant>>;

    /// A key by id, with its tenant's state (for tokens that name their key).
    async fn find_api_key_by_id(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyWithTenant>>;

    /// Records that a key was used; callers throttle this.
    async fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()>;

    /// Creates a user; `Constraint::UserEmailUnique` if the (lowercased) email is taken.
    async fn create_user(&self, user: &NewUser) -> StoreResult<User>;

    /// The user with this (lowercased) email and the password hash, for signing in.
    async fn find_user_credentials(&self, email: &str) -> StoreResult<Option<UserCredentials>>;

    /// A user by id.
    async fn get_user(&self, id: UserId) -> StoreResult<User>;

    /// Every tenant the user belongs to, with the role there, oldest membership first.
    async fn user_memberships(&self, id: UserId) -> StoreResult<Vec<Membership>>;

    /// Stores a refresh token (its hash).
    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> StoreResult<()>;

    /// The unspent, unexpired, unrevoked refresh token with this hash, without spending it.
    async fn find_refresh_token(
        &self,
        token_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>>;

    /// Spends the refresh token with this hash, atomically: of two concurrent uses of one
    /// token exactly one is `Fresh`.
    async fn use_refresh_token(
        &self,
        token_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshTokenUse>;

    /// Deletes refresh tokens that expired before `now` (spent ones are kept until then,
    /// so their reuse is still recognised).
    async fn prune_refresh_tokens(&self, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Revokes every token of a sign-in (logout, or reuse of a spent token).
    async fn revoke_refresh_family(
        &self,
        family_id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Opens a read-only view of one tenant's data.
    async fn read(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantRead>>;

    /// Opens a write transaction on one tenant's data. Dropping it without
    /// [`TenantTx::commit`] rolls everything back.
    async fn begin(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantTx>>;

    /// Deletes events older than `older_than` from every tenant's log (retention).
    async fn prune_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64>;

    /// Wake-ups sent after every commit that appended events. A missed notice loses
    /// nothing: the event log stays the source, notices only say where to look.
    fn commit_notices(&self) -> broadcast::Receiver<CommitNotice>;

    /// Wake-ups for workers when jobs were enqueued elsewhere (by another process on a
    /// shared database). `None` where only this process writes jobs.
    fn work_notices(&self) -> Option<broadcast::Receiver<()>> {
        None
    }

    /// Takes up to `limit` due jobs of the given queues for a worker: ready jobs whose time
    /// has come and running jobs whose lease expired, highest queue priority first, then
    /// job priority, then age. Each one's `attempts` goes up by one; two workers never get
    /// the same job while its lease holds.
    async fn claim_jobs(&self, request: &ClaimRequest) -> StoreResult<Vec<Job>>;

    /// Ends the attempt number `attempt` of a job. `NotFound` if the job is no longer in
    /// that attempt (its lease ran out and another worker took it).
    async fn settle_job(
        &self,
        id: JobId,
        attempt: u32,
        settlement: &Settlement,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Settles several attempts at once; for each, whether it still held its job (the
    /// same fencing as [`Store::settle_job`]). Backends that pay a round trip per
    /// statement settle them in one.
    async fn settle_jobs(&self, settlements: &[JobSettlement]) -> StoreResult<Vec<bool>> {
        let mut settled = Vec::with_capacity(settlements.len());
        for s in settlements {
            settled.push(
                match self.settle_job(s.id, s.attempt, &s.settlement, s.now).await {
                    Ok(()) => true,
                    Err(StoreError::NotFound) => false,
                    Err(other) => return Err(other),
                },
            );
        }
        Ok(settled)
    }

    /// Extends the lease of attempt `attempt` of a running job (its worker is still at it).
    /// `NotFound` if the attempt lost the job.
    async fn extend_lease(&self, id: JobId, attempt: u32, until: DateTime<Utc>) -> StoreResult<()>;

    /// Jobs waiting (ready, due or not) per queue, across tenants: for the queue gauge.
    async fn queue_depths(&self) -> StoreResult<Vec<(String, u64)>>;

    /// Deletes completed jobs that finished before `finished_before` (retention).
    async fn prune_jobs(&self, finished_before: DateTime<Utc>) -> StoreResult<u64>;

    /// Whether the sign-in `family` still has an unrevoked refresh token: access tokens
    /// of a signed-out session stop working.
    async fn session_active(&self, family_id: uuid::Uuid) -> StoreResult<bool>;

    /// The pending, unexpired invitation whose token hashes to `token_hash`, of any
    /// tenant (the person accepting it is not signed in to a tenant yet).
    async fn find_invitation(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Invitation>>;

    /// Why this connection is not held to tenant isolation, if it is not: a PostgreSQL
    /// superuser, a role with BYPASSRLS, or the tables' owner (who may switch the platform
    /// policy on). `None` for the embedded backend, where isolation is the application's.
    async fn privileged_role(&self) -> StoreResult<Option<String>> {
        Ok(None)
    }

    /// Closes connections; called once on shutdown.
    async fn close(&self);
}

/// Reads within one tenant. Every method is implicitly filtered by that tenant.
#[async_trait]
pub trait TenantRead: Send {
    /// The tenant this view is bound to.
    fn tenant_id(&self) -> TenantId;

    async fn get_lead(&mut self, id: LeadId) -> StoreResult<Lead>;
    async fn list_leads(&mut self, filter: &LeadFilter) -> StoreResult<Vec<Lead>>;

    async fn get_contact(&mut self, id: ContactId) -> StoreResult<Contact>;
    async fn find_contact_by_email(&mut self, email: &str) -> StoreResult<Option<Contact>>;
    async fn list_contacts(&mut self, filter: &ContactFilter) -> StoreResult<Vec<Contact>>;

    async fn list_activities(&mut self, filter: &ActivityFilter) -> StoreResult<Vec<Activity>>;

    async fn get_deal(&mut self, id: DealId) -> StoreResult<Deal>;
    async fn list_deals(&mut self, filter: &DealFilter) -> StoreResult<Vec<Deal>>;

    async fn list_api_keys(&mut self) -> StoreResult<Vec<ApiKey>>;

    /// The tenant's members, in the order they joined.
    async fn list_members(&mut self) -> StoreResult<Vec<Member>>;
    /// One member; `NotFound` when the user does not belong to this tenant.
    async fn get_member(&mut self, user: UserId) -> StoreResult<Member>;

    async fn list_audit(&mut self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;

    /// Events after `since`, in order, at most `limit`.
    async fn list_events(&mut self, since: i64, limit: u32) -> StoreResult<Vec<LoggedEvent>>;
    /// The sequence number of the tenant's latest event (0 when none).
    async fn last_event_seq(&mut self) -> StoreResult<i64>;
    /// The oldest sequence number still in the log, if any (older ones were pruned).
    async fn oldest_event_seq(&mut self) -> StoreResult<Option<i64>>;

    async fn get_incident(&mut self, id: IncidentId) -> StoreResult<Incident>;
    /// Incidents newest first, optionally only open or resolved ones.
    async fn list_incidents(
        &mut self,
        status: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Incident>>;

    /// Counts the tenant's activity between two instants (a UTC day), for the rollup.
    async fn compute_rollup(
        &mut self,
        day: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<DailyRollup>;
    /// Stored rollups for days in `[from, to]` (`YYYY-MM-DD`), oldest first.
    async fn list_rollups(&mut self, from: &str, to: &str) -> StoreResult<Vec<DailyRollup>>;

    async fn get_conversation(&mut self, id: ConversationId) -> StoreResult<Conversation>;
    /// Conversations newest first, keyset paged by id.
    async fn list_conversations(
        &mut self,
        before: Option<ConversationId>,
        limit: u32,
    ) -> StoreResult<Vec<Conversation>>;

    async fn get_job(&mut self, id: JobId) -> StoreResult<Job>;
    /// Jobs of one queue (newest first), optionally in one state.
    async fn list_jobs(
        &mut self,
        queue: &str,
        state: Option<JobState>,
        limit: u32,
    ) -> StoreResult<Vec<Job>>;
    /// Per-queue counts of this tenant's jobs at `now`.
    async fn queue_counts(&mut self, now: DateTime<Utc>) -> StoreResult<Vec<QueueCounts>>;
}

/// A write transaction within one tenant.
///
/// `lock_*` reads a row for a read-modify-write: the row stays locked until the end of
/// the transaction where the backend has row locks. Writes take whole rows that the
/// service layer built; `update_*` fails with `NotFound` if the row is gone.
#[async_trait]
pub trait TenantTx: TenantRead {
    async fn lock_lead(&mut self, id: LeadId) -> StoreResult<Lead>;
    async fn insert_lead(&mut self, lead: &Lead) -> StoreResult<()>;
    async fn update_lead(&mut self, lead: &Lead) -> StoreResult<()>;
    async fn delete_lead(&mut self, id: LeadId) -> StoreResult<()>;
    /// Points every lead of `from` at `to`; returns how many moved.
    async fn move_leads(&mut self, from: ContactId, to: ContactId) -> StoreResult<u64>;

    async fn lock_contact(&mut self, id: ContactId) -> StoreResult<Contact>;
    async fn insert_contact(&mut self, contact: &Contact) -> StoreResult<()>;
    async fn update_contact(&mut self, contact: &Contact) -> StoreResult<()>;
    async fn delete_contact(&mut self, id: ContactId) -> StoreResult<()>;

    async fn insert_activity(&mut self, activity: &Activity) -> StoreResult<()>;
    /// Re-targets every activity about one entity to another; returns how many moved.
    async fn move_activities(&mut self, from: uuid::Uuid, to: uuid::Uuid) -> StoreResult<u64>;

    async fn lock_deal(&mut self, id: DealId) -> StoreResult<Deal>;
    async fn insert_deal(&mut self, deal: &Deal) -> StoreResult<()>;
    async fn update_deal(&mut self, deal: &Deal) -> StoreResult<()>;
    /// Points every deal of `from` at `to`; returns how many moved.
    async fn move_deals(&mut self, from: ContactId, to: ContactId) -> StoreResult<u64>;

    async fn insert_api_key(&mut self, key: &NewApiKey) -> StoreResult<ApiKey>;
    /// Marks a key inactive; `NotFound` if the tenant has no such key.
    async fn revoke_api_key(&mut self, id: ApiKeyId) -> StoreResult<()>;

    /// Adds the user to this tenant with `role`, or changes the role of a member.
    async fn upsert_member(&mut self, user: UserId, role: Role) -> StoreResult<()>;
    /// Removes the user from this tenant; `NotFound` if not a member.
    async fn delete_member(&mut self, user: UserId) -> StoreResult<()>;
    /// Stores an invitation, replacing a pending one for the same email.
    async fn replace_invitation(&mut self, invitation: &NewInvitation) -> StoreResult<()>;
    /// Marks a pending invitation accepted; `NotFound` if it is not pending any more.
    async fn accept_invitation(&mut self, id: InvitationId) -> StoreResult<()>;
    /// Locks the tenant's memberships until commit, so a check across them (the last
    /// admin) cannot race another change. A backend whose writers are serialised anyway
    /// needs nothing.
    async fn lock_members(&mut self) -> StoreResult<()> {
        Ok(())
    }

    async fn insert_audit(&mut self, entry: &NewAuditEntry) -> StoreResult<()>;

    /// Stores (or replaces) a day's rollup.
    async fn save_rollup(&mut self, rollup: &DailyRollup) -> StoreResult<()>;

    async fn lock_conversation(&mut self, id: ConversationId) -> StoreResult<Conversation>;
    async fn insert_conversation(&mut self, conversation: &Conversation) -> StoreResult<()>;
    /// Replaces title, language, transcript and `updated_at`.
    async fn update_conversation(&mut self, conversation: &Conversation) -> StoreResult<()>;

    async fn insert_incident(&mut self, incident: &Incident) -> StoreResult<()>;
    async fn update_incident(&mut self, incident: &Incident) -> StoreResult<()>;

    /// Enqueues a job, or returns the job enqueued earlier with the same idempotency key
    /// (then `false`).
    async fn enqueue_job(&mut self, job: &NewJob) -> StoreResult<(Job, bool)>;
    /// Enqueues several jobs, answering in their order as [`TenantTx::enqueue_job`] does;
    /// a backend may write them in one statement.
    async fn enqueue_jobs(&mut self, jobs: &[NewJob]) -> StoreResult<Vec<(Job, bool)>> {
        let mut enqueued = Vec::with_capacity(jobs.len());
        for job in jobs {
            enqueued.push(self.enqueue_job(job).await?);
        }
        Ok(enqueued)
    }
    /// Records progress of a job's running `attempt`. `NotFound` when the job is no
    /// longer running that attempt (its lease ran out and another worker took it): the
    /// caller then rolls back, so a superseded attempt commits nothing.
    async fn set_job_progress(
        &mut self,
        id: JobId,
        attempt: u32,
        progress: &serde_json::Value,
    ) -> StoreResult<()>;
    /// Moves a dead job back to ready, due at `run_at`, with a fresh set of attempts.
    async fn requeue_job(&mut self, id: JobId, run_at: DateTime<Utc>) -> StoreResult<Job>;
    /// Deletes a dead job.
    async fn delete_dead_job(&mut self, id: JobId) -> StoreResult<()>;

    /// Appends to the tenant's event log, taking the next sequence number.
    async fn append_event(&mut self, event: &NewEvent) -> StoreResult<LoggedEvent>;

    /// Appends several events in order. Callers append just before committing: where the
    /// sequence counter is a row lock (PostgreSQL), it is held from here to the commit.
    async fn append_events(&mut self, events: &[NewEvent]) -> StoreResult<Vec<LoggedEvent>> {
        let mut logged = Vec::with_capacity(events.len());
        for event in events {
            logged.push(self.append_event(event).await?);
        }
        Ok(logged)
    }

    /// Makes every write of this transaction durable and visible.
    async fn commit(self: Box<Self>) -> StoreResult<()>;

    /// Another transaction is waiting for this one to end, because all writes share one
    /// writer (the embedded backend): bulk work should commit what it has and let it in.
    fn writer_wanted(&self) -> bool {
        false
    }
}

/// One attempt's outcome, for [`Store::settle_jobs`].
#[derive(Clone, Debug)]
pub struct JobSettlement {
    pub id: JobId,
    pub attempt: u32,
    pub settlement: Settlement,
    pub now: DateTime<Utc>,
}

/// Says that a tenant's log grew, carrying the events this commit appended.
///
/// The events may be missing (a commit made by another process): readers then take
/// them from the log.
#[derive(Clone, Debug)]
pub struct CommitNotice {
    pub tenant_id: TenantId,
    pub events: Arc<Vec<LoggedEvent>>,
}

impl CommitNotice {
    /// A notice about every tenant: notices may have been missed, so re-read all logs.
    pub fn all_tenants() -> Self {
        Self {
            tenant_id: TenantId(uuid::Uuid::nil()),
            events: Arc::new(Vec::new()),
        }
    }

    /// Whether this is [`CommitNotice::all_tenants`].
    pub fn is_for_all_tenants(&self) -> bool {
        self.tenant_id.0.is_nil()
    }
}
