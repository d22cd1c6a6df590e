"""What became of every SMS: the delivery log, the providers' receipts, a provider slower
than SMS_TIMEOUT, and SMS pumping stopped by what it looks like. Through real servers:
uvicorn as operators run it, and the providers on loopback (pytest-httpserver)."""

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import LogEntry
from django.db.models.functions import Now
from django.test import Client
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Response

from tests.servers import FAST_SIGN_IN, graphql, graphql_data, http, served, start_server
from users import sms
from users.models import BlockedPrefix, Delivery, User
from users.services.housekeeping import purge_expired

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-auth-token-for-receipts"
SECRET = "whsec_" + base64.b64encode(b"webhook-secret-for-receipts-32by").decode()
RECEIPTS_URL = "https://api.example.test"
TWILIO_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
SEND = """mutation($phone: String!) { sendCode(phone: $phone) {
  phone retryAfter debugCode userErrors { code field retryAfter } } }"""
VERIFY = """mutation($phone: String!, $code: String!) { verifyCode(phone: $phone, code: $code) {
  token isNewUser userErrors { code } } }"""


def twilio_signature(token, url, form):
    """X-Twilio-Signature as Twilio documents it (webhooks security): base64 of the
    HMAC-SHA1, keyed with the auth token, of the URL then each field's name and value,
    sorted by name. Written here from the document, not from the code under test."""
    signed = url + "".join(name + value for name, value in sorted(form.items()))
    digest = hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# Twilio's published example (its security document and helper libraries' tests).
EXAMPLE_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
EXAMPLE_FORM = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
EXAMPLE_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_receipts_are_checked_with_twilios_own_example(settings):
    assert twilio_signature("12345", EXAMPLE_URL, EXAMPLE_FORM) == EXAMPLE_SIGNATURE
    settings.TWILIO_AUTH_TOKEN = "12345"
    form = {name: [value] for name, value in EXAMPLE_FORM.items()}
    assert sms.twilio_signature(EXAMPLE_URL, form) == EXAMPLE_SIGNATURE


@pytest.fixture
def provider():
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def twilio_env(provider, **more):
    return {
        **FAST_SIGN_IN,
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": "+15005550006",
        "TWILIO_API_URL": provider.url_for("/").rstrip("/"),
        "SMS_RECEIPTS_URL": RECEIPTS_URL,
        **more,
    }


def delivery_of(phone):
    return Delivery.objects.get(phone=phone)


def snapshot(delivery):
    delivery.refresh_from_db()
    return (delivery.status, delivery.delivered_at, delivery.failed_at, delivery.error_code)


async def twilio_receipt(server, form, *, token=TOKEN, signed=True):
    body = urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        callback = RECEIPTS_URL + "/sms/receipts/twilio"
        headers["X-Twilio-Signature"] = twilio_signature(token, callback, form)
    return await http(server.url, "POST", "/sms/receipts/twilio", body, headers)


@served
def test_twilio_receipts_move_a_delivery_forward_and_bad_ones_change_nothing(provider):
    sent_forms = []

    def messages(request):
        sent_forms.append(request.form.to_dict())
        sid = f"SM{len(sent_forms):032x}"
        return Response(json.dumps({"sid": sid, "status": "queued"}), 201)

    provider.expect_request(TWILIO_PATH, method="POST").respond_with_handler(messages)
    phone = "+375291234567"
    with start_server(twilio_env(provider)) as server:

        async def scenario():
            sent = (await graphql_data(server.url, SEND, {"phone": phone}))["sendCode"]
            assert sent["userErrors"] == [] and sent["debugCode"] is None
            [form] = sent_forms
            assert form["StatusCallback"] == RECEIPTS_URL + "/sms/receipts/twilio"
            delivery = await asyncio.to_thread(delivery_of, phone)
            assert (delivery.status, delivery.message_id) == ("sent", "SM" + "0" * 31 + "1")
            assert delivery.country == "BY" and delivery.prefix == "+375291"
            receipt = {"MessageSid": delivery.message_id, "AccountSid": ACCOUNT}

            # Unsigned, signed with another token, for a message not ours, malformed.
            refused = [
                await twilio_receipt(server, {**receipt, "MessageStatus": "failed"}, signed=False),
                await twilio_receipt(
                    server, {**receipt, "MessageStatus": "failed"}, token="not-the-token"
                ),
                await twilio_receipt(
                    server, {**receipt, "MessageSid": "SM" + "f" * 32, "MessageStatus": "failed"}
                ),
                await twilio_receipt(server, {**receipt, "MessageStatus": "teleported"}),
            ]
            assert [r.status for r in refused] == [403, 403, 404, 400]
            assert (await asyncio.to_thread(snapshot, delivery))[0] == "sent"

            delivered = await twilio_receipt(server, {**receipt, "MessageStatus": "delivered"})
            assert delivered.status == 204
            status, delivered_at, _, _ = await asyncio.to_thread(snapshot, delivery)
            assert status == "delivered" and delivered_at is not None

            # Late and out of order: a status only moves forward.
            for late in ("sent", "queued", "undelivered"):
                answer = await twilio_receipt(server, {**receipt, "MessageStatus": late})
                assert answer.status == 204
            assert await asyncio.to_thread(snapshot, delivery) == (
                "delivered",
                delivered_at,
                None,
                "",
            )

        asyncio.run(scenario())


def webhook_env(provider):
    return {
        **FAST_SIGN_IN,
        "SMS_BACKEND": "webhook",
        "SMS_WEBHOOK_URL": provider.url_for("/hooks/sms"),
        "SMS_WEBHOOK_SECRET": SECRET,
    }


async def webhook_receipt(server, payload, *, secret=SECRET, at=None, signed=True):
    body = json.dumps(payload)
    headers = {"Content-Type": "application/json"}
    if signed:
        at = at or datetime.now(UTC)
        receipt_id = f"rcpt_{time.monotonic_ns()}"
        headers |= {
            "webhook-id": receipt_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(receipt_id, at, body),
        }
    return await http(server.url, "POST", "/sms/receipts/webhook", body.encode(), headers)


@served
def test_webhook_receipts_are_signed_fresh_and_move_forward(provider):
    ids = []

    def gateway(request):
        ids.append(request.headers["webhook-id"])
        return Response(status=204)

    provider.expect_request("/hooks/sms", method="POST").respond_with_handler(gateway)
    phone = "+375291234568"
    other = base64.b64encode(b"another-secret-another-secret-32").decode()
    with start_server(webhook_env(provider)) as server:

        async def scenario():
            sent = (await graphql_data(server.url, SEND, {"phone": phone}))["sendCode"]
            assert sent["userErrors"] == []
            delivery = await asyncio.to_thread(delivery_of, phone)
            assert (delivery.status, delivery.message_id) == ("sent", ids[0])
            stale = datetime.now(UTC) - timedelta(minutes=10)
            refused = [
                await webhook_receipt(server, {"id": ids[0], "status": "failed"}, signed=False),
                await webhook_receipt(
                    server, {"id": ids[0], "status": "failed"}, secret=f"whsec_{other}"
                ),
                await webhook_receipt(server, {"id": ids[0], "status": "failed"}, at=stale),
                await webhook_receipt(server, {"id": "msg_not_ours", "status": "failed"}),
                await webhook_receipt(server, {"id": ids[0], "status": "teleported"}),
            ]
            assert [r.status for r in refused] == [403, 403, 403, 404, 400]
            assert (await asyncio.to_thread(snapshot, delivery))[0] == "sent"
            answer = await webhook_receipt(
                server, {"id": ids[0], "status": "undelivered", "error": "30003"}
            )
            assert answer.status == 204
            again = await webhook_receipt(server, {"id": ids[0], "status": "delivered"})
            assert again.status == 204  # too late: the first final status stays
            status, delivered_at, failed_at, error = await asyncio.to_thread(snapshot, delivery)
            assert (status, delivered_at, error) == ("undelivered", None, "30003")
            assert failed_at is not None

        asyncio.run(scenario())


@served
def test_a_provider_slower_than_the_deadline_leaves_the_code_live(provider):
    """It may have taken the message: the person is told DELIVERY_DELAYED, and the code
    the SMS carries signs them in when it arrives."""
    bodies, answered = [], threading.Event()

    def slow(request):
        bodies.append(request.form["Body"])
        answered.wait(30)  # until the API has answered: later than SMS_TIMEOUT
        return Response(json.dumps({"sid": "SM" + "a" * 32}), 201)

    provider.expect_request(TWILIO_PATH, method="POST").respond_with_handler(slow)
    phone = "+375291234569"
    with start_server(twilio_env(provider, SMS_TIMEOUT="0.5")) as server:

        async def scenario():
            try:
                sent = (await graphql_data(server.url, SEND, {"phone": phone}))["sendCode"]
            finally:
                answered.set()
            [error] = sent["userErrors"]
            assert error["code"] == "DELIVERY_DELAYED" and error["field"] == "phone"
            assert error["retryAfter"] >= 0
            delivery = await asyncio.to_thread(delivery_of, phone)
            assert delivery.status == "unknown"
            code = bodies[0].removeprefix("Your code: ")[:4]
            verified = (await graphql_data(server.url, VERIFY, {"phone": phone, "code": code}))[
                "verifyCode"
            ]
            assert verified["userErrors"] == [] and verified["isNewUser"]
            await asyncio.to_thread(delivery.refresh_from_db)
            assert delivery.verified_at is not None

        asyncio.run(scenario())


# SMS pumping

PUMPED = [f"+375299{n:06d}" for n in range(300)]  # one prefix: +375299
NORMAL = [f"+37544{n:07d}" for n in range(50)] + [f"+37533{n:07d}" for n in range(50)]


def report(name, figures):
    print(f"\n[{name}] " + ", ".join(f"{key}={value}" for key, value in figures.items()))


@served
def test_a_pumping_run_is_blocked_by_its_prefix_and_normal_sign_ins_are_not():
    """Through two workers: 300 sends to one prefix that nobody verifies, beside 100
    sign-ins on other prefixes that do. The prefix is blocked once the rule has seen
    SMS_PUMPING_MIN_SENDS of its sends; no normal sign-in is refused; the block lasts
    SMS_PUMPING_BLOCK seconds by the database's clock, and once they are over the
    prefix's numbers get codes again (the block's end is moved to now rather than waited
    for, so that a slow run on a loaded machine cannot outlast it)."""
    env = {
        **FAST_SIGN_IN,
        "SMS_PUMPING_MIN_SENDS": "50",
        "SMS_PUMPING_BLOCK": "600",
        "TRUSTED_PROXIES": "127.0.0.1",  # the run comes from many addresses
    }
    figures = {}
    with start_server(env, workers=2) as server:

        def forwarded(n):
            return {"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"}

        async def pump(phones, offset):
            answers = []
            for n, phone in enumerate(phones):
                answer = await graphql(
                    server.url, SEND, {"phone": phone}, headers=forwarded(offset + n)
                )
                answers.append(answer.json()["data"]["sendCode"])
            return answers

        async def sign_in(phones, offset):
            refused = []
            for n, phone in enumerate(phones):
                headers = forwarded(offset + n)
                sent = (await graphql(server.url, SEND, {"phone": phone}, headers=headers)).json()
                sent = sent["data"]["sendCode"]
                if sent["userErrors"]:
                    refused.append((phone, sent["userErrors"]))
                    continue
                code = sent["debugCode"]
                verified = await graphql_data(server.url, VERIFY, {"phone": phone, "code": code})
                if verified["verifyCode"]["userErrors"]:
                    refused.append((phone, verified["verifyCode"]["userErrors"]))
            return refused

        async def scenario():
            started = time.monotonic()
            pumps = [pump(PUMPED[i::10], 1000 + i * 30) for i in range(10)]
            normal = [sign_in(NORMAL[i::5], 2000 + i * 20) for i in range(5)]
            results = await asyncio.gather(*pumps, *normal)
            pumped = [answer for answers in results[:10] for answer in answers]
            refused = [refusal for refusals in results[10:] for refusal in refusals]
            codes = [[e["code"] for e in answer["userErrors"]] for answer in pumped]
            figures["pumped_sends_delivered"] = codes.count([])
            figures["pumped_sends_refused"] = codes.count(["REGION_NOT_ALLOWED"])
            figures["normal_sign_ins_refused"] = len(refused)
            assert refused == []
            assert set(map(tuple, codes)) == {(), ("REGION_NOT_ALLOWED",)}
            # Blocked once the rule saw 50 sends, give or take the ten sends in flight.
            assert 50 <= codes.count([]) <= 50 + 10

            figures["run_s"] = round(time.monotonic() - started, 1)

        async def another():
            sent = await graphql_data(server.url, SEND, {"phone": "+375299900001"})
            return [e["code"] for e in sent["sendCode"]["userErrors"]]

        asyncio.run(scenario())
        # Still blocked, for SMS_PUMPING_BLOCK seconds from when it began.
        assert asyncio.run(another()) == ["REGION_NOT_ALLOWED"]
        (block,) = BlockedPrefix.objects.all()
        assert block.until - block.blocked_at == timedelta(seconds=600), block
        # Its time over (moved to now), the prefix's numbers get codes again.
        BlockedPrefix.objects.filter(pk=block.pk).update(until=Now())
        assert asyncio.run(another()) == []
    report("SMS pumping", figures)


# Who still gets codes: numbers with an account, test numbers


def known(api, phone):
    """A number whose account has signed in: what the reserve and blocks spare."""
    api.sign_in(phone)
    return phone


def sent_codes(api, phones):
    return [[e["code"] for e in api.send(phone)["userErrors"]] for phone in phones]


def test_past_the_service_cap_numbers_with_an_account_draw_on_the_reserve(api, settings):
    settings.OTP_MAX_SENDS_TOTAL = 4
    settings.OTP_MAX_SENDS_RESERVE = 2
    members = [known(api, f"+37529100000{n}") for n in range(3)]  # 3 of the hour's 4 sends
    assert sent_codes(api, ["+375291999991", "+375291999992"]) == [[], ["RATE_LIMITED"]]
    assert sent_codes(api, members) == [[], [], ["RATE_LIMITED"]]  # the reserve's 2, then none


def test_a_blocked_prefix_still_serves_accounts_and_test_numbers(api, settings):
    settings.SMS_PUMPING_MIN_SENDS = 50
    settings.OTP_TEST_NUMBERS = {"+375291555555": "1234"}
    member = known(api, "+375291000001")
    BlockedPrefix.objects.create(prefix="+375291", until=None)  # pinned by staff
    assert sent_codes(api, ["+375291234567", member, "+375291555555"]) == [
        ["REGION_NOT_ALLOWED"],
        [],
        [],
    ]
    assert sent_codes(api, ["+375292234567"]) == [[]]  # the next prefix is not blocked


@pytest.mark.django_db(transaction=True)  # each request its own transaction, and time
def test_staff_lift_and_pin_a_block_and_the_admin_log_says_so(api, settings):
    settings.SMS_PUMPING_MIN_SENDS = 50
    staff = User.objects.create_superuser("+375291112233", "a-long-admin-password")
    client = Client()
    client.force_login(staff)
    block = BlockedPrefix.objects.create(prefix="+375291")
    block.until = datetime.now(UTC) + timedelta(hours=1)
    block.save()
    assert sent_codes(api, ["+375291234567"]) == [["REGION_NOT_ALLOWED"]]
    page = client.get("/admin/users/blockedprefix/")
    assert page.status_code == 200 and "+375291" in page.content.decode()

    def act(action):
        answer = client.post(
            "/admin/users/blockedprefix/",
            {"action": action, "_selected_action": [block.pk]},
        )
        assert answer.status_code == 302

    act("lift")
    assert sent_codes(api, ["+375291234568"]) == [[]]
    act("pin")
    block.refresh_from_db()
    assert block.until is None
    assert sent_codes(api, ["+375291234569"]) == [["REGION_NOT_ALLOWED"]]
    logged = LogEntry.objects.filter(object_id=str(block.pk)).values_list("change_message")
    assert sorted(message for (message,) in logged) == ["Lifted the block.", "Pinned the block."]


def test_the_delivery_log_shows_masked_phones_and_a_chart(api, settings):
    staff = User.objects.create_superuser("+375291112233", "a-long-admin-password")
    api.sign_in("+375291234567")
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/users/delivery/").content.decode()
    assert "+**********67" in page and "+375291234567" not in page
    assert "<svg" in page and "SMS per hour" in page
    found = client.get("/admin/users/delivery/", {"q": "+375291234567"}).content.decode()
    assert "+**********67" in found  # staff find a number's SMS by the whole number


def test_old_deliveries_are_purged(api, settings):
    api.sign_in("+375291234567")
    Delivery.objects.update(created_at=datetime.now(UTC) - timedelta(days=31))
    api.sign_in("+375291234568")
    assert purge_expired()["deliveries"] == 1
    assert list(Delivery.objects.values_list("phone", flat=True)) == ["+375291234568"]


@served
def test_a_failing_provider_texts_one_number_once_per_cooldown_from_any_address(provider):
    """SMS bombing through a provider that answers 500: 20 tries at one number from 20
    addresses reach the provider with one message (and its one retry), not 20."""
    posts = []

    def failing(request):
        posts.append(request.form["To"])
        return Response("busy", 500)

    provider.expect_request(TWILIO_PATH, method="POST").respond_with_handler(failing)
    env = twilio_env(provider, OTP_RESEND_COOLDOWN="60", TRUSTED_PROXIES="127.0.0.1")
    phone = "+375291234560"
    with start_server(env) as server:

        async def scenario():
            codes = []
            for n in range(20):
                headers = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
                answer = await graphql(server.url, SEND, {"phone": phone}, headers=headers)
                codes.append([e["code"] for e in answer.json()["data"]["sendCode"]["userErrors"]])
            return codes

        codes = asyncio.run(scenario())
    assert codes == [["DELIVERY_FAILED"]] + [["RATE_LIMITED"]] * 19
    assert posts == [phone, phone]  # one message, retried once on the 500
