-- People who sign in. Users and their refresh tokens are platform data, like the tenants
-- registry (one account can belong to several tenants; a token is found by its hash
-- before any tenant is known); what a user may do in a tenant is a membership row,
-- which is tenant data under RLS.
CREATE TABLE users (
    id             uuid PRIMARY KEY,
    email          text NOT NULL UNIQUE,
    name           text NOT NULL,
    password_hash  text NOT NULL,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL
);

CREATE TABLE memberships (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    user_id     uuid NOT NULL REFERENCES users (id),
    role        text NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships FOR ALL
    USING (tenant_id = flow_current_tenant())
    WITH CHECK (tenant_id = flow_current_tenant());
CREATE POLICY flow_platform ON memberships FOR ALL TO CURRENT_USER
    USING (current_setting('app.platform', true) = 'on')
    WITH CHECK (current_setting('app.platform', true) = 'on');

CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Sign-in needs the user's tenants before a tenant is chosen: the one door for that.
CREATE FUNCTION flow_user_memberships(p_user uuid)
    RETURNS TABLE (id uuid, name text, slug text, active boolean, created_at timestamptz, role text)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        RETURN QUERY SELECT t.id, t.name, t.slug, t.active, t.created_at, m.role
            FROM memberships m JOIN tenants t ON t.id = m.tenant_id
            WHERE m.user_id = p_user ORDER BY m.created_at, t.id;
        PERFORM set_config('app.platform', '', true);
    END
    $$;
