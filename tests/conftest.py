"""Fixtures: a GraphQL client over HTTP, signed-in users and a way to run requests at once."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from users.models import User
from users.tokens import issue_tokens

SEND = """mutation($phone: String!) { sendCode(phone: $phone) {
  phone expiresAt retryAfter debugCode userErrors { code field message retryAfter } } }"""
VERIFY = """mutation($phone: String!, $code: String!, $invite: String) {
  verifyCode(phone: $phone, code: $code, inviteCode: $invite) {
    token tokenExpiresAt refreshToken isNewUser
    profile { id phone inviteCode activatedInviteCode inviteActivatedAt dateJoined }
    userErrors { code field message retryAfter } } }"""
ACTIVATE = """mutation($code: String!) { activateInvite(inviteCode: $code) {
  profile { phone activatedInviteCode inviteActivatedAt } userErrors { code field message } } }"""
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


@pytest.fixture(autouse=True)
def fast_sms(settings):
    settings.SMS_SIMULATED_DELAY = 0
    settings.OTP_RESEND_COOLDOWN = 0
    settings.OTP_MAX_SENDS_PER_PHONE = 1000
    settings.OTP_MAX_SENDS_PER_IP = 1000


@pytest.fixture
def api(db):
    return Api()


_phones = iter(range(1_000_000))


def new_phone():
    return f"+37533{next(_phones):07d}"


@pytest.fixture
def make_user(db):
    """A user and an access token for them, without going through SMS."""

    def make(phone=None, **fields):
        user = User.objects.create_user(phone or new_phone(), **fields)
        return user, issue_tokens(user).token

    return make


def concurrent(test):
    """Mark a test that runs real concurrent transactions: PostgreSQL only (CI's database)."""
    test = pytest.mark.django_db(transaction=True)(test)
    return pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="concurrent transactions need PostgreSQL: set DATABASE_URL",
    )(test)


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
