-- Settles many job attempts in one statement: workers of a process share it, so a busy
-- queue pays one round trip and one commit per batch instead of per job.
CREATE FUNCTION flow_settle_jobs(p_ids uuid[], p_attempts integer[], p_states text[],
                                 p_results jsonb[], p_run_ats timestamptz[], p_errors jsonb[],
                                 p_now timestamptz) RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        RETURN QUERY
        UPDATE jobs j SET state = s.state,
            result = COALESCE(s.result, j.result),
            run_at = COALESCE(s.run_at, j.run_at),
            errors = CASE WHEN s.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(s.error) END,
            lease_until = NULL,
            finished_at = CASE WHEN s.state = 'ready' THEN NULL ELSE p_now END,
            updated_at = p_now
        FROM unnest(p_ids, p_attempts, p_states, p_results, p_run_ats, p_errors)
            AS s(id, attempt, state, result, run_at, error)
        WHERE j.id = s.id AND j.state = 'running' AND j.attempts = s.attempt
        RETURNING j.id;
        PERFORM set_config('app.platform', '', true);
    END
    $$;

REVOKE EXECUTE ON FUNCTION flow_settle_jobs(uuid[], integer[], text[], jsonb[], timestamptz[], jsonb[], timestamptz)
    FROM PUBLIC;
