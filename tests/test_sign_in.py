"""Signing in with a phone number and a one-time code, through the GraphQL API."""

import asyncio
import hashlib
import json
import re
from datetime import datetime, timedelta
from types import SimpleNamespace

import jwt
import pytest
from django.test import AsyncClient
from django.utils import timezone

from tests import sms_backends
from tests.conftest import ME, VERIFY, Api, at_once, concurrent, error_codes, top_error_code
from users import access_tokens
from users.hashing import token_hash
from users.models import OtpChallenge, RefreshToken, User
from users.services import codes

# Every test twice: with the execution short cut and without it (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("short_cut")


def test_send_code_normalises_the_phone_and_returns_the_simulated_code(api):
    sent = api.send("+375 (29) 123-45-67")
    assert sent["phone"] == "+375291234567"
    assert re.fullmatch(r"[0-9]{4}", sent["debugCode"])
    assert datetime.fromisoformat(sent["expiresAt"]) > datetime.now().astimezone()
    assert sent["userErrors"] == []


def test_first_sign_in_creates_the_user_with_an_invite_code(api):
    signed_in = api.sign_in("+375291234567")
    assert signed_in["isNewUser"] is True
    assert signed_in["token"] and signed_in["refreshToken"]
    profile = signed_in["profile"]
    assert profile["phone"] == "+375291234567"
    assert re.fullmatch(r"[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}", profile["inviteCode"])
    assert profile["activatedInviteCode"] is None
    assert api.me(signed_in["token"])["phone"] == "+375291234567"


def test_every_spelling_of_a_number_is_one_user(api):
    first = api.sign_in("+375291234567")
    again = api.sign_in("+375 29 123.45.67")
    assert again["isNewUser"] is False
    assert again["profile"]["id"] == first["profile"]["id"]
    assert User.objects.count() == 1


def test_wrong_code_is_refused(api):
    sent = api.send("+375291234567")
    wrong = "0000" if sent["debugCode"] != "0000" else "1111"
    result = api.verify("+375291234567", wrong)
    assert error_codes(result) == ["INVALID_CODE"]
    assert result["userErrors"][0]["field"] == "code"
    assert result["token"] is None and result["profile"] is None
    assert not User.objects.exists()


def test_a_code_works_once(api):
    sent = api.send("+375291234567")
    assert api.verify("+375291234567", sent["debugCode"])["userErrors"] == []
    assert error_codes(api.verify("+375291234567", sent["debugCode"])) == ["CODE_EXPIRED"]


def test_no_code_sent_is_code_expired(api):
    assert error_codes(api.verify("+375291234567", "1234")) == ["CODE_EXPIRED"]


def test_an_expired_code_is_refused(api, settings):
    settings.OTP_TTL = 0
    sent = api.send("+375291234567")
    assert error_codes(api.verify("+375291234567", sent["debugCode"])) == ["CODE_EXPIRED"]


def test_a_new_code_replaces_the_old_one(api, monkeypatch):
    drawn = iter(["1111", "2222"])
    monkeypatch.setattr(codes, "draw_code", lambda: next(drawn))
    assert api.send("+375291234567")["debugCode"] == "1111"
    assert api.send("+375291234567")["debugCode"] == "2222"
    assert error_codes(api.verify("+375291234567", "1111")) == ["INVALID_CODE"]
    assert api.verify("+375291234567", "2222")["userErrors"] == []
    assert OtpChallenge.objects.count() == 0


def test_the_stored_code_does_not_give_the_code_away(api):
    """Someone who reads the table cannot find a live code by hashing the 10,000 there
    are, with or without the phone: what is stored needs the server's key."""
    code = api.send("+375291234567")["debugCode"]
    stored = OtpChallenge.objects.get().code_hash
    candidates = [f"{n:04d}" for n in range(10_000)]
    spellings = ("{code}", "+375291234567{code}", "+375291234567:{code}", "{code}+375291234567")
    for digest in (hashlib.sha256, hashlib.sha1, hashlib.md5):
        for spelling in spellings:
            hashes = {digest(spelling.format(code=c).encode()).hexdigest() for c in candidates}
            assert stored not in hashes
    assert stored != code


def test_send_code_answers_alike_for_known_and_unknown_phones(api):
    api.sign_in("+375291234567")
    known = api.send("+375291234567")
    unknown = api.send("+375291234568")
    assert known.keys() == unknown.keys()
    assert {k: v is None for k, v in known.items()} == {k: v is None for k, v in unknown.items()}


def test_console_backend_keeps_the_code_out_of_the_response(api, settings):
    settings.SMS_BACKEND = "console"
    sent = api.send("+375291234567")
    assert sent["debugCode"] is None and sent["phone"] == "+375291234567"


def test_test_numbers_use_their_fixed_code_and_deliver_nothing(api, settings):
    settings.OTP_TEST_NUMBERS = {"+15005550006": "1234"}
    settings.SMS_SIMULATED_DELAY = 30  # would hang the test if it were awaited
    sent = api.send("+1 500 555 0006")
    assert sent["debugCode"] is None and sent["userErrors"] == []
    assert api.verify("+15005550006", "1234")["userErrors"] == []


def test_numbers_without_plus_need_a_default_region(api, settings):
    assert error_codes(api.send("80291234567")) == ["INVALID_PHONE"]
    settings.PHONE_DEFAULT_REGION = "BY"
    assert api.send("8 029 123 45 67")["phone"] == "+375291234567"


@pytest.mark.parametrize(
    "phone",
    [
        "",
        "hello",
        "+1-800-FLOWERS",  # keypad letters
        "+375291234567 ext. 12",
        "+375291234567;ext=12",
        "++375291234567",
        "+375+291234567",
        "+375291234567\x00",
        "+37529\n1234567",
        "+37529\u00a01234567",
        "+\u0663\u0667\u0665291234567",  # Arabic-Indic digits
        "+\uff13\uff17\uff15291234567",  # full-width digits
        "+375 29 123 45 67 " + " " * 20,  # longer than 32 characters
        "+1" + "2" * 10_000,
        "+999123456789",  # no such country code
        "+37529123",  # too short
    ],
)
def test_malformed_phones_are_invalid_phone(api, phone):
    result = api.send(phone)
    assert error_codes(result) == ["INVALID_PHONE"]
    assert result["userErrors"][0]["field"] == "phone"
    assert result["phone"] is None and result["debugCode"] is None
    verify = api.verify(phone, "1234")
    assert error_codes(verify) == ["INVALID_PHONE"]


@pytest.mark.parametrize(
    "phone",
    [
        "+78091234567",  # RU premium rate: SMS pumping's payout
        "+3759021234567",  # BY premium rate
        "+78001234567",  # RU toll-free
        "+445612345678",  # GB VoIP
        "+375171234567",  # BY fixed line (Minsk)
    ],
)
def test_codes_go_only_to_numbers_that_can_receive_sms(api, settings, phone):
    settings.SMS_ALLOWED_REGIONS = ["BY", "GB", "RU"]
    refused = api.send(phone)
    assert error_codes(refused) == ["INVALID_PHONE"] and refused["debugCode"] is None
    assert refused["userErrors"][0]["field"] == "phone"
    assert not OtpChallenge.objects.exists()  # nothing issued, nothing counted
    assert error_codes(api.verify(phone, "1234")) == ["INVALID_PHONE"]
    # Mobile numbers, and the US's fixed-line-or-mobile, as before.
    settings.SMS_ALLOWED_REGIONS = []
    for mobile in ("+375291234567", "+79123456789", "+447400123456", "+12015550123"):
        assert api.send(mobile)["userErrors"] == [], mobile


def test_operators_choose_the_number_types_and_test_numbers_always_pass(api, settings):
    settings.SMS_NUMBER_TYPES = ["fixed_line", "mobile"]
    sent = api.send("+375 17 123-45-67")
    assert sent["userErrors"] == [] and sent["phone"] == "+375171234567"
    assert api.sign_in("+375171234567")["profile"]["phone"] == "+375171234567"
    assert error_codes(api.send("+12015550123")) == ["INVALID_PHONE"]  # fixed-line-or-mobile
    # A test number is served whatever its type (+1 500 555 is "personal number").
    settings.OTP_TEST_NUMBERS = {"+15005550006": "1234"}
    assert api.send("+15005550006")["userErrors"] == []


@pytest.mark.parametrize(
    "code",
    [
        "\u0661\u0662\u0663\u0664",
        "\uff11\uff12\uff13\uff14",
        "12345",
        "123",
        "12a4",
        "1\x0034",
        "1" * 10_000,
        "",
    ],
)
def test_codes_are_four_ascii_digits(api, code):
    api.send("+375291234567")
    result = api.verify("+375291234567", code)
    assert error_codes(result) == ["INVALID_CODE"]
    assert result["userErrors"][0]["field"] == "code"


REVOKE = (
    """mutation($t: String!) { revokeToken(refreshToken: $t) { revoked userErrors { code } } }"""
)
REFRESH = """mutation($t: String!) { refreshToken(refreshToken: $t) {
    token refreshToken profile { phone } userErrors { code field } } }"""


def test_refresh_token_rotates(api):
    signed_in = api.sign_in("+375291234567")
    rotated = api.data(REFRESH, {"t": signed_in["refreshToken"]})["refreshToken"]
    assert rotated["userErrors"] == []
    assert rotated["refreshToken"] != signed_in["refreshToken"]
    assert api.me(rotated["token"])["phone"] == "+375291234567"
    # At once, a second use is two tabs refreshing together: the same new refresh token.
    raced = api.data(REFRESH, {"t": signed_in["refreshToken"]})["refreshToken"]
    assert raced["userErrors"] == [] and raced["refreshToken"] == rotated["refreshToken"]
    assert api.me(raced["token"])["phone"] == "+375291234567"
    assert RefreshToken.objects.filter(
        token_hash=token_hash(rotated["refreshToken"]), revoked_at=None
    ).exists()
    # Later, reuse of a rotated token means it was copied: its session ends.
    other_device = api.sign_in("+375291234567")
    RefreshToken.objects.filter(token_hash=token_hash(signed_in["refreshToken"])).update(
        revoked_at=timezone.now() - timedelta(minutes=1)
    )
    reused = api.data(REFRESH, {"t": signed_in["refreshToken"]})["refreshToken"]
    assert error_codes(reused) == ["INVALID_TOKEN"]
    after_reuse = api.data(REFRESH, {"t": rotated["refreshToken"]})["refreshToken"]
    assert error_codes(after_reuse) == ["INVALID_TOKEN"]
    assert top_error_code(api.post(ME, token=rotated["token"])) == "UNAUTHENTICATED"
    # The person's other device stays signed in.
    assert api.me(other_device["token"])["phone"] == "+375291234567"
    kept = api.data(REFRESH, {"t": other_device["refreshToken"]})["refreshToken"]
    assert kept["userErrors"] == []


def test_a_disabled_account_cannot_refresh_its_tokens(api):
    signed_in = api.sign_in("+375291234567")
    User.objects.filter(phone="+375291234567").update(is_active=False)
    refreshed = api.data(REFRESH, {"t": signed_in["refreshToken"]})["refreshToken"]
    assert error_codes(refreshed) == ["INVALID_TOKEN"] and refreshed["token"] is None


def test_revoked_refresh_token_no_longer_refreshes(api):
    signed_in = api.sign_in("+375291234567")
    assert api.data(REVOKE, {"t": signed_in["refreshToken"]})["revokeToken"] == {
        "revoked": True,
        "userErrors": [],
    }
    again = api.data(REVOKE, {"t": signed_in["refreshToken"]})["revokeToken"]
    assert again["revoked"] is False and error_codes(again) == ["INVALID_TOKEN"]
    refreshed = api.data(REFRESH, {"t": signed_in["refreshToken"]})["refreshToken"]
    assert error_codes(refreshed) == ["INVALID_TOKEN"]


@pytest.mark.parametrize("token", ["nonsense", "a" * 300, "\x00", "0" * 64])
def test_unknown_refresh_tokens_are_invalid_token(api, token):
    assert error_codes(api.data(REFRESH, {"t": token})["refreshToken"]) == ["INVALID_TOKEN"]


def test_expired_refresh_token_is_invalid(api, settings):
    signed_in = api.sign_in("+375291234567")
    settings.REFRESH_TOKEN_EXPIRATION = 0
    refreshed = api.data(REFRESH, {"t": signed_in["refreshToken"]})["refreshToken"]
    assert error_codes(refreshed) == ["INVALID_TOKEN"]


def test_access_token_carries_the_user_id_not_the_phone(api):
    signed_in = api.sign_in("+375291234567")
    payload = jwt.decode(signed_in["token"], options={"verify_signature": False})
    assert payload["sub"] == signed_in["profile"]["id"]
    assert "+375291234567" not in json.dumps(payload)
    assert payload["exp"] - payload["iat"] == 900


def _forge(payload, key="a-wrong-key-of-sufficient-length-0123456789", algorithm="HS256"):
    return jwt.encode(payload, key, algorithm=algorithm)


def test_bad_access_tokens_are_unauthenticated(api, make_user, settings):
    user, good = make_user()
    header, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    alg_none = jwt.encode(claims, None, algorithm="none")
    expired = _forge({**claims, "exp": 1_000_000}, key=settings.SECRET_KEY)
    other_user = _forge({**claims, "sub": "999999"}, key=settings.SECRET_KEY)
    no_sub = _forge({"exp": claims["exp"]}, key=settings.SECRET_KEY)
    tampered = f"{header}.{payload[:-2]}xx.{signature}"
    for token in [
        alg_none,
        _forge(claims),
        expired,
        other_user,
        no_sub,
        tampered,
        "garbage",
        "a.b.c",
        "x" * 10_000,
    ]:
        body = api.post(ME, token=token)
        assert top_error_code(body) == "UNAUTHENTICATED", token
    assert api.me(good)["id"] == str(user.pk)


def test_deleted_and_inactive_users_are_unauthenticated(api, make_user):
    gone, gone_token = make_user()
    inactive, inactive_token = make_user()
    gone.delete()
    inactive.is_active = False
    inactive.save()
    assert top_error_code(api.post(ME, token=gone_token)) == "UNAUTHENTICATED"
    assert top_error_code(api.post(ME, token=inactive_token)) == "UNAUTHENTICATED"


def test_only_the_bearer_header_authenticates(api, make_user):
    _, token = make_user()
    assert top_error_code(api.post(ME, HTTP_AUTHORIZATION=f"JWT {token}")) == "UNAUTHENTICATED"
    api.client.cookies["JWT"] = token
    assert top_error_code(api.post(ME)) == "UNAUTHENTICATED"


@pytest.mark.django_db(transaction=True)
def test_the_server_keeps_serving_while_a_code_is_delivered(settings):
    """While sendCode waits on its provider, another request is answered: the delivery
    is awaited, never waited for with the worker held."""
    settings.SMS_BACKEND = "tests.sms_backends.Holding"
    body = json.dumps({"query": 'mutation { sendCode(phone: "+375291234567") { phone } }'})

    async def scenario():
        sms_backends.Holding.taking = asyncio.Event()
        sms_backends.Holding.release = asyncio.Event()
        send = asyncio.ensure_future(
            AsyncClient().post("/graphql/", body, content_type="application/json")
        )
        await sms_backends.Holding.taking.wait()  # the code is with the provider
        health = await AsyncClient().get("/healthz")
        delivering = not send.done()
        sms_backends.Holding.release.set()
        return health, delivering, await send

    health, delivering, sent = asyncio.run(scenario())
    assert health.status_code == 200 and delivering
    assert sent.json()["data"]["sendCode"]["phone"] == "+375291234567"


@concurrent
def test_concurrent_refreshes_with_one_token_rotate_it_once():
    """Each gets the one successor: the tabs of one browser all stay signed in."""
    for round_ in range(5):
        token = Api().sign_in(f"+37529123456{round_}")["refreshToken"]
        results = at_once(8, lambda i, t=token: Api().data(REFRESH, {"t": t})["refreshToken"])
        assert all(r["userErrors"] == [] for r in results)
        assert len({r["refreshToken"] for r in results}) == 1
    assert RefreshToken.objects.filter(revoked_at=None).count() == 5


def test_a_stale_tab_of_a_signed_out_device_does_not_sign_out_the_others(api):
    laptop = api.sign_in("+375291234567")
    phone = api.sign_in("+375291234567")
    assert api.data(REVOKE, {"t": laptop["refreshToken"]})["revokeToken"]["revoked"] is True
    RefreshToken.objects.filter(token_hash=token_hash(laptop["refreshToken"])).update(
        revoked_at=timezone.now() - timedelta(minutes=5)
    )
    stale = api.data(REFRESH, {"t": laptop["refreshToken"]})["refreshToken"]
    assert error_codes(stale) == ["INVALID_TOKEN"]
    still = api.data(REFRESH, {"t": phone["refreshToken"]})["refreshToken"]
    assert still["userErrors"] == [] and still["token"]


def test_refresh_tokens_are_stored_only_as_hashes(api):
    refresh_token = api.sign_in("+375291234567")["refreshToken"]
    stored = RefreshToken.objects.get()
    assert stored.token_hash == token_hash(refresh_token) != refresh_token
    assert refresh_token not in json.dumps(list(RefreshToken.objects.values()), default=str)


def test_an_access_token_without_expiry_is_refused_even_with_the_right_key(
    api, make_user, settings
):
    user, _ = make_user()
    forever = _forge({"sub": str(user.pk), "iat": 1_800_000_000}, key=settings.SECRET_KEY)
    assert top_error_code(api.post(ME, token=forever)) == "UNAUTHENTICATED"


def test_a_disabled_account_is_told_so_not_that_the_code_was_wrong(api, make_user):
    user, _ = make_user(phone="+375291234567")
    user.is_active = False
    user.save()
    sent = api.send("+375291234567")
    body = api.post(VERIFY, {"phone": "+375291234567", "code": sent["debugCode"]})
    assert top_error_code(body) == "FORBIDDEN"
    assert "disabled" in body["errors"][0]["message"]
    assert OtpChallenge.objects.filter(phone="+375291234567").exists()  # nothing written


def test_an_invited_person_refreshes_and_sees_the_code_they_activated(api, make_user):
    inviter, _ = make_user()
    signed_in = api.sign_in("+375291234567", invite=inviter.invite_code)
    refreshed = api.data(REFRESH, {"t": signed_in["refreshToken"]})["refreshToken"]
    assert refreshed["userErrors"] == [] and refreshed["token"]
    assert refreshed["profile"] == {"phone": "+375291234567"}
    profile = api.data(
        """mutation($t: String!) { refreshToken(refreshToken: $t) {
            profile { activatedInviteCode } userErrors { code } } }""",
        {"t": refreshed["refreshToken"]},
    )["refreshToken"]["profile"]
    assert profile == {"activatedInviteCode": inviter.invite_code}


def test_tokens_issued_in_the_same_second_are_distinct(api, monkeypatch):
    """A refresh right after the sign-in (the same second, here the same instant) still
    gives a new access token, and both work."""
    instant = timezone.now()
    monkeypatch.setattr(access_tokens, "timezone", SimpleNamespace(now=lambda: instant))
    signed_in = api.sign_in("+375291234567")
    refreshed = api.data(REFRESH, {"t": signed_in["refreshToken"]})["refreshToken"]
    assert refreshed["userErrors"] == []
    claims = [
        jwt.decode(token, options={"verify_signature": False})
        for token in (signed_in["token"], refreshed["token"])
    ]
    assert claims[0]["iat"] == claims[1]["iat"]
    assert refreshed["token"] != signed_in["token"]
    assert claims[0]["jti"] != claims[1]["jti"]
    for token in (signed_in["token"], refreshed["token"]):
        assert api.me(token)["phone"] == "+375291234567"
