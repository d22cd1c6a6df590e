"""users_sign_in(): a sign-in without an invite code in one statement, on PostgreSQL.

The same rules as users.services.codes._verify_code_in_python, which SQLite runs and
sign-ins with an invite code take: the phone's lock after wrong guesses, the code's
attempts, expiry and value (a wrong one is counted, and the count commits), then the
user (created on the first sign-in, with the first free invite code of those drawn
by the caller with `secrets`), the refresh token and last_login. One round trip
instead of about a dozen.

The code is compared as its HMAC (keyed with SECRET_KEY, which the database does not
know): how long a comparison takes can tell nothing about a code, because no caller
can choose or compute the digests compared.
"""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION users_sign_in(
    p_phone text, p_code_hash text, p_now timestamptz,
    p_max_attempts integer, p_max_failed integer, p_cooldown integer, p_per_phone integer,
    p_invite_codes text[], p_password text, p_token_hash text
) RETURNS TABLE (
    refusal text, wait integer, user_id bigint, invite_code text, inviter_code text,
    invite_activated_at timestamptz, date_joined timestamptz, is_new boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    v_epoch double precision := extract(epoch FROM p_now);
    v_failures_row bigint;
    v_failures double precision[];
    v_sends double precision[];
    v_challenge users_otpchallenge;
    v_user users_user;
    v_inviter_code text;
    v_wait integer;
    v_candidate text;
    v_new boolean := false;
BEGIN
    -- The phone's failure counter, then its code, locked in the order every use case takes.
    INSERT INTO users_ratelimit AS r (key, hits, expires_at)
    VALUES ('fail:phone:' || p_phone, '[]', p_now)
    ON CONFLICT (key) DO UPDATE SET key = excluded.key
    RETURNING r.id, users_hits(r.hits, v_epoch - 86400) INTO v_failures_row, v_failures;
    SELECT * INTO v_challenge FROM users_otpchallenge c WHERE c.phone = p_phone FOR UPDATE;

    v_wait := users_window_wait(v_failures, p_max_failed, 86400, 0, v_epoch);
    IF v_wait > 0 THEN
        RETURN QUERY SELECT 'phone_locked', v_wait, NULL::bigint, NULL, NULL, NULL::timestamptz, NULL::timestamptz, NULL::boolean;
        RETURN;
    END IF;
    IF v_challenge.id IS NULL THEN
        RETURN QUERY SELECT 'no_code', 0, NULL::bigint, NULL, NULL, NULL::timestamptz, NULL::timestamptz, NULL::boolean;
        RETURN;
    END IF;
    IF v_challenge.attempts >= p_max_attempts THEN
        SELECT users_hits(r.hits, v_epoch - 3600) INTO v_sends
        FROM users_ratelimit r WHERE r.key = 'send:phone:' || p_phone;
        v_wait := users_window_wait(coalesce(v_sends, '{}'), p_per_phone, 3600, p_cooldown, v_epoch);
        RETURN QUERY SELECT 'dead_code', v_wait, NULL::bigint, NULL, NULL, NULL::timestamptz, NULL::timestamptz, NULL::boolean;
        RETURN;
    END IF;
    IF v_challenge.expires_at <= p_now THEN
        RETURN QUERY SELECT 'expired', 0, NULL::bigint, NULL, NULL, NULL::timestamptz, NULL::timestamptz, NULL::boolean;
        RETURN;
    END IF;
    IF v_challenge.code_hash <> p_code_hash THEN
        -- A wrong guess counts against the code and the phone; this answer commits them.
        UPDATE users_otpchallenge SET attempts = attempts + 1 WHERE id = v_challenge.id;
        UPDATE users_ratelimit
        SET hits = users_hits_added(v_failures, v_epoch, p_max_failed),
            expires_at = p_now + make_interval(secs => 86400)
        WHERE id = v_failures_row;
        RETURN QUERY SELECT 'wrong_code', 0, NULL::bigint, NULL, NULL, NULL::timestamptz, NULL::timestamptz, NULL::boolean;
        RETURN;
    END IF;

    SELECT * INTO v_user FROM users_user u WHERE u.phone = p_phone;
    IF v_user.id IS NOT NULL THEN
        IF NOT v_user.is_active THEN
            RETURN QUERY SELECT 'disabled', 0, NULL::bigint, NULL, NULL, NULL::timestamptz, NULL::timestamptz, NULL::boolean;
            RETURN;
        END IF;
        UPDATE users_user SET last_login = p_now WHERE id = v_user.id;
        SELECT i.invite_code INTO v_inviter_code FROM users_user i WHERE i.id = v_user.invited_by_id;
    ELSE
        FOREACH v_candidate IN ARRAY p_invite_codes LOOP
            BEGIN
                INSERT INTO users_user (
                    password, last_login, is_superuser, phone, invite_code, invited_by_id,
                    invite_activated_at, is_staff, is_active, date_joined
                ) VALUES (
                    p_password, p_now, false, p_phone, v_candidate, NULL, NULL, false, true, p_now
                ) RETURNING * INTO v_user;
                v_new := true;
                EXIT;
            EXCEPTION WHEN unique_violation THEN
                -- The invite code was taken (the code's lock keeps the phone's own
                -- first sign-ins apart): try the next one.
                CONTINUE;
            END;
        END LOOP;
        IF NOT v_new THEN
            RAISE EXCEPTION 'could not draw a free invite code';
        END IF;
    END IF;

    DELETE FROM users_otpchallenge WHERE id = v_challenge.id;  -- single use
    INSERT INTO users_refreshtoken (token_hash, user_id, created_at, revoked_at, rotated)
    VALUES (p_token_hash, v_user.id, p_now, NULL, false);
    RETURN QUERY SELECT NULL::text, 0, v_user.id, v_user.invite_code::text, v_inviter_code,
        v_user.invite_activated_at, v_user.date_joined, v_new;
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS users_sign_in(
    text, text, timestamptz, integer, integer, integer, integer, text[], text, text
);
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("users", "0004_issue_code_function"), ("users", "0002_refresh_tokens")]

    operations = [migrations.RunPython(create, drop)]
