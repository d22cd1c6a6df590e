-- What became of each SMS (users_delivery), and the pumping rule that reads it.
--
-- A delivery's status only moves forward: queued (the send was counted), then unknown
-- (the provider did not answer in time) or sent (it took the message), then one of
-- delivered, undelivered, failed, which is final. A receipt that would move a status
-- back, or sideways between two final ones, changes nothing.
--
-- Installed by users.sql (after every migrate); a test compares the database's
-- functions with this file.

CREATE OR REPLACE FUNCTION users_delivery_rank(p_status text)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_status
        WHEN 'queued' THEN 0 WHEN 'unknown' THEN 1 WHEN 'sent' THEN 2
        WHEN 'delivered' THEN 3 WHEN 'undelivered' THEN 3 WHEN 'failed' THEN 3
    END
$$;

-- Move delivery `p_id` to `p_status` if that is forward, with the provider's message id
-- and error code when given. changed: whether it moved; `seconds`: since the send.
CREATE OR REPLACE FUNCTION users_delivery_status(
    p_id bigint, p_status text, p_message_id text, p_error text
) RETURNS TABLE (changed boolean, country text, seconds double precision)
LANGUAGE sql AS $$
    WITH moved AS (
        UPDATE users_delivery d SET
            status = p_status,
            message_id = coalesce(p_message_id, d.message_id),
            error_code = coalesce(p_error, d.error_code),
            sent_at = CASE WHEN p_status = 'sent' THEN now() ELSE d.sent_at END,
            delivered_at = CASE WHEN p_status = 'delivered' THEN now() ELSE d.delivered_at END,
            failed_at = CASE WHEN p_status IN ('undelivered', 'failed') THEN now()
                ELSE d.failed_at END
        WHERE d.id = p_id AND users_delivery_rank(p_status) > users_delivery_rank(d.status)
        RETURNING d.country::text, extract(epoch FROM now() - d.created_at) AS seconds
    )
    SELECT EXISTS (SELECT 1 FROM moved), (SELECT m.country FROM moved m),
        (SELECT m.seconds FROM moved m)
$$;

-- A receipt from the provider for its message `p_message_id`. found: whether the
-- message is one of ours; changed: whether its status moved.
CREATE OR REPLACE FUNCTION users_delivery_receipt(
    p_provider text, p_message_id text, p_status text, p_error text
) RETURNS TABLE (found boolean, changed boolean, country text, seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_moved record;
BEGIN
    SELECT d.id INTO v_id FROM users_delivery d
    WHERE d.provider = p_provider AND d.message_id = p_message_id;
    IF v_id IS NULL THEN
        RETURN QUERY SELECT false, false, NULL::text, NULL::float8;
        RETURN;
    END IF;
    SELECT * INTO v_moved FROM users_delivery_status(v_id, p_status, NULL, p_error);
    RETURN QUERY SELECT true, v_moved.changed, v_moved.country, v_moved.seconds;
END
$$;

-- Is `p_prefix` blocked now? A block runs until `until`; a pinned one (until NULL) until
-- staff lift it.
CREATE OR REPLACE FUNCTION users_prefix_blocked(p_prefix text)
RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (
        SELECT 1 FROM users_blockedprefix b
        WHERE b.prefix = p_prefix AND (b.until IS NULL OR b.until > now())
    )
$$;

-- The pumping rule, after a send to `p_prefix`: of the prefix's latest sends (at most
-- 2 * p_min_sends, within `p_window` seconds, and since its last block ended or was
-- lifted), if there are at least `p_min_sends` and under `p_min_conversion` of them
-- were verified, block the prefix for `p_block` seconds. True when this call blocked
-- it (the caller logs it, once across every worker and host).
CREATE OR REPLACE FUNCTION users_pumping_check(
    p_prefix text, p_min_sends integer, p_min_conversion double precision,
    p_window integer, p_block integer
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_since timestamptz := now() - make_interval(secs => p_window);
    v_sends integer;
    v_verified integer;
BEGIN
    SELECT greatest(v_since, b.until) INTO v_since FROM users_blockedprefix b
    WHERE b.prefix = p_prefix AND b.until IS NOT NULL;
    v_since := coalesce(v_since, now() - make_interval(secs => p_window));
    SELECT count(*), count(latest.verified_at) INTO v_sends, v_verified FROM (
        SELECT d.verified_at FROM users_delivery d
        WHERE d.prefix = p_prefix AND d.created_at > v_since
        ORDER BY d.created_at DESC LIMIT 2 * p_min_sends
    ) latest;
    IF v_sends < p_min_sends OR v_verified >= v_sends * p_min_conversion THEN
        RETURN false;
    END IF;
    INSERT INTO users_blockedprefix AS b (prefix, blocked_at, until, sends, verified)
    VALUES (p_prefix, now(), now() + make_interval(secs => p_block), v_sends, v_verified)
    ON CONFLICT (prefix) DO UPDATE SET blocked_at = now(), until = excluded.until,
        sends = excluded.sends, verified = excluded.verified
    WHERE b.until IS NOT NULL AND b.until <= now();
    RETURN FOUND;
END
$$;
