-- The platform functions run as the owner and reach across tenants, so each checks its
-- arguments: a settled job goes to a state the queue knows, a claim takes a bounded batch
-- for a bounded lease, times are near the database's own clock, and the event log is
-- pruned only of the past. They cannot tell a compromised serving role from Flow itself
-- (see docs/SECURITY.md for what such a role can still do); they keep a bug or a forged
-- argument from putting the queue or the log into a state Flow never makes.

CREATE FUNCTION flow_check(p_ok boolean, p_message text) RETURNS void
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
    BEGIN
        IF p_ok IS NOT TRUE THEN
            RAISE EXCEPTION 'flow: %', p_message USING ERRCODE = '22023';
        END IF;
    END
    $$;

-- A time the caller passes as "now" is the database's now, give or take clock skew.
CREATE FUNCTION flow_check_now(p_now timestamptz) RETURNS void
    LANGUAGE sql STABLE SET search_path = public, pg_temp
    AS $$ SELECT flow_check(p_now BETWEEN now() - interval '5 minutes'
                                      AND clock_timestamp() + interval '5 minutes',
                            'a time more than 5 minutes from the database clock') $$;

CREATE OR REPLACE FUNCTION flow_touch_api_key(p_id uuid, p_at timestamptz) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM flow_check_now(p_at);
        PERFORM set_config('app.platform', 'on', true);
        UPDATE api_keys SET last_used_at = p_at WHERE id = p_id;
        PERFORM set_config('app.platform', '', true);
    END
    $$;

CREATE OR REPLACE FUNCTION flow_claim_jobs(p_queues text[], p_limit integer, p_now timestamptz,
                                           p_lease_until timestamptz) RETURNS SETOF jobs
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET plan_cache_mode = force_custom_plan SET enable_sort = off SET jit = off
    AS $$
    BEGIN
        PERFORM flow_check(p_limit BETWEEN 1 AND 1000, 'a claim takes 1 to 1000 jobs');
        PERFORM flow_check_now(p_now);
        PERFORM flow_check(p_lease_until > p_now AND p_lease_until <= p_now + interval '1 day',
                           'a lease ends after now and within a day');
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

-- An attempt ends as completed, dead, or ready again (a retry); nothing else.
CREATE OR REPLACE FUNCTION flow_settle_job(p_id uuid, p_attempt integer, p_state text,
                                           p_result jsonb, p_run_at timestamptz,
                                           p_error jsonb, p_now timestamptz)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        found_job boolean;
    BEGIN
        PERFORM flow_check(p_state IN ('completed', 'dead', 'ready'),
                           'a job is settled as completed, dead or ready');
        PERFORM flow_check_now(p_now);
        PERFORM set_config('app.platform', 'on', true);
        UPDATE jobs SET state = p_state,
            result = COALESCE(p_result, result),
            run_at = COALESCE(p_run_at, run_at),
            errors = CASE WHEN p_error IS NULL THEN errors ELSE errors || jsonb_build_array(p_error) END,
            lease_until = NULL,
            finished_at = CASE WHEN p_state = 'ready' THEN NULL ELSE p_now END,
            updated_at = p_now
        WHERE id = p_id AND state = 'running' AND attempts = p_attempt;
        found_job := FOUND;
        PERFORM set_config('app.platform', '', true);
        RETURN found_job;
    END
    $$;

CREATE OR REPLACE FUNCTION flow_settle_jobs(p_ids uuid[], p_attempts integer[], p_states text[],
                                            p_results jsonb[], p_run_ats timestamptz[],
                                            p_errors jsonb[], p_now timestamptz)
    RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM flow_check(p_states <@ ARRAY['completed', 'dead', 'ready'],
                           'a job is settled as completed, dead or ready');
        PERFORM flow_check_now(p_now);
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

CREATE OR REPLACE FUNCTION flow_extend_lease(p_id uuid, p_attempt integer, p_until timestamptz)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        found_job boolean;
    BEGIN
        PERFORM flow_check(p_until > now() AND p_until <= now() + interval '1 day',
                           'a lease ends after now and within a day');
        PERFORM set_config('app.platform', 'on', true);
        UPDATE jobs SET lease_until = p_until
        WHERE id = p_id AND state = 'running' AND attempts = p_attempt;
        found_job := FOUND;
        PERFORM set_config('app.platform', '', true);
        RETURN found_job;
    END
    $$;

-- Only the past: events committed from now on stay for the sockets that will resume.
CREATE OR REPLACE FUNCTION flow_prune_events(p_before timestamptz) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        gone bigint;
    BEGIN
        PERFORM flow_check(p_before <= clock_timestamp(), 'only past events are pruned');
        PERFORM set_config('app.platform', 'on', true);
        DELETE FROM events WHERE created_at < p_before;
        GET DIAGNOSTICS gone = ROW_COUNT;
        PERFORM set_config('app.platform', '', true);
        RETURN gone;
    END
    $$;

CREATE OR REPLACE FUNCTION flow_prune_jobs(p_before timestamptz) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DECLARE
        gone bigint;
    BEGIN
        PERFORM flow_check(p_before <= clock_timestamp(), 'only jobs finished in the past are pruned');
        PERFORM set_config('app.platform', 'on', true);
        DELETE FROM jobs WHERE state = 'completed' AND finished_at < p_before;
        GET DIAGNOSTICS gone = ROW_COUNT;
        PERFORM set_config('app.platform', '', true);
        RETURN gone;
    END
    $$;

-- New functions are withheld from PUBLIC as the others are (0008).
REVOKE EXECUTE ON FUNCTION flow_check(boolean, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION flow_check_now(timestamptz) FROM PUBLIC;
