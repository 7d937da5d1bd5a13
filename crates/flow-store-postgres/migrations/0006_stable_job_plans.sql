-- Claims and settlements no longer depend on a cached plan or on fresh statistics. A
-- plpgsql statement's plan is cached per connection and, after five calls, may become a
-- generic plan chosen while the jobs table was small; and a queue table's statistics are
-- stale most of the time (it can grow by thousands of rows between two autovacuum runs).
-- The bench caught both functions joining every running job against the batch (a nested
-- loop over the whole table: 70-90 ms per call at 20,000 jobs instead of ~1 ms), and the
-- claim fetching and sorting every due job to take the first 256. Now:
--  * the claim reads the ready index in its order and stops at the limit (with sorting
--    off, the planner has no cheaper-looking alternative to be misled to; and JIT off,
--    since the sort penalty would otherwise make it compile a 1 ms statement for 200 ms),
--    is planned with its own arguments, and updates the picked rows by primary key;
--  * a settlement is one primary-key update per job, whose plan cannot go wrong;
--  * the lease index no longer has `state = 'running'` as its predicate, so a statement
--    that checks the state of rows it names by id has no partial index to be lured to.
DROP INDEX jobs_leased;
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE lease_until IS NOT NULL;

CREATE OR REPLACE FUNCTION flow_claim_jobs(p_queues text[], p_limit integer, p_now timestamptz,
                                           p_lease_until timestamptz) RETURNS SETOF jobs
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET plan_cache_mode = force_custom_plan SET enable_sort = off SET jit = off
    AS $$
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        RETURN QUERY
        WITH expired AS (
            SELECT id FROM jobs
            WHERE lease_until < p_now AND state = 'running' AND queue = ANY (p_queues)
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
        WHERE j.id = ANY (ARRAY(SELECT picked.id FROM picked))
        RETURNING j.*;
        PERFORM set_config('app.platform', '', true);
    END
    $$;

CREATE OR REPLACE FUNCTION flow_settle_jobs(p_ids uuid[], p_attempts integer[], p_states text[],
                                            p_results jsonb[], p_run_ats timestamptz[],
                                            p_errors jsonb[], p_now timestamptz)
    RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM set_config('app.platform', 'on', true);
        FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
            UPDATE jobs SET state = p_states[i],
                result = COALESCE(p_results[i], result),
                run_at = COALESCE(p_run_ats[i], run_at),
                errors = CASE WHEN p_errors[i] IS NULL THEN errors
                              ELSE errors || jsonb_build_array(p_errors[i]) END,
                lease_until = NULL,
                finished_at = CASE WHEN p_states[i] = 'ready' THEN NULL ELSE p_now END,
                updated_at = p_now
            WHERE id = p_ids[i] AND state = 'running' AND attempts = p_attempts[i];
            IF FOUND THEN
                RETURN NEXT p_ids[i];
            END IF;
        END LOOP;
        PERFORM set_config('app.platform', '', true);
    END
    $$;
