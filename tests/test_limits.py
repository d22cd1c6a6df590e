"""The limits that protect accounts and the SMS bill, and the GraphQL limits."""

import json
import logging
import secrets

import pytest
from django.db import OperationalError
from django.test import Client

from tests.conftest import (
    ME,
    SEND,
    Api,
    asgi_graphql,
    at_once,
    concurrent,
    error_codes,
    top_error_code,
)
from users import selectors
from users.models import OtpChallenge
from users.services import codes

# Every test twice: with the execution short cut and without it (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("short_cut")


def wrong_code(sent):
    return "0000" if sent["debugCode"] != "0000" else "1111"


def test_one_code_per_phone_per_cooldown(api, settings):
    settings.OTP_RESEND_COOLDOWN = 60
    first = api.send("+375291234567")
    assert first["retryAfter"] == 60
    again = api.send("+375 29 123 45 67")
    assert error_codes(again) == ["RATE_LIMITED"]
    assert 0 < again["userErrors"][0]["retryAfter"] <= 60
    assert again["debugCode"] is None
    assert api.send("+375291234568")["userErrors"] == []  # other phones are not held up


def test_at_most_so_many_sends_per_phone_per_hour(api, settings):
    settings.OTP_MAX_SENDS_PER_PHONE = 3
    for _ in range(3):
        assert api.send("+375291234567")["userErrors"] == []
    limited = api.send("+375291234567")
    assert error_codes(limited) == ["RATE_LIMITED"]
    assert 3500 < limited["userErrors"][0]["retryAfter"] <= 3600


@pytest.mark.parametrize(
    "one_client, other_client",
    [
        (["203.0.113.5"] * 4, "203.0.113.6"),
        # IPv6: one subscriber's /64 counts as one address.
        (
            ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3", "2001:db8:1:2:ffff::9"],
            "2001:db8:1:3::1",
        ),
    ],
)
def test_at_most_so_many_sends_per_client_address(api, settings, one_client, other_client):
    settings.OTP_MAX_SENDS_PER_IP = 3
    for i, address in enumerate(one_client[:3]):
        assert api.send(f"+37529123456{i}", REMOTE_ADDR=address)["userErrors"] == []
    limited = api.send("+375291234569", REMOTE_ADDR=one_client[3])
    assert error_codes(limited) == ["RATE_LIMITED"]
    assert api.send("+375291234569", REMOTE_ADDR=other_client)["userErrors"] == []


def sent_through_edge(phone, peer, forwarded_for):
    answer = asgi_graphql(
        SEND,
        {"phone": phone},
        headers=[("x-forwarded-for", forwarded_for)],
        client=(peer, 50000),
    )
    return answer["data"]["sendCode"]


@pytest.mark.django_db(transaction=True)
def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(settings):
    settings.OTP_MAX_SENDS_PER_IP = 2
    for i in range(2):
        sent = sent_through_edge(f"+37529123456{i}", "203.0.113.9", f"198.51.100.{i}")
        assert sent["userErrors"] == []
    spoofed = sent_through_edge("+375291234569", "203.0.113.9", "198.51.100.9")
    assert error_codes(spoofed) == ["RATE_LIMITED"]


@pytest.mark.django_db(transaction=True)
def test_behind_a_trusted_proxy_the_forwarded_address_counts(settings):
    settings.OTP_MAX_SENDS_PER_IP = 2
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # The right-most address that is not a trusted proxy is the client; what the
    # client itself wrote in the header (to the left) is not believed.
    for i in range(2):
        header = f"1.2.3.{i}, 198.51.100.7, 10.0.0.3"
        assert sent_through_edge(f"+37529123456{i}", "10.0.0.2", header)["userErrors"] == []
    same_client = sent_through_edge("+375291234562", "10.0.0.2", "9.9.9.9, 198.51.100.7")
    assert error_codes(same_client) == ["RATE_LIMITED"]
    other_client = sent_through_edge("+375291234563", "10.0.0.2", "198.51.100.8")
    assert other_client["userErrors"] == []


def test_wrong_guesses_kill_the_code(api, settings):
    settings.OTP_RESEND_COOLDOWN = 60
    sent = api.send("+375291234567")
    for _ in range(5):
        assert error_codes(api.verify("+375291234567", wrong_code(sent))) == ["INVALID_CODE"]
    for code in [wrong_code(sent), sent["debugCode"]]:
        dead = api.verify("+375291234567", code)
        assert error_codes(dead) == ["TOO_MANY_ATTEMPTS"]
        assert 0 < dead["userErrors"][0]["retryAfter"] <= 60
    settings.OTP_RESEND_COOLDOWN = 0
    fresh = api.send("+375291234567")
    assert api.verify("+375291234567", fresh["debugCode"])["userErrors"] == []


def test_a_dead_code_stays_too_many_attempts_after_it_expires(api, settings):
    sent = api.send("+375291234567")
    for _ in range(5):
        api.verify("+375291234567", wrong_code(sent))
    OtpChallenge.objects.update(expires_at="2000-01-01T00:00:00Z")
    assert error_codes(api.verify("+375291234567", sent["debugCode"])) == ["TOO_MANY_ATTEMPTS"]


def test_failed_guesses_per_phone_are_capped_across_new_codes(api, settings):
    settings.OTP_MAX_FAILED_PER_PHONE = 7
    failures = 0
    while failures < 7:
        sent = api.send("+375291234567")
        for _ in range(min(5, 7 - failures)):
            assert error_codes(api.verify("+375291234567", wrong_code(sent))) == ["INVALID_CODE"]
            failures += 1
    blocked = api.verify("+375291234567", sent["debugCode"])  # even the right code
    assert error_codes(blocked) == ["TOO_MANY_ATTEMPTS"]
    assert 86000 < blocked["userErrors"][0]["retryAfter"] <= 86400
    # A new code would not reset the count, so none is sent: the answer says why.
    refused = api.send("+375291234567")
    assert error_codes(refused) == ["TOO_MANY_ATTEMPTS"] and refused["debugCode"] is None
    assert refused["userErrors"][0]["field"] == "phone"
    assert 86000 < refused["userErrors"][0]["retryAfter"] <= 86400
    assert api.sign_in("+375291234568")["isNewUser"] is True  # other phones are not


def test_test_numbers_are_rate_limited_too(api, settings):
    settings.OTP_TEST_NUMBERS = {"+15005550006": "1234"}
    settings.OTP_RESEND_COOLDOWN = 60
    assert api.send("+15005550006")["userErrors"] == []
    assert error_codes(api.send("+15005550006")) == ["RATE_LIMITED"]


# Real concurrent transactions (PostgreSQL in CI).


@concurrent
def test_simultaneous_sends_for_one_phone_issue_one_code(settings):
    settings.OTP_RESEND_COOLDOWN = 60
    results = at_once(30, lambda i: Api().send("+375291234567"))
    sent = [r for r in results if r["userErrors"] == []]
    assert len(sent) == 1
    assert all(error_codes(r) == ["RATE_LIMITED"] for r in results if r not in sent)


@concurrent
def test_simultaneous_sends_never_pass_the_hourly_limit(settings):
    settings.OTP_MAX_SENDS_PER_PHONE = 5
    assert Api().send("+375291234567")["userErrors"] == []  # the counter exists already
    results = at_once(30, lambda i: Api().send("+375291234567"))
    assert sum(r["userErrors"] == [] for r in results) == 4


@concurrent
def test_simultaneous_wrong_guesses_are_checked_at_most_max_attempts_times():
    sent = Api().send("+375291234567")
    results = at_once(40, lambda i: Api().verify("+375291234567", wrong_code(sent)))
    codes = [tuple(error_codes(r)) for r in results]
    assert codes.count(("INVALID_CODE",)) == 5
    assert codes.count(("TOO_MANY_ATTEMPTS",)) == 35
    assert OtpChallenge.objects.get().attempts == 5


# GraphQL limits


def test_depth_is_limited(api, make_user, settings):
    _, token = make_user(is_staff=True)
    # The deepest query the schema allows (7) is well inside the limit of 10...
    deepest = "{ users { edges { node { referrals { edges { node { phone } } } } } } }"
    assert "errors" not in api.post(deepest, token=token)
    # ...which is enforced: with a lower limit the same query is a validation error.
    settings.GRAPHQL_MAX_DEPTH = 5
    body = api.post(deepest, token=token)
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]


def test_aliases_are_limited(api, make_user):
    _, token = make_user()
    fifteen = " ".join(f"a{i}: me {{ phone }}" for i in range(15))
    assert "errors" not in api.post("{ " + fifteen + " }", token=token)
    sixteen = fifteen + " a15: me { phone }"
    assert "aliases" in api.post("{ " + sixteen + " }", token=token)["errors"][0]["message"]


def test_tokens_are_limited(api):
    fields = " ".join(["__typename"] * 2100)
    body = api.post("{ " + fields + " }")
    assert "token" in body["errors"][0]["message"].lower() and body["data"] is None


def test_batched_operations_are_refused_and_none_runs(db):
    batch = [{"query": SEND, "variables": {"phone": "+375291234567"}}] * 2
    response = Client().post("/graphql/", json.dumps(batch), content_type="application/json")
    assert response.status_code == 400
    assert not OtpChallenge.objects.exists()


def test_mutations_only_over_post(db):
    response = Client().get(
        "/graphql/", {"query": 'mutation { sendCode(phone: "+375291234567") { phone } }'}
    )
    assert response.status_code in (400, 405)
    assert not OtpChallenge.objects.exists()


def test_introspection_and_graphiql_follow_graphiql_setting(api, settings):
    settings.GRAPHIQL = False
    assert api.post("{ __schema { queryType { name } } }")["errors"]
    page = Client().get("/graphql/", HTTP_ACCEPT="text/html")
    assert b"graphiql" not in page.content.lower()
    settings.GRAPHIQL = True
    assert (
        api.data("{ __schema { queryType { name } } }")["__schema"]["queryType"]["name"] == "Query"
    )
    page = Client().get("/graphql/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"graphiql" in page.content.lower()


def test_unexpected_errors_are_logged_and_hidden(api, make_user, monkeypatch, caplog, settings):
    settings.DEBUG = False
    _, token = make_user()

    def broken(**kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(selectors, "referral_pages", broken)
    with caplog.at_level(logging.ERROR, logger="schema"):
        body = api.post(ME, token=token)
    assert body["errors"][0]["message"] == "Internal server error"
    assert top_error_code(body) == "INTERNAL_SERVER_ERROR"
    assert "secret detail" not in json.dumps(body)
    assert "secret detail" in caplog.text and "Traceback" in caplog.text


def test_a_database_that_does_not_answer_is_service_unavailable(api, monkeypatch):
    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(codes, "issue_code", down)
    body = api.post(SEND, {"phone": "+375291234567"})
    assert top_error_code(body) == "SERVICE_UNAVAILABLE"
    assert "connection refused" not in json.dumps(body)


def test_health_and_readiness(db, monkeypatch):
    assert Client().get("/healthz").status_code == 200
    assert Client().get("/readyz").status_code == 200
    from backend import health

    async def down():
        return False

    monkeypatch.setattr(health, "database_answers", down)
    assert Client().get("/readyz").status_code == 503


def test_a_field_repeated_past_the_limit_is_refused_before_validation(api, monkeypatch):
    from schema import limits

    validated = []
    monkeypatch.setattr(limits, "validate", lambda *args: validated.append(1) or [])
    hostile = "query Q123 { " + " ".join(["me { id }"] * 494) + " }"
    body = api.post(hostile)
    assert "'me' is selected 494 times" in body["errors"][0]["message"]
    assert body.get("data") is None and validated == []
    twenty = "{ " + " ".join(["me { id }"] * 20) + " }"
    assert "'me' is selected" not in json.dumps(api.post(twenty))


def test_renaming_an_operation_does_not_validate_it_again(api, monkeypatch):
    from schema import limits

    calls = []
    real = limits.validate
    monkeypatch.setattr(limits, "validate", lambda *args: calls.append(1) or real(*args))
    limits._validate.cache_clear()
    run = secrets.token_hex(4)  # texts no earlier run has sent (they are cached too)
    for name in ["A", "B", "C"]:
        api.post(f"query {name}{run} {{ me {{ id phone }} }}")
    assert len(calls) == 1


def test_no_field_suggestions_without_graphiql(api, settings):
    settings.GRAPHIQL = False
    message = api.post("{ mee { id } }")["errors"][0]["message"]
    assert message == "Cannot query field 'mee' on type 'Query'."
    settings.GRAPHIQL = True
    assert "Did you mean 'me'?" in api.post("{ mee { phone } }")["errors"][0]["message"]
