"""Two servers on one database, one with its clock three minutes ahead (Debian's
libfaketime on that process): the cooldown, the hourly caps and the codes' expiry hold
exactly as on one server, because every window and expiry is the database's clock."""

import asyncio
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from tests.servers import FAST_SIGN_IN, graphql_data, http, new_phone, served, start_server

LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), Path("libfaketime"))
SKEW = 180
SEND = """mutation($phone: String!) { sendCode(phone: $phone) {
  expiresAt debugCode userErrors { code retryAfter } } }"""
VERIFY = """mutation($phone: String!, $code: String!) { verifyCode(phone: $phone, code: $code) {
  token userErrors { code } } }"""


async def send(server, phone):
    return (await graphql_data(server.url, SEND, {"phone": phone}))["sendCode"]


async def verify(server, phone, code):
    variables = {"phone": phone, "code": code}
    return (await graphql_data(server.url, VERIFY, variables))["verifyCode"]


async def clock(server):
    """The server's own clock, from its Date header."""
    return parsedate_to_datetime((await http(server.url, "GET", "/healthz")).headers["date"])


def refused(answer):
    [error] = answer["userErrors"]
    return error["code"], error["retryAfter"]


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs Debian's faketime (libfaketime)")
@served
def test_a_server_whose_clock_is_ahead_enforces_the_same_limits_and_expiry():
    env = {
        **FAST_SIGN_IN,
        "OTP_RESEND_COOLDOWN": "60",
        "OTP_TTL": "120",
        "OTP_MAX_SENDS_PER_IP": "3",
    }
    ahead_env = {
        **env,
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": f"+{SKEW}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # asyncio's timers keep real time
    }
    with start_server(env) as on_time, start_server(ahead_env) as ahead:

        async def scenario():
            skew = (await clock(ahead)) - (await clock(on_time))
            assert SKEW - 5 <= skew.total_seconds() <= SKEW + 5, skew  # the setup itself

            # The cooldown, both ways round.
            one, two, three = new_phone(), new_phone(), new_phone()
            assert (await send(on_time, one))["userErrors"] == []
            code, wait = refused(await send(ahead, one))
            assert code == "RATE_LIMITED" and 50 <= wait <= 60
            assert (await send(ahead, two))["userErrors"] == []
            code, wait = refused(await send(on_time, two))
            assert code == "RATE_LIMITED" and 50 <= wait <= 60

            # A code sent by one lives its 120 s on the other.
            sent = await send(on_time, three)
            assert (await verify(ahead, three, sent["debugCode"]))["userErrors"] == []

            # The address's hourly count: its third send was the last; both wait an hour.
            for server in (ahead, on_time):
                code, wait = refused(await send(server, new_phone()))
                assert code == "RATE_LIMITED" and 3590 <= wait <= 3600, (server.url, wait)

        asyncio.run(scenario())
