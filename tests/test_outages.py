"""A database that restarts or freezes: the first requests after it are served, and a
sign-in that committed while its answer said SERVICE_UNAVAILABLE is not lost.

Each test runs uvicorn as operators do against a PostgreSQL cluster of its own
(tests/servers.py throwaway_postgres), never the shared server.
"""

import asyncio

import psycopg
import pytest

from tests.servers import (
    FAST_SIGN_IN,
    ME,
    graphql,
    graphql_data,
    http,
    new_phone,
    send_code,
    sign_in,
    start_server,
    throwaway_postgres,
    top_error_code,
)

VERIFY = """mutation($phone: String!, $code: String!) { verifyCode(phone: $phone, code: $code) {
  token refreshToken isNewUser userErrors { code } } }"""


@pytest.fixture
def cluster():
    with throwaway_postgres() as running:
        yield running


async def until_ready(url, attempts=200):
    for _ in range(attempts):
        if (await http(url, "GET", "/readyz")).status == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("/readyz never answered 200")


def test_after_a_database_restart_the_first_requests_are_served(cluster):
    """Every pooled connection dies with a restart; each is found out as it leaves the
    pool and replaced, so no request after the restart gets SERVICE_UNAVAILABLE."""
    with start_server({**FAST_SIGN_IN, "DATABASE_URL": cluster.url}) as server:

        async def scenario():
            token = await sign_in(server.url, new_phone())
            await asyncio.gather(*[graphql(server.url, ME, token=token) for _ in range(20)])
            cluster.restart()
            await until_ready(server.url)
            answers = [await graphql(server.url, ME, token=token) for _ in range(68)]
            refused = [a for a in answers if a.status != 200 or top_error_code(a)]
            errors = [line for line in server.log.splitlines() if '"ERROR"' in line]
            assert refused == [], f"{len(refused)} of 68 refused after the restart: {errors}"

        asyncio.run(scenario())


def test_a_sign_in_answered_unavailable_is_answered_again_by_the_same_code(cluster):
    """The database freezes while eight first sign-ins run: they answer SERVICE_UNAVAILABLE.
    It thaws, and those that had reached it commit. Whichever happened, the same
    verifyCode then signs each person in, as the new user they are, with fresh tokens;
    the tokens nobody received are revoked, and the code is single use again after."""
    env = {**FAST_SIGN_IN, "DATABASE_URL": cluster.url, "DATABASE_TIMEOUT": "2"}
    with start_server(env) as server:

        async def verify(phone, code):
            variables = {"phone": phone, "code": code}
            return (await graphql_data(server.url, VERIFY, variables))["verifyCode"]

        async def scenario():
            phones = [new_phone() for _ in range(8)]
            codes = await asyncio.gather(*[send_code(server.url, phone) for phone in phones])
            with cluster.frozen():
                lost = await asyncio.gather(
                    *[
                        graphql(server.url, VERIFY, {"phone": p, "code": c}, timeout=15)
                        for p, c in zip(phones, codes, strict=True)
                    ]
                )
            assert {top_error_code(answer) for answer in lost} == {"SERVICE_UNAVAILABLE"}, lost

            with psycopg.connect(cluster.url, autocommit=True) as database:
                # The sign-ins that were under way commit when it thaws, and each is kept
                # for its retry: wait until the server's connections are all idle and
                # every user made has their code put back.
                for _ in range(400):
                    busy, users, kept = database.execute(
                        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname ="
                        " current_database() AND pid <> pg_backend_pid() AND state <> 'idle'),"
                        " (SELECT count(*) FROM users_user),"
                        " (SELECT count(*) FROM users_otpchallenge"
                        "  WHERE unanswered_user_id IS NOT NULL)"
                    ).fetchone()
                    if not busy and kept and kept == users:
                        break
                    await asyncio.sleep(0.05)
                assert kept and kept == users, (busy, users, kept)

            for phone, code in zip(phones, codes, strict=True):
                again = await verify(phone, code)
                assert again["userErrors"] == [] and again["token"] and again["isNewUser"], again
                once_more = await verify(phone, code)
                assert [error["code"] for error in once_more["userErrors"]] == ["CODE_EXPIRED"]

            with psycopg.connect(cluster.url, autocommit=True) as database:
                rows = database.execute(
                    "SELECT u.phone, count(t.id), count(t.id) FILTER (WHERE t.revoked_at IS NULL)"
                    " FROM users_user u JOIN users_refreshtoken t ON t.user_id = u.id"
                    " GROUP BY u.phone"
                ).fetchall()
            assert sorted(phone for phone, _, _ in rows) == sorted(phones)  # one user each
            assert {live for _, _, live in rows} == {1}  # the retry's tokens only
            assert sum(tokens == 2 for _, tokens, _ in rows) >= kept  # the lost ones, revoked

        asyncio.run(scenario())
