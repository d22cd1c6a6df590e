-- The referral program's rules: an activation's record with its fraud signals and the
-- notice that tells its referrer's open subscriptions. users/services/referrals.py calls these functions; this file is their only text.
--
-- An activation is recorded in the transaction that made it (after the referee's row
-- is written and locked, users/sql/sign_in.sql's step 8), so its record, its signals
-- and its notice commit or roll back with it: PostgreSQL delivers a NOTIFY only when
-- its transaction commits, to every worker on every host that LISTENs.

-- Record the activation of `p_referrer`'s code `p_code` by `p_referee`, whose row holds
-- it already, with its signals:
--   same_network  the referee's network `p_network` is one the referrer signed in from
--                 within `p_network_days` days (their sign-in history, users_signinevent);
--   burst         the referrer's code had `p_per_hour` activations or more in the hour
--                 before this one (this is one more than the setting allows);
--   sequential    the referee's number is within `p_distance` of the referrer's or of
--                 another referee's of the same referrer, as numbers of the same length.
-- (The fourth, dormant, needs a week to tell: users_flag_dormant.) Then the notice on
-- the channel users_referral_added: {"referrer", "phone", "activated_at"}.
CREATE OR REPLACE FUNCTION users_record_activation(
    p_referee bigint, p_referrer bigint, p_code text, p_via text, p_network text,
    p_network_days integer, p_per_hour integer, p_distance bigint
) RETURNS TABLE (activation_id bigint, signals text[], activated_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_phone text;
    v_at timestamptz;
    v_signals text[] := '{}';
    v_id bigint;
BEGIN
    SELECT u.phone, coalesce(u.invite_activated_at, now()) INTO v_phone, v_at
    FROM users_user u WHERE u.id = p_referee;

    IF p_network <> '' AND p_network_days > 0 AND EXISTS (
        SELECT 1 FROM users_signinevent e
        WHERE e.user_id = p_referrer AND e.outcome = 'signed_in' AND e.network = p_network
            AND e.at > now() - make_interval(days => p_network_days)
    ) THEN
        v_signals := v_signals || 'same_network'::text;
    END IF;

    IF p_per_hour > 0 AND (
        SELECT count(*) FROM users_activation a
        WHERE a.referrer_id = p_referrer AND a.activated_at > now() - interval '1 hour'
    ) >= p_per_hour THEN
        v_signals := v_signals || 'burst'::text;
    END IF;

    IF p_distance >= 0 AND EXISTS (
        SELECT 1 FROM users_user u
        WHERE (u.id = p_referrer OR u.invited_by_id = p_referrer) AND u.id <> p_referee
            AND length(u.phone) = length(v_phone)
            AND abs(substr(u.phone, 2)::numeric - substr(v_phone, 2)::numeric) <= p_distance
    ) THEN
        v_signals := v_signals || 'sequential'::text;
    END IF;

    INSERT INTO users_activation (referee_id, referrer_id, code, activated_at, via, network,
        signals, dormant_checked, status)
    VALUES (p_referee, p_referrer, p_code, v_at, p_via, coalesce(p_network, ''), v_signals,
        false, 'counted')
    RETURNING id INTO v_id;

    PERFORM pg_notify('users_referral_added', json_build_object(
        'referrer', p_referrer, 'phone', v_phone, 'activated_at', v_at
    )::text);
    RETURN QUERY SELECT v_id, v_signals, v_at;
END
$$;

-- The dormant signal, for activations at least `p_days` days old that have not been
-- decided yet: flagged when the referee has not been back since (no refresh token of
-- theirs made more than a minute after the activation and within those days: every
-- sign-in and every refresh makes one). Each such activation is decided once. The
-- number of activations flagged.
CREATE OR REPLACE FUNCTION users_flag_dormant(p_days integer)
RETURNS integer LANGUAGE sql AS $$
    WITH due AS (
        UPDATE users_activation a SET dormant_checked = true,
            signals = CASE WHEN EXISTS (
                SELECT 1 FROM users_refreshtoken t
                WHERE t.user_id = a.referee_id
                    AND t.created_at > a.activated_at + interval '1 minute'
                    AND t.created_at <= a.activated_at + make_interval(days => p_days)
            ) OR 'dormant' = ANY(a.signals) THEN a.signals ELSE a.signals || 'dormant'::text END
        WHERE NOT a.dormant_checked
            AND a.activated_at <= now() - make_interval(days => p_days)
        RETURNING 'dormant' = ANY(a.signals) AS flagged
    )
    SELECT count(*)::integer FROM due WHERE flagged
$$;
