-- Flow's schema on PostgreSQL: the same tables as the embedded backend, in native types.
-- Every table holding a tenant's data has row-level security, forced on the owner too:
-- a query sees and writes only rows of the tenant its transaction set with
-- `SELECT set_config('app.tenant_id', ..., true)`; with none set it sees nothing.

CREATE FUNCTION flow_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    -- NULLIF: unset or reset after a SET LOCAL transaction reads as '' and must match no
    -- row rather than fail the cast.
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

-- The tenant registry is platform data (name, slug, state), not a tenant's data: no RLS.
CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    slug        text NOT NULL UNIQUE,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL
);

-- The last sequence number handed out in each tenant's event log. Its row lock orders
-- event-writing transactions, so sequence order is commit order.
CREATE TABLE event_counters (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id),
    seq        bigint NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id),
    name                   text NOT NULL,
    prefix                 text NOT NULL,
    key_hash               bytea NOT NULL,
    permissions            text[] NOT NULL,
    allowed_apps           text[] NOT NULL,
    rate_limit_per_minute  integer NOT NULL,
    active                 boolean NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL,
    last_used_at           timestamptz,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE contacts (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    first_name  text,
    last_name   text,
    email       text,
    phone       text,
    company     text,
    source      text,
    consent     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    -- Lets child tables reference (tenant_id, id) so a row can never point across tenants.
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX contacts_tenant_email ON contacts (tenant_id, email) WHERE email IS NOT NULL;

CREATE TABLE leads (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    contact_id   uuid,
    first_name   text NOT NULL,
    last_name    text,
    email        text,
    phone        text,
    company      text,
    source       text NOT NULL,
    status       text NOT NULL,
    notes        text,
    assigned_to  text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
CREATE INDEX leads_tenant_status ON leads (tenant_id, status, id);
CREATE INDEX leads_tenant_id ON leads (tenant_id, id);
CREATE INDEX leads_tenant_contact ON leads (tenant_id, contact_id);
CREATE INDEX leads_tenant_email ON leads (tenant_id, email) WHERE email IS NOT NULL;
CREATE INDEX leads_tenant_created ON leads (tenant_id, created_at);

CREATE TABLE activities (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    type         text NOT NULL,
    entity_type  text NOT NULL,
    entity_id    uuid NOT NULL,
    description  text,
    data         jsonb NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX activities_tenant_id ON activities (tenant_id, id);
CREATE INDEX activities_tenant_entity ON activities (tenant_id, entity_id, id);
CREATE INDEX activities_tenant_created ON activities (tenant_id, created_at);

CREATE TABLE deals (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    title       text NOT NULL,
    amount      bigint NOT NULL,
    currency    text NOT NULL,
    stage       text,
    status      text NOT NULL,
    contact_id  uuid,
    lead_id     uuid,
    closed_at   timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
CREATE INDEX deals_tenant_status ON deals (tenant_id, status, id);
CREATE INDEX deals_tenant_id ON deals (tenant_id, id);

CREATE TABLE audit_log (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    actor_type   text NOT NULL,
    actor_id     text NOT NULL,
    source_app   text NOT NULL,
    action       text NOT NULL,
    entity_type  text NOT NULL,
    entity_id    text NOT NULL,
    before       jsonb,
    after        jsonb,
    request_id   text,
    created_at   timestamptz NOT NULL
);
CREATE INDEX audit_log_tenant_id ON audit_log (tenant_id, id);
CREATE INDEX audit_log_tenant_entity ON audit_log (tenant_id, entity_id, id);
CREATE INDEX audit_log_tenant_created ON audit_log (tenant_id, created_at);

CREATE TABLE events (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    seq         bigint NOT NULL,
    id          uuid NOT NULL,
    type        text NOT NULL,
    source      text NOT NULL,
    target      text[] NOT NULL,
    data        jsonb NOT NULL,
    priority    text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX events_created ON events (created_at);

CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    queue            text NOT NULL,
    kind             text NOT NULL,
    payload          jsonb NOT NULL,
    priority         integer NOT NULL,
    queue_priority   integer NOT NULL,
    state            text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    run_at           timestamptz NOT NULL,
    lease_until      timestamptz,
    idempotency_key  text,
    errors           jsonb NOT NULL DEFAULT '[]',
    progress         jsonb,
    result           jsonb,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    finished_at      timestamptz
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_ready ON jobs (queue_priority DESC, priority DESC, run_at, id)
    WHERE state = 'ready';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_tenant_queue ON jobs (tenant_id, queue, state, id);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'completed';

CREATE TABLE incidents (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    type         text NOT NULL,
    severity     text NOT NULL,
    description  text NOT NULL,
    status       text NOT NULL,
    reported_by  text NOT NULL,
    resolution   text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    resolved_at  timestamptz
);
CREATE INDEX incidents_tenant_status ON incidents (tenant_id, status, id);
CREATE INDEX incidents_tenant_id ON incidents (tenant_id, id);

CREATE TABLE daily_rollups (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    day        text NOT NULL,
    data       jsonb NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

-- Row-level security on every tenant table. `flow_platform` lets the platform functions
-- below (owned by the migrating role, SECURITY DEFINER, each switching app.platform on
-- only while it runs) reach across tenants; the role Flow serves with is never that owner,
-- so for it the switch opens nothing.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['event_counters', 'api_keys', 'contacts', 'leads', 'activities',
                             'deals', 'audit_log', 'events', 'jobs', 'incidents', 'daily_rollups']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I FOR ALL
                 USING (tenant_id = flow_current_tenant())
                 WITH CHECK (tenant_id = flow_current_tenant())', t);
        EXECUTE format(
            'CREATE POLICY flow_platform ON %I FOR ALL TO CURRENT_USER
                 USING (current_setting(''app.platform'', true) = ''on'')
                 WITH CHECK (current_setting(''app.platform'', true) = ''on'')', t);
    END LOOP;
END
$$;

-- Platform operations that span tenants: key lookup before a tenant is known, the job
-- queue, retention. The only doors around RLS, each doing one narrow thing. Each turns
-- app.platform on for its own statement and off again before returning.

CREATE FUNCTION flow_find_api_key(p_hash bytea, p_id uuid) RETURNS SETOF api_keys
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        RETURN QUERY SELECT * FROM api_keys WHERE key_hash = p_hash OR id = p_id;
        PERFORM set_config('app.platform', '', true);
    END
    $$;

CREATE FUNCTION flow_touch_api_key(p_id uuid, p_at timestamptz) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        UPDATE api_keys SET last_used_at = p_at WHERE id = p_id;
        PERFORM set_config('app.platform', '', true);
    END
    $$;

-- Seeds a new tenant's event counter (the tenant row itself is written by the caller).
CREATE FUNCTION flow_init_tenant(p_tenant uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        INSERT INTO event_counters (tenant_id, seq) VALUES (p_tenant, 0);
        PERFORM set_config('app.platform', '', true);
    END
    $$;

-- Takes due jobs: expired leases first, then ready jobs in priority order. SKIP LOCKED
-- lets concurrent workers on any instance take disjoint jobs without waiting.
CREATE FUNCTION flow_claim_jobs(p_queues text[], p_limit integer, p_now timestamptz,
                                p_lease_until timestamptz) RETURNS SETOF jobs
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        RETURN QUERY
        WITH expired AS (
            SELECT id FROM jobs
            WHERE state = 'running' AND lease_until < p_now AND queue = ANY (p_queues)
            ORDER BY lease_until LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), due AS (
            SELECT id FROM jobs
            WHERE state = 'ready' AND run_at <= p_now AND queue = ANY (p_queues)
            ORDER BY queue_priority DESC, priority DESC, run_at, id LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), picked AS (
            SELECT p.id FROM (SELECT e.id, 0 AS rank FROM expired e
                              UNION ALL SELECT d.id, 1 FROM due d) p
            ORDER BY p.rank LIMIT p_limit
        )
        UPDATE jobs j SET state = 'running', attempts = j.attempts + 1,
                          lease_until = p_lease_until, updated_at = p_now
        WHERE j.id IN (SELECT picked.id FROM picked)
        RETURNING j.*;
        PERFORM set_config('app.platform', '', true);
    END
    $$;

-- Ends one attempt of a job; returns false when that attempt no longer holds the job.
CREATE FUNCTION flow_settle_job(p_id uuid, p_attempt integer, p_state text, p_result jsonb,
                                p_run_at timestamptz, p_error jsonb, p_now timestamptz)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        found_job boolean;
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        UPDATE jobs SET state = p_state,
            result = COALESCE(p_result, result),
            run_at = COALESCE(p_run_at, run_at),
            errors = CASE WHEN p_error IS NULL THEN errors ELSE errors || jsonb_build_array(p_error) END,
            lease_until = NULL,
            finished_at = CASE WHEN p_state = 'ready' THEN NULL ELSE p_now END,
            updated_at = p_now
        WHERE id = p_id AND state = 'running' AND attempts = p_attempt;
        found_job := FOUND;
        PERFORM set_config('app.platform', '', true);
        RETURN found_job;
    END
    $$;

CREATE FUNCTION flow_extend_lease(p_id uuid, p_attempt integer, p_until timestamptz)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        found_job boolean;
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        UPDATE jobs SET lease_until = p_until
        WHERE id = p_id AND state = 'running' AND attempts = p_attempt;
        found_job := FOUND;
        PERFORM set_config('app.platform', '', true);
        RETURN found_job;
    END
    $$;

CREATE FUNCTION flow_queue_depths() RETURNS TABLE (queue text, depth bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        RETURN QUERY SELECT j.queue, COUNT(*) FROM jobs j WHERE j.state = 'ready' GROUP BY j.queue;
        PERFORM set_config('app.platform', '', true);
    END
    $$;

CREATE FUNCTION flow_prune_events(p_before timestamptz) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        gone bigint;
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        DELETE FROM events WHERE created_at < p_before;
        GET DIAGNOSTICS gone = ROW_COUNT;
        PERFORM set_config('app.platform', '', true);
        RETURN gone;
    END
    $$;

CREATE FUNCTION flow_prune_jobs(p_before timestamptz) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        gone bigint;
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        DELETE FROM jobs WHERE state = 'completed' AND finished_at < p_before;
        GET DIAGNOSTICS gone = ROW_COUNT;
        PERFORM set_config('app.platform', '', true);
        RETURN gone;
    END
    $$;

-- Only Flow's own platform functions are withheld from PUBLIC (migrate grants them to the
-- serving role); functions that extensions keep in this schema are not ours to change.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'flow\_%'
               AND p.proname <> 'flow_current_tenant'
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
