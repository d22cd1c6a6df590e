-- Ending sessions. This file is the rule's only text; users/services/tokens.py calls it.
--
-- A session ends once, by signing out there, from another device, by staff or by reuse
-- detection, always in a transaction that holds or takes the sessions' rows first and
-- their refresh tokens after (docs/architecture.md, "Refresh tokens and sessions").
-- Each session that was still live is told on the channel users_session_ended as
-- {"session": <id>}: PostgreSQL delivers it when the transaction commits, to every
-- worker on every host that LISTENs, and a subscription opened with one of its access
-- tokens is closed there (schema/websocket.py). Requests need no notice: each one reads
-- its session with the user.

-- End the sessions `p_sessions` and revoke their refresh tokens; how many were live.
CREATE OR REPLACE FUNCTION users_end_sessions(p_sessions bigint[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_ended integer;
BEGIN
    WITH ended AS (
        UPDATE users_session s SET ended_at = now()
        WHERE s.id = ANY(p_sessions) AND s.ended_at IS NULL
        RETURNING s.id
    )
    SELECT count(pg_notify('users_session_ended', json_build_object('session', e.id)::text))
    INTO v_ended FROM ended e;
    UPDATE users_refreshtoken r SET revoked_at = now()
    WHERE r.session_id = ANY(p_sessions) AND r.revoked_at IS NULL;
    RETURN v_ended;
END
$$;
