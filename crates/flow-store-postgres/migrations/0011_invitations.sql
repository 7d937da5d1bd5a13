-- Invitations to join a tenant; the person invited accepts with the token (its hash is
-- kept), and only then becomes a member.
CREATE TABLE invitations (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    email        text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    invited_by   text NOT NULL,
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz
);
CREATE INDEX invitations_tenant_email ON invitations (tenant_id, email);

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations FOR ALL
    USING (tenant_id = flow_current_tenant())
    WITH CHECK (tenant_id = flow_current_tenant());
CREATE POLICY flow_platform ON invitations FOR ALL TO CURRENT_USER
    USING (current_setting('app.platform', true) = 'on')
    WITH CHECK (current_setting('app.platform', true) = 'on');

-- The person accepting is not in a tenant yet: the token finds its invitation.
CREATE FUNCTION flow_find_invitation(p_hash bytea) RETURNS SETOF invitations
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM flow_check(length(p_hash) = 32, 'an invitation token hash is 32 bytes');
        PERFORM set_config('app.platform', 'on', true);
        RETURN QUERY SELECT * FROM invitations
            WHERE token_hash = p_hash AND accepted_at IS NULL AND expires_at > now();
        PERFORM set_config('app.platform', '', true);
    END
    $$;
REVOKE EXECUTE ON FUNCTION flow_find_invitation(bytea) FROM PUBLIC;
