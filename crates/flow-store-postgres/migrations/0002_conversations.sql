-- Voice agent conversations; the transcript is a JSON array of turns.
CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    title       text,
    language    text,
    transcript  jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX conversations_tenant_id ON conversations (tenant_id, id);

ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON conversations FOR ALL
    USING (tenant_id = flow_current_tenant())
    WITH CHECK (tenant_id = flow_current_tenant());
CREATE POLICY flow_platform ON conversations FOR ALL TO CURRENT_USER
    USING (current_setting('app.platform', true) = 'on')
    WITH CHECK (current_setting('app.platform', true) = 'on');
