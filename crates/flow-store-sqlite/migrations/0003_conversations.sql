-- Voice agent conversations; the transcript is a JSON array of turns.
CREATE TABLE conversations (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    title       TEXT,
    language    TEXT,
    transcript  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX conversations_tenant_id ON conversations (tenant_id, id);
