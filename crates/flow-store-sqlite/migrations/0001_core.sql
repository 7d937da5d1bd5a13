-- Flow core schema on SQLite. Ids are UUIDv7 blobs (byte order = creation order),
-- times are microseconds since the Unix epoch, JSON is stored as text.

CREATE TABLE tenants (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    active      INTEGER NOT NULL DEFAULT 1,
    -- The last sequence number handed out in this tenant's event log.
    event_seq   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id                     BLOB PRIMARY KEY,
    tenant_id              BLOB NOT NULL REFERENCES tenants (id),
    name                   TEXT NOT NULL,
    prefix                 TEXT NOT NULL,
    key_hash               BLOB NOT NULL UNIQUE,
    permissions            TEXT NOT NULL,
    allowed_apps           TEXT NOT NULL,
    rate_limit_per_minute  INTEGER NOT NULL,
    active                 INTEGER NOT NULL DEFAULT 1,
    created_at             INTEGER NOT NULL,
    last_used_at           INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE contacts (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    first_name  TEXT,
    last_name   TEXT,
    email       TEXT,
    phone       TEXT,
    company     TEXT,
    source      TEXT,
    consent     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    -- Lets child tables reference (tenant_id, id) so a row can never point across tenants.
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX contacts_tenant_email ON contacts (tenant_id, email) WHERE email IS NOT NULL;

CREATE TABLE leads (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    contact_id   BLOB,
    first_name   TEXT NOT NULL,
    last_name    TEXT,
    email        TEXT,
    phone        TEXT,
    company      TEXT,
    source       TEXT NOT NULL,
    status       TEXT NOT NULL,
    notes        TEXT,
    assigned_to  TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
CREATE INDEX leads_tenant_status ON leads (tenant_id, status, id);
CREATE INDEX leads_tenant_contact ON leads (tenant_id, contact_id);

CREATE TABLE activities (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    type         TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    BLOB NOT NULL,
    description  TEXT,
    data         TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX activities_tenant_id ON activities (tenant_id, id);
CREATE INDEX activities_tenant_entity ON activities (tenant_id, entity_id, id);

CREATE TABLE deals (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    title       TEXT NOT NULL,
    amount      INTEGER NOT NULL,
    currency    TEXT NOT NULL,
    stage       TEXT,
    status      TEXT NOT NULL,
    contact_id  BLOB,
    lead_id     BLOB,
    closed_at   INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
CREATE INDEX deals_tenant_status ON deals (tenant_id, status, id);

CREATE TABLE audit_log (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    actor_type   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    source_app   TEXT NOT NULL,
    action       TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    before       TEXT,
    after        TEXT,
    request_id   TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX audit_log_tenant_id ON audit_log (tenant_id, id);
CREATE INDEX audit_log_tenant_entity ON audit_log (tenant_id, entity_id, id);

CREATE TABLE events (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    seq         INTEGER NOT NULL,
    id          BLOB NOT NULL,
    type        TEXT NOT NULL,
    source      TEXT NOT NULL,
    target      TEXT NOT NULL,
    data        TEXT NOT NULL,
    priority    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;
