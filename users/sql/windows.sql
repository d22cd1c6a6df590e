-- Sliding-window limits kept in the database, so every worker and host shares them.
--
-- Each key ("send:phone:+375...") has one users_ratelimit row whose `hits` is a jsonb
-- array of the epoch seconds of its recent events, at most `limit` of them. Every
-- time is the database's clock (now()), never a host's: two hosts whose clocks
-- differ enforce one limit. The row is locked by an upsert, so concurrent requests
-- for one key queue up and each sees the count the previous one left.
--
-- Installed by users.sql (after every migrate); a test compares the database's
-- functions with this file.

-- The events of `hits` newer than `since`, ascending.
CREATE OR REPLACE FUNCTION users_hits(hits jsonb, since double precision)
RETURNS double precision[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(event::float8 ORDER BY event::float8), '{}')
    FROM jsonb_array_elements_text(hits) AS event
    WHERE event::float8 > since
$$;

-- Seconds until one more event fits: `lim` per `win` seconds, `spacing` apart; 0 if now.
CREATE OR REPLACE FUNCTION users_window_wait(
    hits double precision[], lim integer, win integer, spacing integer, at double precision
) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(
        0,
        ceil(greatest(
            0,
            CASE WHEN cardinality(hits) >= lim
                THEN hits[cardinality(hits) - lim + 1] + win - at END,
            CASE WHEN spacing > 0 AND cardinality(hits) > 0
                THEN hits[cardinality(hits)] + spacing - at END
        ))
    )::integer
$$;

-- The newest `keep` events of `hits` with `event` added, as jsonb.
CREATE OR REPLACE FUNCTION users_hits_added(
    hits double precision[], event double precision, keep integer
) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT to_jsonb((hits || event)[greatest(cardinality(hits) + 2 - keep, 1):])
$$;

-- Lock `key`'s row, creating it; its id and its events newer than `since`.
CREATE OR REPLACE FUNCTION users_window_lock(p_key text, p_since double precision)
RETURNS TABLE (row_id bigint, hits double precision[]) LANGUAGE sql AS $$
    INSERT INTO users_ratelimit AS r (key, hits, expires_at) VALUES (p_key, '[]', now())
    ON CONFLICT (key) DO UPDATE SET key = excluded.key
    RETURNING r.id, users_hits(r.hits, p_since)
$$;

-- Record `p_event` in the locked row `p_row` whose events are `p_hits`.
CREATE OR REPLACE FUNCTION users_window_record(
    p_row bigint, p_hits double precision[], p_event double precision, p_keep integer,
    p_window integer
) RETURNS void LANGUAGE sql AS $$
    UPDATE users_ratelimit
    SET hits = users_hits_added(p_hits, p_event, p_keep), expires_at = to_timestamp(p_event + p_window)
    WHERE id = p_row
$$;

-- The wait for one more event of `key` now (0: there is room), without recording it.
-- With p_lock the row is locked until the transaction ends, so the caller can decide
-- and record (users_window_take) without a race; without it, a plain read.
CREATE OR REPLACE FUNCTION users_window_check(
    p_key text, p_limit integer, p_window integer, p_spacing integer, p_lock boolean
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := extract(epoch FROM now());
    v_hits double precision[];
BEGIN
    IF p_lock THEN
        SELECT w.hits INTO v_hits FROM users_window_lock(p_key, v_now - p_window) w;
    ELSE
        SELECT users_hits(r.hits, v_now - p_window) INTO v_hits
        FROM users_ratelimit r WHERE r.key = p_key;
    END IF;
    RETURN users_window_wait(coalesce(v_hits, '{}'), p_limit, p_window, p_spacing, v_now);
END
$$;

-- Take one event of `key` now if it fits: (0, the event's time), or (the wait, NULL)
-- and nothing recorded.
CREATE OR REPLACE FUNCTION users_window_take(
    p_key text, p_limit integer, p_window integer, p_spacing integer
) RETURNS TABLE (wait integer, event double precision) LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := extract(epoch FROM now());
    v_row bigint;
    v_hits double precision[];
    v_wait integer;
BEGIN
    SELECT w.row_id, w.hits INTO v_row, v_hits FROM users_window_lock(p_key, v_now - p_window) w;
    v_wait := users_window_wait(v_hits, p_limit, p_window, p_spacing, v_now);
    IF v_wait > 0 THEN
        RETURN QUERY SELECT v_wait, NULL::double precision;
        RETURN;
    END IF;
    PERFORM users_window_record(v_row, v_hits, v_now, p_limit, p_window);
    RETURN QUERY SELECT 0, v_now;
END
$$;

-- Forget the event of `key` taken at `p_event` (a sign-in that succeeded, a send whose
-- code was never delivered).
CREATE OR REPLACE FUNCTION users_window_forget(p_key text, p_event double precision)
RETURNS void LANGUAGE sql AS $$
    UPDATE users_ratelimit r
    SET hits = coalesce(
        (SELECT jsonb_agg(e) FROM jsonb_array_elements(r.hits) e WHERE e::float8 <> p_event),
        '[]'
    )
    WHERE r.key = p_key
$$;
