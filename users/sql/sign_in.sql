-- The rules that must be atomic: a send, a code check, a sign-in. This file is their
-- only text; users/services/codes.py calls these functions and turns their refusals
-- into errors. Each runs as one statement (one round trip instead of about ten ORM
-- statements), or inside the caller's transaction where the sign-in activates an
-- invite (users/services/invites.py).
--
-- Time is the database's clock, now(): every window, expiry and the service's hour,
-- so hosts whose clocks differ enforce the same limits.
--
-- Lock order. Every transaction takes the rows it locks in this order, and so queues
-- behind another instead of deadlocking (a deadlock PostgreSQL still reports is retried
-- by users/services/unit.py):
--   1. the phone's send counter            send:phone:<phone>
--   2. the phone's delivery-attempt counter try:phone:<phone>
--   3. the phone's wrong-guess counter      fail:phone:<phone>
--   4. the client address's send counter    send:ip:<address>
--   5. one shard of the service's hourly count (users_sendtotal)
--   6. the phone's code                     users_otpchallenge
--   7. the phone's invite-miss counter      invite:phone:<phone>
--   8. users, in id order                   users_user
--   9. the number prefix's block            users_blockedprefix
-- A transaction may skip any of them, never go back up the list. A send takes 1, 2,
-- 4, 5, 6 and 9 (it reads 3 and the users without a lock); a failed delivery's undo
-- 1, 6; a code check 3, 6; a sign-in with an invite 3, 6, 7, 8. A send's and a
-- sign-in's delivery row is their own, locked by nobody else but a receipt.
--
-- Installed by users.sql (after every migrate); a test compares the database's
-- functions with this file.

-- Seconds until the phone may be sent another code: its hourly count (`per_phone`
-- sends that were delivered) and its delivery attempts (at most `attempts` an hour,
-- `cooldown` apart, whatever became of them). Reads without locking.
CREATE OR REPLACE FUNCTION users_resend_wait(
    p_phone text, p_per_phone integer, p_attempts integer, p_cooldown integer
) RETURNS integer LANGUAGE sql AS $$
    SELECT greatest(
        users_window_check('send:phone:' || p_phone, p_per_phone, 3600, 0, false),
        users_window_check('try:phone:' || p_phone, p_attempts, 3600, p_cooldown, false)
    )
$$;

-- Room for one send in the hour `p_hour` of a count of `p_total` split over `p_shards`
-- rows (shard numbers from `p_first`): a random shard, or any with room that no one
-- holds, or any with room at all. Concurrent sends lock different rows instead of
-- queueing on one, and the total is reached exactly. False when there is no room.
CREATE OR REPLACE FUNCTION users_take_room(
    p_hour bigint, p_total integer, p_shards integer, p_first integer
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_shards integer := least(p_shards, p_total);
    v_base integer;
    v_extra integer;
    v_shard integer;
BEGIN
    IF v_shards <= 0 THEN
        RETURN false;
    END IF;
    v_base := p_total / v_shards;
    v_extra := mod(p_total, v_shards);
    v_shard := floor(random() * v_shards)::integer;
    INSERT INTO users_sendtotal AS t (hour, shard, count) VALUES (p_hour, p_first + v_shard, 1)
    ON CONFLICT (hour, shard) DO UPDATE SET count = t.count + 1
    WHERE t.count < v_base + (t.shard - p_first < v_extra)::integer;
    IF FOUND THEN
        RETURN true;
    END IF;
    INSERT INTO users_sendtotal (hour, shard, count)
    SELECT p_hour, p_first + s, 0 FROM generate_series(0, v_shards - 1) AS s
    ON CONFLICT (hour, shard) DO NOTHING;
    UPDATE users_sendtotal SET count = count + 1 WHERE id = (
        SELECT id FROM users_sendtotal
        WHERE hour = p_hour AND shard >= p_first AND shard < p_first + v_shards
            AND count < v_base + (shard - p_first < v_extra)::integer
        ORDER BY shard LIMIT 1 FOR UPDATE SKIP LOCKED
    );
    IF FOUND THEN
        RETURN true;
    END IF;
    UPDATE users_sendtotal SET count = count + 1 WHERE id = (  -- held by sends that may roll back
        SELECT id FROM users_sendtotal
        WHERE hour = p_hour AND shard >= p_first AND shard < p_first + v_shards
            AND count < v_base + (shard - p_first < v_extra)::integer
        ORDER BY shard LIMIT 1 FOR UPDATE
    );
    RETURN FOUND;
END
$$;

-- Has `p_phone` an account that signed in within `p_days` days? Such numbers keep
-- getting codes past the service's cap (from its reserve) and in a blocked prefix:
-- SMS pumping cannot make accounts, so it cannot lock their owners out.
CREATE OR REPLACE FUNCTION users_known_account(p_phone text, p_days integer)
RETURNS boolean LANGUAGE sql AS $$
    SELECT p_days > 0 AND EXISTS (
        SELECT 1 FROM users_user u
        WHERE u.phone = p_phone AND u.is_active
            AND u.last_login > now() - make_interval(days => p_days)
    )
$$;

-- A send. Refused first, before any counter, for a number of a blocked prefix (SMS
-- pumping) that has no account. Then the phone's limits, its lock after wrong guesses
-- (a locked phone gets no code: it could not be used), the client address's limit,
-- and one room in the service's hourly count (OTP_MAX_SENDS_TOTAL; past it, numbers
-- with an account take from a smaller reserve). Then the code, which replaces the
-- phone's previous one, and its delivery record (`p_provider` NULL: none, a test
-- number, which no block and no pumping rule touches). Last, the pumping rule for the
-- prefix (`p_pumping_sends` 0: no rule, no block).
-- refusal: NULL, 'prefix_blocked', 'rate_limited', 'phone_locked' or 'service_cap'
-- (then `first` says whether this is the hour's first refusal, across every worker
-- and host). `blocked_now`: this send's prefix has just been blocked.
CREATE OR REPLACE FUNCTION users_issue_code(
    p_phone text, p_code_hash text, p_client_key text, p_ttl integer, p_cooldown integer,
    p_per_phone integer, p_attempts integer, p_max_failed integer, p_per_client integer,
    p_total integer, p_reserve integer, p_shards integer, p_known_days integer,
    p_country text, p_prefix text, p_provider text, p_pumping_sends integer,
    p_pumping_conversion double precision, p_pumping_window integer, p_pumping_block integer
) RETURNS TABLE (
    refusal text, wait integer, retry_after integer, counted_at double precision,
    created_at timestamptz, expires_at timestamptz, first boolean, delivery_id bigint,
    blocked_now boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := extract(epoch FROM now());
    v_hour bigint := floor(v_now / 3600) * 3600;
    v_known boolean := users_known_account(p_phone, p_known_days);
    v_sends_row bigint;
    v_sends double precision[];
    v_tries_row bigint;
    v_tries double precision[];
    v_client_row bigint;
    v_client double precision[];
    v_wait integer;
    v_delivery bigint;
BEGIN
    IF p_pumping_sends > 0 AND NOT v_known AND users_prefix_blocked(p_prefix) THEN
        RETURN QUERY SELECT 'prefix_blocked', 0, NULL::integer, NULL::float8,
            NULL::timestamptz, NULL::timestamptz, NULL::boolean, NULL::bigint, NULL::boolean;
        RETURN;
    END IF;

    SELECT w.row_id, w.hits INTO v_sends_row, v_sends
    FROM users_window_lock('send:phone:' || p_phone, v_now - 3600) w;
    SELECT w.row_id, w.hits INTO v_tries_row, v_tries
    FROM users_window_lock('try:phone:' || p_phone, v_now - 3600) w;
    v_wait := greatest(
        users_window_wait(v_sends, p_per_phone, 3600, 0, v_now),
        users_window_wait(v_tries, p_attempts, 3600, p_cooldown, v_now)
    );
    IF v_wait > 0 THEN
        RETURN QUERY SELECT 'rate_limited', v_wait, NULL::integer, NULL::float8,
            NULL::timestamptz, NULL::timestamptz, NULL::boolean, NULL::bigint, NULL::boolean;
        RETURN;
    END IF;

    v_wait := users_window_check('fail:phone:' || p_phone, p_max_failed, 86400, 0, false);
    IF v_wait > 0 THEN
        RETURN QUERY SELECT 'phone_locked', v_wait, NULL::integer, NULL::float8,
            NULL::timestamptz, NULL::timestamptz, NULL::boolean, NULL::bigint, NULL::boolean;
        RETURN;
    END IF;

    IF p_client_key IS NOT NULL THEN
        SELECT w.row_id, w.hits INTO v_client_row, v_client
        FROM users_window_lock('send:ip:' || p_client_key, v_now - 3600) w;
        v_wait := users_window_wait(v_client, p_per_client, 3600, 0, v_now);
        IF v_wait > 0 THEN
            RETURN QUERY SELECT 'rate_limited', v_wait, NULL::integer, NULL::float8,
                NULL::timestamptz, NULL::timestamptz, NULL::boolean, NULL::bigint,
                NULL::boolean;
            RETURN;
        END IF;
    END IF;

    IF NOT users_take_room(v_hour, p_total, p_shards, 0)
        AND NOT (v_known AND users_take_room(v_hour, p_reserve, p_shards, 1000))
    THEN
        -- One note per hour, whoever hits the cap first: the caller logs one WARNING.
        INSERT INTO users_ratelimit (key, hits, expires_at)
        VALUES ('send:total:reached:' || v_hour, '[]', to_timestamp(v_hour + 3600))
        ON CONFLICT (key) DO NOTHING;
        RETURN QUERY SELECT 'service_cap', greatest(1, ceil(v_hour + 3600 - v_now)::integer),
            NULL::integer, NULL::float8, NULL::timestamptz, NULL::timestamptz, FOUND,
            NULL::bigint, NULL::boolean;
        RETURN;
    END IF;

    -- Every limit has room: count the send, record its delivery, store the code.
    PERFORM users_window_record(v_sends_row, v_sends, v_now, p_per_phone, 3600);
    PERFORM users_window_record(v_tries_row, v_tries, v_now, p_attempts, 3600);
    IF v_client_row IS NOT NULL THEN
        PERFORM users_window_record(v_client_row, v_client, v_now, p_per_client, 3600);
    END IF;
    IF p_provider IS NOT NULL THEN
        INSERT INTO users_delivery (phone, country, prefix, provider)
        VALUES (p_phone, coalesce(p_country, ''), coalesce(p_prefix, ''), p_provider)
        RETURNING id INTO v_delivery;
    END IF;
    INSERT INTO users_otpchallenge AS c (phone, code_hash, created_at, expires_at, attempts,
        delivery_id)
    VALUES (p_phone, p_code_hash, now(), now() + make_interval(secs => p_ttl), 0, v_delivery)
    ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash,
        created_at = excluded.created_at, expires_at = excluded.expires_at, attempts = 0,
        unanswered_user_id = NULL, unanswered_new_user = false,
        delivery_id = excluded.delivery_id;
    RETURN QUERY SELECT NULL::text, 0,
        greatest(
            users_window_wait(v_sends || v_now, p_per_phone, 3600, 0, v_now),
            users_window_wait(v_tries || v_now, p_attempts, 3600, p_cooldown, v_now)
        ),
        v_now, now(), now() + make_interval(secs => p_ttl), NULL::boolean, v_delivery,
        p_provider IS NOT NULL AND p_pumping_sends > 0 AND users_pumping_check(p_prefix,
            p_pumping_sends, p_pumping_conversion, p_pumping_window, p_pumping_block);
END
$$;

-- Undo what a send did after its delivery failed: the phone's hourly count forgets the
-- send (the person did nothing wrong) and its code, unless a newer send has replaced
-- it, is deleted; its delivery is marked failed with the provider's error code. The
-- delivery attempt stays counted: the cooldown still holds and the attempts' ceiling
-- too, whatever the provider answered. The wait to try again.
CREATE OR REPLACE FUNCTION users_void_code(
    p_phone text, p_counted_at double precision, p_created_at timestamptz,
    p_per_phone integer, p_attempts integer, p_cooldown integer, p_delivery bigint,
    p_error text
) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM users_window_lock('send:phone:' || p_phone, 0);
    PERFORM users_window_forget('send:phone:' || p_phone, p_counted_at);
    DELETE FROM users_otpchallenge WHERE phone = p_phone AND created_at = p_created_at;
    PERFORM users_delivery_status(p_delivery, 'failed', NULL, p_error);
    RETURN users_resend_wait(p_phone, p_per_phone, p_attempts, p_cooldown);
END
$$;

-- Check a code against the phone's live one, locking the phone's wrong-guess counter,
-- then its code. A wrong code is counted against the code and the phone, and that
-- count must be committed by the caller even though the answer is a refusal: it is
-- what caps guessing. refusal: NULL (right: `challenge_id` is the code's row, still
-- locked), 'phone_locked', 'no_code', 'dead_code' (`wait`: the wait to resend),
-- 'expired' or 'wrong_code'. `was_new_user`: the code is that of a sign-in whose
-- answer was lost, which created the user (users_keep_unanswered_sign_in).
CREATE OR REPLACE FUNCTION users_check_code(
    p_phone text, p_code_hash text, p_max_attempts integer, p_max_failed integer,
    p_per_phone integer, p_attempts integer, p_cooldown integer
) RETURNS TABLE (refusal text, wait integer, challenge_id bigint, was_new_user boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := extract(epoch FROM now());
    v_failures_row bigint;
    v_failures double precision[];
    v_challenge users_otpchallenge;
    v_wait integer;
BEGIN
    SELECT w.row_id, w.hits INTO v_failures_row, v_failures
    FROM users_window_lock('fail:phone:' || p_phone, v_now - 86400) w;
    SELECT * INTO v_challenge FROM users_otpchallenge c WHERE c.phone = p_phone FOR UPDATE;

    v_wait := users_window_wait(v_failures, p_max_failed, 86400, 0, v_now);
    IF v_wait > 0 THEN
        RETURN QUERY SELECT 'phone_locked', v_wait, NULL::bigint, NULL::boolean;
    ELSIF v_challenge.id IS NULL THEN
        RETURN QUERY SELECT 'no_code', 0, NULL::bigint, NULL::boolean;
    ELSIF v_challenge.attempts >= p_max_attempts THEN
        RETURN QUERY SELECT 'dead_code',
            users_resend_wait(p_phone, p_per_phone, p_attempts, p_cooldown), NULL::bigint,
            NULL::boolean;
    ELSIF v_challenge.expires_at <= now() THEN
        RETURN QUERY SELECT 'expired', 0, NULL::bigint, NULL::boolean;
    ELSIF v_challenge.code_hash <> p_code_hash THEN
        UPDATE users_otpchallenge SET attempts = attempts + 1 WHERE id = v_challenge.id;
        PERFORM users_window_record(v_failures_row, v_failures, v_now, p_max_failed, 86400);
        RETURN QUERY SELECT 'wrong_code', 0, NULL::bigint, NULL::boolean;
    ELSE
        RETURN QUERY SELECT NULL::text, 0, v_challenge.id, v_challenge.unanswered_new_user;
    END IF;
END
$$;

-- A new user with the first free invite code of `p_codes` (drawn by the caller with
-- `secrets`), invited by `p_inviter` if set, signed in now if `p_signed_in`; NULL when
-- every code drawn was taken (the caller draws again). The columns not named here
-- have database defaults (users/models.py: db_default).
CREATE OR REPLACE FUNCTION users_create_user(
    p_phone text, p_password text, p_codes text[], p_inviter bigint, p_signed_in boolean
) RETURNS users_user LANGUAGE plpgsql AS $$
DECLARE
    v_candidate text;
    v_user users_user;
BEGIN
    FOREACH v_candidate IN ARRAY p_codes LOOP
        BEGIN
            INSERT INTO users_user (phone, password, invite_code, invited_by_id,
                invite_activated_at, last_login)
            VALUES (p_phone, p_password, v_candidate, p_inviter,
                CASE WHEN p_inviter IS NOT NULL THEN now() END,
                CASE WHEN p_signed_in THEN now() END)
            RETURNING * INTO v_user;
            RETURN v_user;
        EXCEPTION WHEN unique_violation THEN
            IF EXISTS (SELECT 1 FROM users_user u WHERE u.phone = p_phone) THEN
                RAISE;  -- the phone, not the invite code
            END IF;
        END;
    END LOOP;
    RETURN NULL;
END
$$;

-- A sign-in: the code check above, then the user (created on the first sign-in, with
-- `p_inviter` as inviter when the caller has checked the invite), a new session on
-- `p_device` from `p_network` with its first refresh token, last_login, and the code
-- deleted (single use). Every attempt on a number that has an account is kept in its
-- sign-in history, whatever its outcome. refusal: those of users_check_code,
-- 'disabled', or 'no_invite_code' (every invite code drawn was taken: draw again).
-- `code_expires_at`: when the code would have expired, for users_keep_unanswered_sign_in.
CREATE OR REPLACE FUNCTION users_sign_in(
    p_phone text, p_code_hash text, p_max_attempts integer, p_max_failed integer,
    p_per_phone integer, p_attempts integer, p_cooldown integer,
    p_invite_codes text[], p_password text, p_token_hash text, p_inviter bigint,
    p_device text, p_network text
) RETURNS TABLE (
    refusal text, wait integer, user_id bigint, invite_code text, inviter_code text,
    invite_activated_at timestamptz, date_joined timestamptz, is_new boolean,
    code_expires_at timestamptz, session_id bigint
)
LANGUAGE plpgsql AS $$
DECLARE
    v_check record;
    v_user users_user;
    v_new boolean := false;
    v_expires timestamptz;
    v_delivery bigint;
    v_session bigint;
BEGIN
    SELECT * INTO v_check FROM users_check_code(p_phone, p_code_hash, p_max_attempts,
        p_max_failed, p_per_phone, p_attempts, p_cooldown);
    IF v_check.refusal IS NOT NULL THEN
        INSERT INTO users_signinevent (user_id, at, outcome, network, device)
        SELECT u.id, now(), CASE v_check.refusal
                WHEN 'phone_locked' THEN 'too_many_attempts'
                WHEN 'dead_code' THEN 'too_many_attempts'
                ELSE v_check.refusal END,
            coalesce(p_network, ''), coalesce(p_device, '')
        FROM users_user u WHERE u.phone = p_phone;
        RETURN QUERY SELECT v_check.refusal, v_check.wait, NULL::bigint, NULL, NULL,
            NULL::timestamptz, NULL::timestamptz, NULL::boolean, NULL::timestamptz,
            NULL::bigint;
        RETURN;
    END IF;

    SELECT * INTO v_user FROM users_user u WHERE u.phone = p_phone;
    IF v_user.id IS NOT NULL THEN
        IF NOT v_user.is_active THEN
            INSERT INTO users_signinevent (user_id, at, outcome, network, device)
            VALUES (v_user.id, now(), 'disabled', coalesce(p_network, ''),
                coalesce(p_device, ''));
            RETURN QUERY SELECT 'disabled', 0, NULL::bigint, NULL, NULL,
                NULL::timestamptz, NULL::timestamptz, NULL::boolean, NULL::timestamptz,
                NULL::bigint;
            RETURN;
        END IF;
        UPDATE users_user SET last_login = now() WHERE id = v_user.id;
    ELSE
        v_user := users_create_user(p_phone, p_password, p_invite_codes, p_inviter, true);
        IF v_user.id IS NULL THEN
            RETURN QUERY SELECT 'no_invite_code', 0, NULL::bigint, NULL, NULL,
                NULL::timestamptz, NULL::timestamptz, NULL::boolean, NULL::timestamptz,
                NULL::bigint;
            RETURN;
        END IF;
        v_new := true;
    END IF;

    DELETE FROM users_otpchallenge c WHERE c.id = v_check.challenge_id
    RETURNING c.expires_at, c.delivery_id INTO v_expires, v_delivery;
    UPDATE users_delivery SET verified_at = now() WHERE id = v_delivery AND verified_at IS NULL;
    INSERT INTO users_session (user_id, created_at, last_used_at, ended_at, device, network)
    VALUES (v_user.id, now(), now(), NULL, coalesce(p_device, ''), coalesce(p_network, ''))
    RETURNING id INTO v_session;
    INSERT INTO users_refreshtoken (token_hash, user_id, session_id, created_at, revoked_at,
        rotated)
    VALUES (p_token_hash, v_user.id, v_session, now(), NULL, false);
    INSERT INTO users_signinevent (user_id, at, outcome, network, device, session_id)
    VALUES (v_user.id, now(), 'signed_in', coalesce(p_network, ''), coalesce(p_device, ''),
        v_session);
    RETURN QUERY SELECT NULL::text, 0, v_user.id, v_user.invite_code::text,
        (SELECT i.invite_code::text FROM users_user i WHERE i.id = v_user.invited_by_id),
        v_user.invite_activated_at, v_user.date_joined, v_new OR v_check.was_new_user,
        v_expires, v_session;
END
$$;

-- A sign-in that was made, but whose answer never reached the person: the request
-- had given up waiting for the database (or the person left) before it committed.
-- Its session and refresh token, which nobody holds, end, and its code is put back, unless
-- a newer send has replaced it, so that the same verifyCode, repeated within the
-- code's lifetime, answers this sign-in with fresh tokens instead of CODE_EXPIRED.
CREATE OR REPLACE FUNCTION users_keep_unanswered_sign_in(
    p_phone text, p_code_hash text, p_expires_at timestamptz, p_user_id bigint,
    p_new_user boolean, p_token_hash text
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users_session SET ended_at = now() WHERE ended_at IS NULL AND id = (
        SELECT session_id FROM users_refreshtoken WHERE token_hash = p_token_hash
    );
    UPDATE users_refreshtoken SET revoked_at = now()
    WHERE token_hash = p_token_hash AND revoked_at IS NULL;
    IF p_expires_at > now() THEN
        INSERT INTO users_otpchallenge (phone, code_hash, created_at, expires_at, attempts,
            unanswered_user_id, unanswered_new_user)
        VALUES (p_phone, p_code_hash, now(), p_expires_at, 0, p_user_id, p_new_user)
        ON CONFLICT (phone) DO NOTHING;
    END IF;
END
$$;
