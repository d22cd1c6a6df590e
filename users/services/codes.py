"""One-time codes: issuing and delivering them (sendCode), checking them (verifyCode).

The rules themselves are SQL functions, in users/sql/sign_in.sql (their only text, with
the lock order every transaction follows); this module calls them, turns their refusals
into DomainErrors and awaits the delivery in between. A send is refused, before any
counter or provider is touched, for a number outside SMS_ALLOWED_REGIONS.

A delivery that fails voids the code at once, and the phone's hourly count forgets the
send: the person did nothing wrong. The delivery attempt still counts toward the
phone's cooldown and its hourly ceiling of attempts, and the address and the service
keep the count, so a failing provider cannot be used to send more.
"""

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.utils.translation import gettext as _

from users import devices, metrics, sms, sql
from users.errors import DomainError, ErrorCode, Forbidden, Retry
from users.hashing import code_hash
from users.models import INVITE_CODE_DRAWS, SendTotal, User, new_invite_code
from users.phones import normalize_phone, prefix_of, region_of
from users.services import deliveries, invites, referrals, tokens
from users.services.unit import retrying, use_case

logger = logging.getLogger(__name__)

# After a failed delivery the person may ask again soon, but not at once: the
# provider is likely still failing.
DELIVERY_RETRY_AFTER = 10
CODE_SHAPE = re.compile(r"[0-9]{4}", re.ASCII)
MAX_CODE_INPUT = 64


def draw_code() -> str:
    """Four digits from `secrets`."""
    return f"{secrets.randbelow(10_000):04d}"


def _rate_limited(wait: int) -> DomainError:
    return DomainError(
        ErrorCode.RATE_LIMITED,
        _("Too many codes requested. Try again in {seconds} s.").format(seconds=wait),
        field="phone",
        retry_after=wait,
    )


def _phone_locked(wait: int, *, field: str) -> DomainError:
    return DomainError(
        ErrorCode.TOO_MANY_ATTEMPTS,
        _("Too many wrong codes for this number. Try again later."),
        field=field,
        retry_after=wait,
    )


def _resend_limits() -> list[int]:
    """The phone's sending limits as users_resend_wait and its callers take them."""
    return [
        settings.OTP_MAX_SENDS_PER_PHONE,
        settings.OTP_MAX_DELIVERIES_PER_PHONE,
        settings.OTP_RESEND_COOLDOWN,
    ]


# Sending


@dataclass(frozen=True)
class IssuedCode:
    code: str
    created_at: datetime
    expires_at: datetime
    retry_after: int
    counted_at: float  # the send's event in the phone's hourly count
    delivery_id: int | None  # its record in the delivery log; None for a test number


@retrying
def issue_code(*, phone: str, client_key: str | None) -> IssuedCode:
    """Count a send against every limit, store a new code for `phone` (E.164) and open
    its delivery record: one statement, users_issue_code."""
    test_code = settings.OTP_TEST_NUMBERS.get(phone)
    code = test_code or draw_code()
    (refusal, wait, retry_after, counted_at, created_at, expires_at, first, delivery, blocked) = (
        sql.call(
            "users_issue_code",
            phone=phone,
            code_hash=code_hash(phone, code),
            client_key=client_key,
            ttl=settings.OTP_TTL,
            cooldown=settings.OTP_RESEND_COOLDOWN,
            per_phone=settings.OTP_MAX_SENDS_PER_PHONE,
            attempts=settings.OTP_MAX_DELIVERIES_PER_PHONE,
            max_failed=settings.OTP_MAX_FAILED_PER_PHONE,
            per_client=settings.OTP_MAX_SENDS_PER_IP,
            total=settings.OTP_MAX_SENDS_TOTAL,
            reserve=settings.OTP_MAX_SENDS_RESERVE,
            shards=SendTotal.SHARDS,
            known_days=settings.OTP_KNOWN_ACCOUNT_DAYS,
            country=region_of(phone),
            prefix=prefix_of(phone, settings.SMS_PUMPING_PREFIX_DIGITS),
            provider=None if test_code else settings.SMS_BACKEND,
            pumping_sends=0 if test_code else settings.SMS_PUMPING_MIN_SENDS,
            pumping_conversion=settings.SMS_PUMPING_MIN_CONVERSION,
            pumping_window=settings.SMS_PUMPING_WINDOW,
            pumping_block=settings.SMS_PUMPING_BLOCK,
        )
    )
    if refusal == "prefix_blocked":
        metrics.BLOCKED_SENDS.inc()
        raise _not_served()
    if refusal == "rate_limited":
        raise _rate_limited(wait)
    if refusal == "phone_locked":
        raise _phone_locked(wait, field="phone")
    if refusal == "service_cap":
        if first:
            logger.warning("OTP_MAX_SENDS_TOTAL reached: no more codes until the hour ends")
        raise _rate_limited(wait)
    if blocked:
        prefix = prefix_of(phone, settings.SMS_PUMPING_PREFIX_DIGITS)
        logger.warning(
            "SMS pumping: %s blocked for %d s: its latest sends were not turned into sign-ins",
            prefix,
            settings.SMS_PUMPING_BLOCK,
        )
        metrics.PREFIX_BLOCKS.labels(prefix=prefix).inc()
    return IssuedCode(
        code=code,
        created_at=created_at,
        expires_at=expires_at,
        retry_after=retry_after,
        counted_at=counted_at,
        delivery_id=delivery,
    )


@retrying
def void_code(*, phone: str, issued: IssuedCode, error: str) -> int:
    """Undo what a send did after its delivery failed, and log the provider's `error`
    (users_void_code); the wait to try again."""
    (wait,) = sql.call(
        "users_void_code",
        phone=phone,
        counted_at=issued.counted_at,
        created_at=issued.created_at,
        per_phone=settings.OTP_MAX_SENDS_PER_PHONE,
        attempts=settings.OTP_MAX_DELIVERIES_PER_PHONE,
        cooldown=settings.OTP_RESEND_COOLDOWN,
        delivery=issued.delivery_id,
        error=error,
    )
    return int(wait)


@dataclass(frozen=True)
class SentCode:
    phone: str
    expires_at: datetime
    retry_after: int
    debug_code: str | None


def _check_region(phone: str) -> None:
    if not settings.SMS_ALLOWED_REGIONS or phone in settings.OTP_TEST_NUMBERS:
        return
    if region_of(phone) not in settings.SMS_ALLOWED_REGIONS:
        raise DomainError(
            ErrorCode.REGION_NOT_ALLOWED,
            _("Codes cannot be sent to numbers of this country."),
            field="phone",
        )


class OffLoop(Protocol):
    """Runs synchronous database work off the event loop and awaits it; the API passes
    its own (backend.database.run)."""

    def __call__[T](self, fn: Callable[..., T], /, **kwargs: Any) -> Awaitable[T]: ...


async def send_code(
    *, phone: str, client_key: str | None, locale: str = "en", off_loop: OffLoop
) -> SentCode:
    """Issue a code for `phone` and deliver it. Answers alike for known and unknown phones.

    The one async use case: its database work runs through `off_loop` and gives its
    connection back before delivery is awaited, so a slow provider holds none. What the
    provider answered goes to the delivery log: taken (the code works), refused (the
    code is void: DELIVERY_FAILED), or no answer in time (the code stays live, since
    the SMS may still arrive: DELIVERY_DELAYED).
    """
    phone = normalize_phone(phone)
    _check_region(phone)
    issued = await off_loop(issue_code, phone=phone, client_key=client_key)
    debug_code = None
    if issued.delivery_id is not None:
        backend = sms.get_backend()
        started = time.perf_counter()
        try:
            message_id = await backend.send(phone, issued.code, locale=locale)
        except sms.DeliveryDelayed:
            metrics.observe_delivery(settings.SMS_BACKEND, "delayed", time.perf_counter() - started)
            await off_loop(
                deliveries.record_status, delivery_id=issued.delivery_id, status="unknown"
            )
            raise _delayed(issued.retry_after) from None
        except sms.DeliveryError as error:
            took = time.perf_counter() - started
            metrics.observe_delivery(settings.SMS_BACKEND, error.code.lower(), took)
            wait = await off_loop(void_code, phone=phone, issued=issued, error=error.provider_code)
            raise _not_delivered(error, wait) from None
        took = time.perf_counter() - started
        metrics.observe_delivery(settings.SMS_BACKEND, "delivered", took)
        await off_loop(
            deliveries.record_status,
            delivery_id=issued.delivery_id,
            status=sms.status_once_accepted(backend),
            message_id=message_id,
        )
        if sms.returns_code(backend):
            debug_code = issued.code
    return SentCode(
        phone=phone,
        expires_at=issued.expires_at,
        retry_after=issued.retry_after,
        debug_code=debug_code,
    )


def _not_served() -> DomainError:
    return DomainError(
        ErrorCode.REGION_NOT_ALLOWED,
        _("Codes cannot be sent to numbers of this country."),
        field="phone",
    )


def _delayed(wait: int) -> DomainError:
    return DomainError(
        ErrorCode.DELIVERY_DELAYED,
        _("The SMS is on its way but slow. Wait for it, or ask again in {seconds} s.").format(
            seconds=wait
        ),
        field="phone",
        retry_after=wait,
    )


def _not_delivered(error: sms.DeliveryError, wait: int) -> DomainError:
    if error.code is ErrorCode.INVALID_PHONE:
        return DomainError(
            error.code, _("This number cannot receive text messages."), field="phone"
        )
    if error.code is ErrorCode.REGION_NOT_ALLOWED:
        return _not_served()
    return DomainError(
        ErrorCode.DELIVERY_FAILED,
        _("The code could not be sent. Try again in a moment."),
        field="phone",
        retry_after=max(wait, DELIVERY_RETRY_AFTER),
    )


# Verifying


@dataclass(frozen=True)
class Client:
    """Where a sign-in comes from, as its session shows it: the User-Agent header (users/
    devices.py reads it) and the client's network (a /24 or /64, never an address)."""

    user_agent: str = ""
    network: str = ""


NO_CLIENT = Client()


@dataclass(frozen=True)
class SignIn:
    user: User
    tokens: tokens.Tokens
    is_new_user: bool
    # What keep_unanswered needs, should this answer never reach the person.
    phone: str
    code_hash: str
    code_expires_at: datetime
    refresh_token_hash: str


def _too_many_attempts(wait: int) -> DomainError:
    return DomainError(
        ErrorCode.TOO_MANY_ATTEMPTS,
        _("Too many wrong codes. Request a new code."),
        field="code",
        retry_after=wait,
    )


def _no_live_code() -> DomainError:
    return DomainError(
        ErrorCode.CODE_EXPIRED, _("No live code for this number. Request a new one."), field="code"
    )


def _expired() -> DomainError:
    return DomainError(
        ErrorCode.CODE_EXPIRED, _("This code has expired. Request a new one."), field="code"
    )


def _wrong_code() -> DomainError:
    # The count of the wrong guess must stay: inside a use case, this refusal commits.
    return DomainError(
        ErrorCode.INVALID_CODE,
        _("Wrong code. Check the SMS and try again."),
        field="code",
        commit=True,
    )


def _refused(refusal: str, wait: int) -> Exception:
    """The error for a refusal of users_check_code or users_sign_in."""
    refusals: dict[str, Callable[[], Exception]] = {
        "phone_locked": lambda: _phone_locked(wait, field="code"),
        "no_code": _no_live_code,
        "dead_code": lambda: _too_many_attempts(wait),
        "expired": _expired,
        "wrong_code": _wrong_code,
        "disabled": lambda: Forbidden(_("This account is disabled.")),
        "no_invite_code": lambda: Retry("every invite code drawn was taken"),
    }
    return refusals[refusal]()


def _check_limits() -> list[int]:
    return [settings.OTP_MAX_ATTEMPTS, settings.OTP_MAX_FAILED_PER_PHONE, *_resend_limits()]


def _check_code(*, phone: str, code: str) -> None:
    """Lock the phone's code and check `code` against it (users_check_code), in the
    caller's transaction; a refusal raises."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT refusal, wait FROM users_check_code(%s, %s, %s, %s, %s, %s, %s)",
            [phone, code_hash(phone, code), *_check_limits()],
        )
        refusal, wait = cursor.fetchone()
    if refusal is not None:
        raise _refused(refusal, wait)


def _sign_in(*, phone: str, code: str, client: Client, inviter_id: int | None = None) -> SignIn:
    """users_sign_in: check the code and sign in, creating the user on the first success,
    in a new session of the client's device."""
    refresh_token, refresh_token_hash = tokens.new_refresh_token()
    hashed = code_hash(phone, code)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM users_sign_in(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                phone,
                hashed,
                *_check_limits(),
                [new_invite_code() for _ in range(INVITE_CODE_DRAWS)],
                make_password(None),
                refresh_token_hash,
                inviter_id,
                devices.describe(client.user_agent),
                client.network,
            ],
        )
        (
            refusal,
            wait,
            user_id,
            invite_code,
            inviter_code,
            activated_at,
            joined,
            is_new,
            expires,
            session_id,
        ) = cursor.fetchone()
    if refusal is not None:
        raise _refused(refusal, wait)
    user = User(
        pk=user_id,
        phone=phone,
        invite_code=invite_code,
        invite_activated_at=activated_at,
        date_joined=joined,
    )
    if inviter_code is not None:
        user.invited_by = User(invite_code=inviter_code)  # what a profile shows of them
    return SignIn(
        user=user,
        tokens=tokens.issued(user_id, session_id, refresh_token),
        is_new_user=bool(is_new),
        phone=phone,
        code_hash=hashed,
        code_expires_at=expires,
        refresh_token_hash=refresh_token_hash,
    )


def keep_unanswered(signed_in: SignIn) -> None:
    """The sign-in was made but its answer never reached the person (the request gave
    up waiting for the database first): revoke its refresh token and put its code back,
    so the same verifyCode signs them in (users_keep_unanswered_sign_in)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT users_keep_unanswered_sign_in(%s, %s, %s, %s, %s, %s)",
            [
                signed_in.phone,
                signed_in.code_hash,
                signed_in.code_expires_at,
                signed_in.user.pk,
                signed_in.is_new_user,
                signed_in.refresh_token_hash,
            ],
        )


_sign_in_alone = retrying(_sign_in)  # one statement, its own transaction


@use_case
def _sign_in_with_invite(*, phone: str, code: str, client: Client, invite_code: str) -> SignIn:
    """The code first (a wrong one is counted), then the invite, then the sign-in, in one
    transaction: a refused invite leaves no user and the code live."""
    _check_code(phone=phone, code=code)
    user = User.objects.filter(phone=phone).first()
    inviter = None
    if user is None:
        inviter = invites.owner_for_new_user(phone=phone, invite_code=invite_code)
    elif user.is_active:
        invites.activate(
            user_id=user.pk, invite_code=invite_code, network=client.network or None, via="sign_in"
        )
    signed_in = _sign_in(
        phone=phone, code=code, client=client, inviter_id=inviter.pk if inviter else None
    )
    if inviter is not None and signed_in.is_new_user:
        referrals.record_activation(
            referee_id=signed_in.user.pk,
            referrer_id=inviter.pk,
            code=inviter.invite_code,
            via="sign_in",
            network=client.network or None,
        )
    return signed_in


def verify_code(
    *, phone: str, code: str, invite_code: str | None = None, client: Client = NO_CLIENT
) -> SignIn:
    """Check the code and sign in, creating the user on the first success.

    With `invite_code`, the invite is activated in the same transaction; if it is
    refused, the sign-in is not made and the code stays live. Without one, the sign-in
    is one statement. The sign-in's history row (users_signinevent) keeps the client's
    network, which the referral program's same-network signal reads.
    """
    phone = normalize_phone(phone)
    if invite_code is not None and not invite_code.strip():
        invite_code = None  # an empty field on a sign-in form means no invite
    if len(code) > MAX_CODE_INPUT or not CODE_SHAPE.fullmatch(code):
        raise DomainError(ErrorCode.INVALID_CODE, _("The code is 4 digits."), field="code")
    if invite_code is None:
        return _sign_in_alone(phone=phone, code=code, client=client)
    return _sign_in_with_invite(phone=phone, code=code, client=client, invite_code=invite_code)
