-- PostgreSQL lets PUBLIC execute every new function. 0001 revoked that from the functions
-- it made; later ones (flow_user_memberships, which reads any user's tenants and roles)
-- kept it. Revoke it from all of Flow's functions but flow_current_tenant, which policies
-- call; `flow migrate` grants the serving role what it needs.
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
