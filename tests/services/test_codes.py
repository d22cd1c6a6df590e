"""users.services.codes called directly: issuing, voiding, sending and checking codes."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from tests import sms_backends
from users.errors import DomainError, ErrorCode, Forbidden
from users.models import OtpChallenge, RefreshToken, User
from users.services import codes, tokens

PHONE = "+375291234567"


def issue(phone=PHONE):
    return codes.issue_code(phone=phone, client_key="203.0.113.5")


def refusal(call, *args, **kwargs) -> ErrorCode:
    with pytest.raises(DomainError) as refused:
        call(*args, **kwargs)
    return refused.value.code


def test_issue_code_stores_a_code_the_phone_can_sign_in_with(db, settings):
    settings.OTP_RESEND_COOLDOWN = 60
    issued = issue()
    assert len(issued.code) == 4 and issued.code.isascii() and issued.code.isdigit()
    assert issued.expires_at > issued.created_at and issued.retry_after == 60
    assert issued.delivery_id is not None  # the delivery log has its row
    assert refusal(issue) == ErrorCode.RATE_LIMITED  # the send was counted
    assert codes.verify_code(phone=PHONE, code=issued.code).is_new_user


def test_issue_code_gives_a_test_number_its_fixed_code_and_no_delivery(db, settings):
    settings.OTP_TEST_NUMBERS = {"+15005550006": "1234"}
    issued = issue("+15005550006")
    assert (issued.code, issued.delivery_id) == ("1234", None)


def test_void_code_deletes_the_code_and_gives_the_send_back(db, settings):
    settings.OTP_MAX_SENDS_PER_PHONE = 1
    issued = issue()
    assert codes.void_code(phone=PHONE, issued=issued, error="30003") == 0
    assert not OtpChallenge.objects.exists()
    assert issue().code  # the hour's one send was given back


@pytest.mark.django_db(transaction=True)  # each send its own transaction, its own now()
def test_void_code_leaves_a_newer_code_of_the_phone_alone():
    """A delivery that fails after the person already asked again must not take the
    newer code with it."""
    failed = issue()
    newer = issue()
    assert newer.created_at > failed.created_at
    codes.void_code(phone=PHONE, issued=failed, error="30003")
    assert codes.verify_code(phone=PHONE, code=newer.code).is_new_user


async def in_place(fn, /, **kwargs):
    """Off the event loop as the API runs it, without the API: on a thread, whose
    connection goes back to the pool after each piece of work."""

    def work():
        try:
            return fn(**kwargs)
        finally:
            connection.close()

    return await sync_to_async(work)()


def send(phone=PHONE):
    return asyncio.run(codes.send_code(phone=phone, client_key=None, off_loop=in_place))


@pytest.mark.django_db(transaction=True)  # its database work runs on another thread
def test_send_code_delivers_and_the_simulated_backend_returns_the_code():
    sent = send("+375 29 123-45-67")
    assert sent.phone == PHONE and sent.debug_code is not None
    assert codes.verify_code(phone=PHONE, code=sent.debug_code).is_new_user


@pytest.mark.django_db(transaction=True)
def test_send_code_refused_by_the_provider_is_delivery_failed_and_voids_the_code(settings):
    settings.SMS_BACKEND = "tests.sms_backends.Refusing"
    assert refusal(send) == ErrorCode.DELIVERY_FAILED
    assert sms_backends.refused[-1] == PHONE
    assert not OtpChallenge.objects.exists()


def test_send_code_outside_the_allowed_regions_touches_nothing(settings):
    settings.SMS_ALLOWED_REGIONS = ["RU"]

    async def never(fn, /, **kwargs):
        raise AssertionError("no database work for a refused region")

    with pytest.raises(DomainError) as refused:
        asyncio.run(codes.send_code(phone=PHONE, client_key=None, off_loop=never))
    assert refused.value.code == ErrorCode.REGION_NOT_ALLOWED


def test_verify_code_creates_the_user_once_and_signs_them_in(db):
    first = codes.verify_code(phone=PHONE, code=issue().code)
    again = codes.verify_code(phone="+375 29 123 45 67", code=issue().code)
    assert first.is_new_user and not again.is_new_user
    assert first.user.pk == again.user.pk == User.objects.get().pk
    assert RefreshToken.objects.filter(user=first.user.pk).count() == 2


def test_verify_code_counts_a_wrong_code(db):
    issued = issue()
    wrong = "0000" if issued.code != "0000" else "1111"
    assert refusal(codes.verify_code, phone=PHONE, code=wrong) == ErrorCode.INVALID_CODE
    assert OtpChallenge.objects.get().attempts == 1  # kept although it was a refusal


def test_verify_code_with_a_refused_invite_creates_nobody_and_keeps_the_code(db):
    issued = issue()
    refused = refusal(codes.verify_code, phone=PHONE, code=issued.code, invite_code="ZZZZZZ")
    assert refused == ErrorCode.INVITE_NOT_FOUND
    assert not User.objects.exists()
    assert codes.verify_code(phone=PHONE, code=issued.code, invite_code="  ").is_new_user


def test_verify_code_with_an_invite_makes_its_owner_the_inviter(db):
    inviter = User.objects.create_user("+375291111111")
    signed_in = codes.verify_code(phone=PHONE, code=issue().code, invite_code=inviter.invite_code)
    assert User.objects.get(pk=signed_in.user.pk).invited_by == inviter


def test_verify_code_refuses_a_disabled_account(db):
    User.objects.create_user(PHONE, is_active=False)
    with pytest.raises(Forbidden):
        codes.verify_code(phone=PHONE, code=issue().code)


def test_keep_unanswered_revokes_the_lost_tokens_and_lets_the_same_code_sign_in(db):
    issued = issue()
    lost = codes.verify_code(phone=PHONE, code=issued.code)
    codes.keep_unanswered(lost)
    refused = refusal(tokens.rotate, refresh_token=lost.tokens.refresh_token)
    assert refused == ErrorCode.INVALID_TOKEN
    retried = codes.verify_code(phone=PHONE, code=issued.code)
    assert retried.user.pk == lost.user.pk and retried.is_new_user  # as the lost answer said
