"""Sending codes through a provider: failed deliveries, refused regions, the service's cap."""

import asyncio
import logging

import pytest

from tests import sms_backends
from tests.conftest import SEND, VERIFY, Api, at_once, concurrent, error_codes
from tests.servers import SEND as SERVER_SEND
from tests.servers import graphql, served, start_server
from users.models import OtpChallenge, RateLimit, SendTotal

PHONE = "+375291234567"


def hits(key):
    row = RateLimit.objects.filter(key=key).first()
    return [] if row is None else row.hits


def test_a_failed_delivery_voids_the_code_and_spares_the_hourly_count_not_the_cooldown(
    api, settings
):
    settings.OTP_RESEND_COOLDOWN = 60
    settings.OTP_MAX_SENDS_PER_PHONE = 1
    settings.SMS_BACKEND = "tests.sms_backends.Refusing"
    failed = api.send(PHONE, REMOTE_ADDR="203.0.113.5")
    assert error_codes(failed) == ["DELIVERY_FAILED"]
    error = failed["userErrors"][0]
    assert error["field"] == "phone" and 55 <= error["retryAfter"] <= 60  # the cooldown
    assert failed["phone"] is None and failed["expiresAt"] is None
    assert not OtpChallenge.objects.filter(phone=PHONE).exists()  # void at once
    assert hits(f"send:phone:{PHONE}") == []  # the hourly count forgot it
    assert len(hits(f"try:phone:{PHONE}")) == 1  # the attempt is remembered
    assert len(hits("send:ip:203.0.113.5")) == 1  # the address's count grows
    assert sum(SendTotal.objects.values_list("count", flat=True)) == 1  # so does the service's
    settings.SMS_BACKEND = "simulated"
    again = api.send(PHONE, REMOTE_ADDR="198.51.100.7")  # another address changes nothing
    assert error_codes(again) == ["RATE_LIMITED"] and again["userErrors"][0]["retryAfter"] > 50
    settings.OTP_RESEND_COOLDOWN = 0  # the cooldown over: the one send of the hour is still free
    sent = api.send(PHONE, REMOTE_ADDR="203.0.113.5")
    assert sent["userErrors"] == []
    assert api.verify(PHONE, sent["debugCode"])["userErrors"] == []


def test_a_failing_provider_texts_one_number_at_most_the_attempts_ceiling(api, settings):
    """SMS bombing through a failing provider: from ever new addresses, with no cooldown,
    the number gets OTP_MAX_DELIVERIES_PER_PHONE attempts an hour, whatever it answers."""
    settings.OTP_RESEND_COOLDOWN = 0
    settings.OTP_MAX_DELIVERIES_PER_PHONE = 4
    settings.SMS_BACKEND = "tests.sms_backends.Refusing"
    sms_backends.refused.clear()
    answers = [api.send(PHONE, REMOTE_ADDR=f"203.0.113.{i}") for i in range(10)]
    assert [error_codes(a) for a in answers] == [["DELIVERY_FAILED"]] * 4 + [["RATE_LIMITED"]] * 6
    assert sms_backends.refused == [PHONE] * 4


def test_the_code_of_a_failed_delivery_can_never_be_guessed(api, settings, monkeypatch):
    from users.services import codes

    monkeypatch.setattr(codes, "draw_code", lambda: "4321")
    settings.SMS_BACKEND = "tests.sms_backends.Refusing"
    assert error_codes(api.send(PHONE)) == ["DELIVERY_FAILED"]
    assert error_codes(api.verify(PHONE, "4321")) == ["CODE_EXPIRED"]


def test_numbers_outside_the_allowed_regions_are_refused_before_any_count(api, settings):
    settings.SMS_ALLOWED_REGIONS = ["BY"]
    settings.SMS_BACKEND = "tests.sms_backends.Recording"
    sms_backends.sent.clear()
    refused = api.send("+79161234567")
    assert error_codes(refused) == ["REGION_NOT_ALLOWED"]
    assert refused["userErrors"][0]["field"] == "phone"
    assert not RateLimit.objects.exists() and not SendTotal.objects.exists()
    assert sms_backends.sent == []
    assert api.send(PHONE)["userErrors"] == []
    assert [phone for phone, _, _ in sms_backends.sent] == [PHONE]


def test_the_service_wide_cap_refuses_past_it_and_warns_once(api, settings, caplog):
    settings.OTP_MAX_SENDS_TOTAL = 3
    for i in range(3):
        assert api.send(f"+37529123456{i}")["userErrors"] == []
    with caplog.at_level(logging.WARNING, logger="users.services.codes"):
        for i in range(3, 5):
            limited = api.send(f"+37529123456{i}")
            assert error_codes(limited) == ["RATE_LIMITED"]
            assert 0 < limited["userErrors"][0]["retryAfter"] <= 3600
    warnings = [r for r in caplog.records if "OTP_MAX_SENDS_TOTAL" in r.getMessage()]
    assert len(warnings) == 1
    assert OtpChallenge.objects.count() == 3


def test_the_code_goes_out_in_the_persons_language(api, settings):
    settings.SMS_BACKEND = "tests.sms_backends.Recording"
    sms_backends.sent.clear()
    api.send(PHONE, HTTP_ACCEPT_LANGUAGE="ru-RU,ru;q=0.9,en;q=0.8")
    api.send("+375291234568", HTTP_ACCEPT_LANGUAGE="de-DE")
    assert [locale for _, _, locale in sms_backends.sent] == ["ru", "en"]


@pytest.mark.parametrize(
    "language, message",
    [("ru", "Неверный код. Проверьте SMS и попробуйте ещё раз."), ("en", "Wrong code.")],
)
def test_user_errors_speak_the_requests_language_and_codes_do_not_change(api, language, message):
    sent = api.send(PHONE)
    wrong = "0000" if sent["debugCode"] != "0000" else "1111"
    body = api.post(VERIFY, {"phone": PHONE, "code": wrong}, HTTP_ACCEPT_LANGUAGE=language)
    error = body["data"]["verifyCode"]["userErrors"][0]
    assert error["code"] == "INVALID_CODE" and error["field"] == "code"
    assert error["message"].startswith(message)


@concurrent
def test_the_service_wide_cap_holds_under_concurrent_sends(settings):
    settings.OTP_MAX_SENDS_TOTAL = 20
    results = at_once(40, lambda i: Api().data(SEND, {"phone": f"+3752912{i:05d}"})["sendCode"])
    assert sum(r["userErrors"] == [] for r in results) == 20
    assert sum(SendTotal.objects.values_list("count", flat=True)) == 20


@served
def test_the_cap_and_failed_deliveries_hold_across_two_workers():
    """Concurrent sends through two uvicorn workers: the service's cap is exact, and
    failed deliveries leave no code and no phone count behind."""
    env = {"OTP_MAX_SENDS_TOTAL": "10", "OTP_MAX_SENDS_PER_IP": "1000", "SMS_SIMULATED_DELAY": "0"}

    async def burst(url, phones):
        answers = await asyncio.gather(*(graphql(url, SERVER_SEND, {"phone": p}) for p in phones))
        return [a.json()["data"]["sendCode"] for a in answers]

    with start_server(env, workers=2) as server:
        capped = asyncio.run(burst(server.url, [f"+3752913{i:05d}" for i in range(30)]))
    assert sum(a["userErrors"] == [] for a in capped) == 10
    assert {a["userErrors"][0]["code"] for a in capped if a["userErrors"]} == {"RATE_LIMITED"}

    failing = {**env, "OTP_MAX_SENDS_TOTAL": "1000", "SMS_BACKEND": "tests.sms_backends.Refusing"}
    phones = [f"+3752914{i:05d}" for i in range(20)]
    with start_server(failing, workers=2) as server:
        failed = asyncio.run(burst(server.url, phones))
    assert {a["userErrors"][0]["code"] for a in failed} == {"DELIVERY_FAILED"}
    assert not OtpChallenge.objects.filter(phone__in=phones).exists()
    assert all(hits(f"send:phone:{phone}") == [] for phone in phones)
    assert len(hits("send:ip:127.0.0.1")) == 30  # 10 + 20: the address counts every send
