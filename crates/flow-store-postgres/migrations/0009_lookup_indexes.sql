-- Every filter the API offers is answered from an index that also gives the id order the
-- pages use (see the SQLite migration of the same name for the plan this avoids).
DROP INDEX leads_tenant_email;
CREATE INDEX leads_tenant_email ON leads (tenant_id, email, id) WHERE email IS NOT NULL;
CREATE INDEX leads_tenant_source ON leads (tenant_id, source, id);
CREATE INDEX activities_tenant_type ON activities (tenant_id, type, id);
CREATE INDEX deals_tenant_contact ON deals (tenant_id, contact_id, id) WHERE contact_id IS NOT NULL;

-- A deal's lead is the tenant's own, in SQL as in the API: a deal of tenant A naming a
-- lead of tenant B is refused by the database too. Deleting the lead unlinks it (PostgreSQL
-- 15's column list keeps tenant_id, which must stay set).
-- Rows that break the rule already are unlinked first (RLS is forced on the owner too:
-- app.platform lets this one statement see every tenant).
SELECT set_config('app.platform', 'on', true);
UPDATE deals d SET lead_id = NULL
 WHERE lead_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM leads l WHERE l.tenant_id = d.tenant_id AND l.id = d.lead_id);
SELECT set_config('app.platform', '', true);
ALTER TABLE deals ADD CONSTRAINT deals_lead_fk FOREIGN KEY (tenant_id, lead_id)
    REFERENCES leads (tenant_id, id) ON DELETE SET NULL (lead_id);
CREATE INDEX deals_tenant_lead ON deals (tenant_id, lead_id) WHERE lead_id IS NOT NULL;
