-- Invitations to join a tenant; the person invited accepts with the token (its hash is
-- kept), and only then becomes a member.
CREATE TABLE invitations (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    invited_by   TEXT NOT NULL,
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    accepted_at  INTEGER
);
CREATE INDEX invitations_tenant_email ON invitations (tenant_id, email);
