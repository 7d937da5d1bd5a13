-- Instances keep verified API keys in memory (the key lookup was the most expensive
-- statement of a read request). Any change that could refuse a key tells every instance
-- to forget what it holds; last_used_at updates do not.
CREATE FUNCTION flow_keys_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        PERFORM pg_notify('flow_keys', '');
        RETURN NULL;
    END
    $$;

CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN (OLD.active IS DISTINCT FROM NEW.active
          OR OLD.permissions IS DISTINCT FROM NEW.permissions
          OR OLD.allowed_apps IS DISTINCT FROM NEW.allowed_apps
          OR OLD.rate_limit_per_minute IS DISTINCT FROM NEW.rate_limit_per_minute
          OR OLD.key_hash IS DISTINCT FROM NEW.key_hash
          OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION flow_keys_changed();
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys FOR EACH STATEMENT
    EXECUTE FUNCTION flow_keys_changed();
CREATE TRIGGER tenants_changed AFTER UPDATE OR DELETE ON tenants FOR EACH STATEMENT
    EXECUTE FUNCTION flow_keys_changed();
