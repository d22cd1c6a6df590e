"""users_issue_code(): a send's whole database work in one statement, on PostgreSQL.

The same rules as users.services.codes._issue_code_in_python, which SQLite runs: the
phone's window (cooldown and hourly count), the phone's lock after wrong guesses, the
client address's window, one room in the service's hourly count, then the code. One
round trip instead of about ten, each of which cost Django about a millisecond of
Python to compile; the locks are taken in the same order.
"""

from django.db import migrations

FUNCTIONS = r"""
-- The events of a window (a jsonb array of epoch seconds) newer than `since`, ascending.
CREATE OR REPLACE FUNCTION users_hits(hits jsonb, since double precision)
RETURNS double precision[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(event::float8 ORDER BY event::float8), '{}')
    FROM jsonb_array_elements_text(hits) AS event
    WHERE event::float8 > since
$$;

-- Seconds until one more event fits: `lim` per `win` seconds, `spacing` apart (Window.wait).
CREATE OR REPLACE FUNCTION users_window_wait(
    hits double precision[], lim integer, win integer, spacing integer, now double precision
) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(
        0,
        ceil(greatest(
            0,
            CASE WHEN cardinality(hits) >= lim
                THEN hits[cardinality(hits) - lim + 1] + win - now END,
            CASE WHEN spacing > 0 AND cardinality(hits) > 0
                THEN hits[cardinality(hits)] + spacing - now END
        ))
    )::integer
$$;

-- The newest `keep` events, with `event` added, as jsonb (Window.add).
CREATE OR REPLACE FUNCTION users_hits_added(
    hits double precision[], event double precision, keep integer
) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT to_jsonb((hits || event)[greatest(cardinality(hits) + 2 - keep, 1):])
$$;

CREATE OR REPLACE FUNCTION users_issue_code(
    p_phone text, p_code_hash text, p_client_key text, p_now double precision,
    p_created timestamptz, p_ttl integer, p_cooldown integer, p_per_phone integer, p_max_failed integer,
    p_per_client integer, p_total integer, p_shards integer
) RETURNS TABLE (refusal text, wait integer, retry_after integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := p_created;
    v_phone_row bigint;
    v_phone_hits double precision[];
    v_client_row bigint;
    v_client_hits double precision[];
    v_failures double precision[];
    v_wait integer;
    v_hour bigint := floor(p_now / 3600) * 3600;
    v_shards integer := least(p_shards, p_total);
    v_base integer;
    v_extra integer;
    v_shard integer;
BEGIN
    -- The phone's send counter, created if need be, and locked.
    INSERT INTO users_ratelimit AS r (key, hits, expires_at)
    VALUES ('send:phone:' || p_phone, '[]', v_now)
    ON CONFLICT (key) DO UPDATE SET key = excluded.key
    RETURNING r.id, users_hits(r.hits, p_now - 3600) INTO v_phone_row, v_phone_hits;
    v_wait := users_window_wait(v_phone_hits, p_per_phone, 3600, p_cooldown, p_now);
    IF v_wait > 0 THEN
        RETURN QUERY SELECT 'rate_limited', v_wait, NULL::integer;
        RETURN;
    END IF;

    -- A phone locked out by wrong guesses gets no code: it could not be used.
    SELECT users_hits(r.hits, p_now - 86400) INTO v_failures
    FROM users_ratelimit r WHERE r.key = 'fail:phone:' || p_phone;
    v_wait := users_window_wait(coalesce(v_failures, '{}'), p_max_failed, 86400, 0, p_now);
    IF v_wait > 0 THEN
        RETURN QUERY SELECT 'phone_locked', v_wait, NULL::integer;
        RETURN;
    END IF;

    -- The client address's counter.
    IF p_client_key IS NOT NULL THEN
        INSERT INTO users_ratelimit AS r (key, hits, expires_at)
        VALUES ('send:ip:' || p_client_key, '[]', v_now)
        ON CONFLICT (key) DO UPDATE SET key = excluded.key
        RETURNING r.id, users_hits(r.hits, p_now - 3600) INTO v_client_row, v_client_hits;
        v_wait := users_window_wait(v_client_hits, p_per_client, 3600, 0, p_now);
        IF v_wait > 0 THEN
            RETURN QUERY SELECT 'rate_limited', v_wait, NULL::integer;
            RETURN;
        END IF;
    END IF;

    -- Room in the service's count for this hour: a random shard, or any with room.
    IF v_shards <= 0 THEN
        RETURN QUERY SELECT 'service_cap', greatest(1, ceil(v_hour + 3600 - p_now)::integer), NULL::integer;
        RETURN;
    END IF;
    v_base := p_total / v_shards;
    v_extra := mod(p_total, v_shards);
    v_shard := floor(random() * v_shards)::integer;
    INSERT INTO users_sendtotal AS t (hour, shard, count) VALUES (v_hour, v_shard, 1)
    ON CONFLICT (hour, shard) DO UPDATE SET count = t.count + 1
    WHERE t.count < v_base + (t.shard < v_extra)::integer;
    IF NOT FOUND THEN
        INSERT INTO users_sendtotal (hour, shard, count)
        SELECT v_hour, s, 0 FROM generate_series(0, v_shards - 1) AS s
        ON CONFLICT (hour, shard) DO NOTHING;
        UPDATE users_sendtotal SET count = count + 1 WHERE id = (
            SELECT id FROM users_sendtotal
            WHERE hour = v_hour AND shard < v_shards AND count < v_base + (shard < v_extra)::integer
            ORDER BY shard LIMIT 1 FOR UPDATE SKIP LOCKED
        );
        IF NOT FOUND THEN  -- every shard with room is held by a send that may yet roll back
            UPDATE users_sendtotal SET count = count + 1 WHERE id = (
                SELECT id FROM users_sendtotal
                WHERE hour = v_hour AND shard < v_shards AND count < v_base + (shard < v_extra)::integer
                ORDER BY shard LIMIT 1 FOR UPDATE
            );
            IF NOT FOUND THEN
                RETURN QUERY SELECT 'service_cap', greatest(1, ceil(v_hour + 3600 - p_now)::integer), NULL::integer;
                RETURN;
            END IF;
        END IF;
    END IF;

    -- Every limit has room: count the send and store the code (a new one replaces the old).
    UPDATE users_ratelimit
    SET hits = users_hits_added(v_phone_hits, p_now, p_per_phone), expires_at = to_timestamp(p_now + 3600)
    WHERE id = v_phone_row;
    IF v_client_row IS NOT NULL THEN
        UPDATE users_ratelimit
        SET hits = users_hits_added(v_client_hits, p_now, p_per_client), expires_at = to_timestamp(p_now + 3600)
        WHERE id = v_client_row;
    END IF;
    INSERT INTO users_otpchallenge (phone, code_hash, created_at, expires_at, attempts)
    VALUES (p_phone, p_code_hash, v_now, v_now + make_interval(secs => p_ttl), 0)
    ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash,
        created_at = excluded.created_at, expires_at = excluded.expires_at, attempts = 0;
    RETURN QUERY SELECT NULL::text, 0,
        users_window_wait(v_phone_hits || p_now, p_per_phone, 3600, p_cooldown, p_now);
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS users_issue_code(
    text, text, text, double precision, timestamptz,
    integer, integer, integer, integer, integer, integer, integer
);
DROP FUNCTION IF EXISTS users_hits_added(double precision[], double precision, integer);
DROP FUNCTION IF EXISTS users_window_wait(double precision[], integer, integer, integer, double precision);
DROP FUNCTION IF EXISTS users_hits(jsonb, double precision);
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTIONS)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("users", "0003_send_totals")]

    operations = [migrations.RunPython(create, drop)]
