-- Durable job queues. A job is ready (due from run_at), running (leased until
-- lease_until), completed or dead (the dead-letter queue).

CREATE TABLE jobs (
    id               BLOB PRIMARY KEY,
    tenant_id        BLOB NOT NULL REFERENCES tenants (id),
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    queue_priority   INTEGER NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    lease_until      INTEGER,
    idempotency_key  TEXT,
    errors           TEXT NOT NULL DEFAULT '[]',
    progress         TEXT,
    result           TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Due work in the order workers take it.
CREATE INDEX jobs_ready ON jobs (queue_priority DESC, priority DESC, run_at, id)
    WHERE state = 'ready';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_tenant_queue ON jobs (tenant_id, queue, state, id);

-- Lead imports look leads up by email to skip rows already imported.
CREATE INDEX leads_tenant_email ON leads (tenant_id, email) WHERE email IS NOT NULL;

-- Security incidents reported by the Secure Platform.
CREATE TABLE incidents (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    type         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    description  TEXT NOT NULL,
    status       TEXT NOT NULL,
    reported_by  TEXT NOT NULL,
    resolution   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    resolved_at  INTEGER
);
CREATE INDEX incidents_tenant_status ON incidents (tenant_id, status, id);

-- Per-tenant daily rollups from the analytics queue; the numbers as JSON.
CREATE TABLE daily_rollups (
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    day        TEXT NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, day)
) WITHOUT ROWID;
CREATE INDEX activities_tenant_created ON activities (tenant_id, created_at);
CREATE INDEX leads_tenant_created ON leads (tenant_id, created_at);
