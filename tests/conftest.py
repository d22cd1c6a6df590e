"""Fixtures: a GraphQL client over HTTP, signed-in users and a way to run requests at once."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from users.models import User
from users.services import tokens

SEND = """mutation($phone: String!) { sendCode(phone: $phone) {
  phone expiresAt retryAfter debugCode userErrors { code field message retryAfter } } }"""
VERIFY = """mutation($phone: String!, $code: String!, $invite: String) {
  verifyCode(phone: $phone, code: $code, inviteCode: $invite) {
    token tokenExpiresAt refreshToken isNewUser
    profile { id phone inviteCode activatedInviteCode inviteActivatedAt dateJoined }
    userErrors { code field message retryAfter } } }"""
ACTIVATE = """mutation($code: String!) { activateInvite(inviteCode: $code) {
  profile { phone activatedInviteCode inviteActivatedAt }
  userErrors { code field message retryAfter } } }"""
ME = """query($first: Int! = 50, $after: String) { me {
  id phone inviteCode activatedInviteCode inviteActivatedAt dateJoined
  referrals(first: $first, after: $after) {
    totalCount edges { cursor node { phone activatedAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }"""


class Api:
    """Posts GraphQL to /graphql/ as a single-page app would."""

    def __init__(self, client=None):
        self.client = client or Client()

    def post(self, query, variables=None, *, token=None, **extra):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        response = self.client.post(
            "/graphql/",
            json.dumps({"query": query, "variables": variables or {}}),
            content_type="application/json",
            **headers,
            **extra,
        )
        assert response.status_code == 200, response.content
        return response.json()

    def data(self, query, variables=None, **kwargs):
        body = self.post(query, variables, **kwargs)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def send(self, phone, **extra):
        return self.data(SEND, {"phone": phone}, **extra)["sendCode"]

    def verify(self, phone, code, invite=None, **extra):
        variables = {"phone": phone, "code": code, "invite": invite}
        return self.data(VERIFY, variables, **extra)["verifyCode"]

    def sign_in(self, phone, invite=None):
        sent = self.send(phone)
        assert sent["userErrors"] == [], sent
        signed_in = self.verify(phone, sent["debugCode"], invite)
        assert signed_in["userErrors"] == [], signed_in
        return signed_in

    def activate(self, token, code):
        return self.data(ACTIVATE, {"code": code}, token=token)["activateInvite"]

    def me(self, token, **variables):
        return self.data(ME, variables, token=token)["me"]


def error_codes(payload):
    return [error["code"] for error in payload["userErrors"]]


def top_error_code(body):
    return body["errors"][0]["extensions"]["code"]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Create and drop the test database without the server-side statement timeout:
    a DROP DATABASE waits for a checkpoint, which on a busy machine takes longer.
    Servers the tests start keep every timeout."""
    from django.conf import settings

    settings.DATABASES["default"].get("OPTIONS", {}).pop("options", None)


@pytest.fixture(autouse=True)
def fast_sms(settings):
    settings.SMS_SIMULATED_DELAY = 0
    settings.OTP_RESEND_COOLDOWN = 0
    settings.OTP_MAX_SENDS_PER_PHONE = 1000
    settings.OTP_MAX_DELIVERIES_PER_PHONE = 1000
    settings.OTP_MAX_SENDS_PER_IP = 1000
    settings.SMS_PUMPING_MIN_SENDS = 0  # tests send many codes they never use


@pytest.fixture
def api(db):
    return Api()


@pytest.fixture(params=["short-cut-on", "short-cut-off"])
def short_cut(request, settings):
    """The test once with the execution short cut (schema/execution.py) and once with
    graphql-core's execution alone: the API modules use it, so every answer they check
    is checked both ways."""
    from schema import execution
    from schema.schema import schema

    on = request.param == "short-cut-on"
    if on and schema.execution_context_class is not execution.ExecutionContext:
        why = execution.unsupported_graphql_core() or "GRAPHQL_SHORT_CUT=0 at start"
        pytest.skip(f"the short cut is off in this process: {why}")
    settings.GRAPHQL_SHORT_CUT = on
    return on


_phones = iter(range(1_000_000))


def new_phone():
    return f"+37533{next(_phones):07d}"


@pytest.fixture
def make_user(db):
    """A user and an access token of a new session of theirs, without going through SMS."""

    def make(phone=None, **fields):
        user = User.objects.create_user(phone or new_phone(), **fields)
        return user, tokens.issue(user=user).token

    return make


def concurrent(test):
    """Mark a test that runs real concurrent transactions, each thread on a connection of
    its own: the data must be committed, so the test database is emptied after it."""
    return pytest.mark.django_db(transaction=True)(test)


def at_once(count, fn, *args):
    """Run fn(i, *args) in `count` threads released together; each gets its own connection."""
    barrier = threading.Barrier(count)

    def run(i):
        try:
            barrier.wait(timeout=30)
            return fn(i, *args)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def asgi_request(method, path, body=b"", headers=(), client=("127.0.0.1", 50000), then=None):
    """One request through the whole ASGI application, edge included, as a server passes it.

    Returns (status, headers, body). Views run their database work on other threads,
    so tests using this need committed data: django_db(transaction=True). `then`: an
    async function awaited once the application has answered, on the same event loop,
    for what the request left running.
    """
    from backend.asgi import application

    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"localhost")]
        + [(name.lower().encode(), value.encode()) for name, value in headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # no disconnect until the response is done

    async def send(message):
        sent.append(message)

    async def call():
        task = asyncio.ensure_future(application(scope, receive, send))
        await task
        if then is not None:
            await then()

    asyncio.run(call())
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), content


def asgi_graphql(query, variables=None, *, headers=(), client=("127.0.0.1", 50000)):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    status, _, content = asgi_request(
        "POST", "/graphql/", body, [("content-type", "application/json"), *headers], client
    )
    assert status == 200, content
    return json.loads(content)
