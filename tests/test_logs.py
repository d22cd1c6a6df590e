"""Logs: with DEBUG off every line is one JSON object, one access line per request, and no
line holds a token, a code or a whole phone number.

The served test signs in through uvicorn started as operators run it and reads all it
wrote. Its phone is in OTP_TEST_NUMBERS, so nothing is delivered and no backend logs
the code (the simulated and console backends do, on purpose).
"""

import asyncio
import json
import logging
import re
import subprocess
import sys

from backend import logs
from tests.servers import PROJECT_ROOT, graphql, http, served, start_server

PHONE = "+375291234567"
CODE = "7305"
WRONG_CODE = "8642"

SEND = "mutation Send($phone: String!) { sendCode(phone: $phone) { phone userErrors { code } } }"
VERIFY = """mutation Verify($phone: String!, $code: String!) {
  verifyCode(phone: $phone, code: $code) { token refreshToken userErrors { code } } }"""
ME = "query Me { me { id phone inviteCode } }"
REFRESH = """mutation Refresh($token: String!) {
  refreshToken(refreshToken: $token) { token refreshToken userErrors { code } } }"""


def contains_code(line: str, code: str) -> bool:
    """`code` as a number of its own, not inside a longer number or a hex request id."""
    return re.search(rf"(?<![0-9a-fA-F]){code}(?![0-9a-fA-F])", line) is not None


@served
def test_every_line_is_json_and_holds_no_token_code_or_phone():
    env = {
        "OTP_TEST_NUMBERS": f"{PHONE}:{CODE}",
        "TRUSTED_PROXIES": "127.0.0.1",
        "SMS_SIMULATED_DELAY": "0",
    }
    proxy = {"X-Forwarded-For": "198.51.100.23", "X-Request-ID": "lb-7f3a-0001"}

    async def session(url: str) -> dict:
        seen = {}
        sent = await graphql(url, SEND, {"phone": PHONE}, headers=proxy)
        seen["request id echoed"] = sent.headers.get("x-request-id")
        assert sent.json()["data"]["sendCode"]["userErrors"] == [], sent
        wrong = await graphql(url, VERIFY, {"phone": PHONE, "code": WRONG_CODE})
        seen["made id"] = wrong.headers.get("x-request-id")
        assert wrong.json()["data"]["verifyCode"]["userErrors"][0]["code"] == "INVALID_CODE"
        verified = (await graphql(url, VERIFY, {"phone": PHONE, "code": CODE})).json()
        signed_in = verified["data"]["verifyCode"]
        assert signed_in["token"], verified
        me = (await graphql(url, ME, token=signed_in["token"])).json()
        assert me["data"]["me"]["phone"] == PHONE, me
        anonymous = (await graphql(url, ME)).json()
        assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        refreshed = await graphql(url, REFRESH, {"token": signed_in["refreshToken"]})
        rotated = refreshed.json()["data"]["refreshToken"]
        assert rotated["token"], refreshed
        seen["secrets"] = [
            signed_in["token"],
            signed_in["refreshToken"],
            rotated["token"],
            rotated["refreshToken"],
        ]
        return seen

    with start_server(env) as server:
        seen = asyncio.run(session(server.url))
        health = asyncio.run(http(server.url, "GET", "/healthz"))
    lines = [line for line in server.log.splitlines() if line.strip()]

    problems = []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            problems.append(f"not JSON: {line[:200]}")
            continue
        for secret in seen["secrets"]:
            if secret in line:
                problems.append(f"a token: {line[:200]}")
        if PHONE.lstrip("+") in line:
            problems.append(f"the whole phone: {line[:200]}")
        if contains_code(line, CODE) or contains_code(line, WRONG_CODE):
            problems.append(f"a code: {line[:200]}")
    assert not problems, "\n".join(problems)

    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
    access = [entry for entry in entries if entry["logger"] == "access"]
    by_operation = {entry["operation"]: entry for entry in access if entry["operation"]}
    assert set(by_operation) == {"Send", "Verify", "Me", "Refresh"}, access

    send = by_operation["Send"]
    assert send["request_id"] == seen["request id echoed"] == "lb-7f3a-0001"
    assert send["client"] == "198.51.100.23"  # from the trusted proxy's X-Forwarded-For
    assert (send["method"], send["path"], send["status"]) == ("POST", "/graphql/", 200)
    assert send["outcomes"] == [] and isinstance(send["duration_ms"], float)

    verify_lines = [entry for entry in access if entry["operation"] == "Verify"]
    assert [entry["outcomes"] for entry in verify_lines] == [["INVALID_CODE"], []]
    assert verify_lines[0]["request_id"] == seen["made id"]
    assert re.fullmatch(r"[0-9a-f]{32}", seen["made id"])
    assert [entry["outcomes"] for entry in access if entry["operation"] == "Me"] == [
        [],
        ["UNAUTHENTICATED"],
    ]
    probe = [entry for entry in access if entry["request_id"] == health.headers["x-request-id"]]
    assert probe and probe[0]["operation"] is None and probe[0]["path"] == "/healthz"
    # uvicorn's own lines are JSON too; its access log (with query strings) is off.
    assert any(entry["logger"] == "uvicorn.error" for entry in entries)
    assert not any(entry["logger"] == "uvicorn.access" for entry in entries)


def test_json_lines_mask_phones_and_tokens_and_carry_the_request():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    refresh = "ab" * 32
    record = logging.LogRecord(
        "schema", logging.ERROR, __file__, 1, "failed for %s with %s", (PHONE, jwt), None
    )
    try:
        raise ValueError(f'Key (phone)=({PHONE}) already exists; token "{refresh}"')
    except ValueError:
        record.exc_info = sys.exc_info()
    request = logs.RequestLog(request_id="r1", method="POST", path="/graphql/", client="::1")
    token = logs.begin(request)
    try:
        entry = json.loads(logs.JsonFormatter().format(record))
    finally:
        logs.end(token)
    assert entry["message"] == "failed for +**********67 with [token]"
    assert PHONE not in entry["exception"] and refresh not in entry["exception"]
    assert "+**********67" in entry["exception"] and "ValueError" in entry["exception"]
    assert (entry["request_id"], entry["path"], entry["client"]) == ("r1", "/graphql/", "::1")
    assert entry["level"] == "ERROR" and entry["logger"] == "schema"
    assert "request_id" not in json.loads(logs.JsonFormatter().format(record))


def test_debug_keeps_plain_lines():
    script = (
        "import logging, django; django.setup(); "
        "logging.getLogger('users.sms').info('plain %s', 'line')"
    )
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "backend.settings"}
    ran = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = ran.stderr.strip().splitlines()[-1]
    assert line.endswith("INFO users.sms plain line") and not line.startswith("{"), ran.stderr
