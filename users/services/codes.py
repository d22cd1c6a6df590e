"""One-time codes: issuing and delivering them (sendCode), checking them (verifyCode).

A send is refused, before any counter or provider is touched, for a number outside
SMS_ALLOWED_REGIONS; then it must fit the phone's, the client address's and the
whole service's limits. A delivery that fails voids the code at once and gives the
phone back its send: the person did nothing wrong. The address and the service keep
the count, so a failing provider cannot be used to send more.

Row locks are taken in one order, so transactions queue instead of deadlocking:
the phone's rows (its send counter, its failure counter, its OtpChallenge), then
the client address's counter, then user rows in id order (invites).
"""

import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from backend import database, metrics
from users import sms, throttle
from users.errors import DomainError, ErrorCode, Forbidden
from users.hashing import code_hash
from users.models import OtpChallenge, RateLimit, SendTotal, User, new_invite_code
from users.phones import normalize_phone, region_of
from users.services import invites, tokens
from users.services.unit import retrying, use_case

logger = logging.getLogger(__name__)

HOUR = 3600
DAY = 24 * HOUR
# After a failed delivery the person may ask again soon, but not at once: the
# provider is likely still failing.
DELIVERY_RETRY_AFTER = 10
CODE_SHAPE = re.compile(r"[0-9]{4}", re.ASCII)
MAX_CODE_INPUT = 64


def draw_code() -> str:
    """Four digits from `secrets`."""
    return f"{secrets.randbelow(10_000):04d}"


def _send_key(phone: str) -> str:
    return f"send:phone:{phone}"


def _failure_key(phone: str) -> str:
    return f"fail:phone:{phone}"


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


# Sending


class ServiceCapReached(DomainError):
    """OTP_MAX_SENDS_TOTAL codes went out this hour; `hour` is when the hour began."""

    def __init__(self, wait: int) -> None:
        super().__init__(
            ErrorCode.RATE_LIMITED,
            _("Too many codes requested. Try again in {seconds} s.").format(seconds=wait),
            field="phone",
            retry_after=wait,
        )
        self.hour = int(time.time() + wait - HOUR)


@dataclass(frozen=True)
class IssuedCode:
    code: str
    created_at: datetime
    expires_at: datetime
    retry_after: int
    counted_at: float  # the phone's send counter's entry for it


def issue_code(*, phone: str, client_key: str | None) -> IssuedCode:
    """Count a send against every limit and store a new code for `phone` (E.164).

    The phone's window (cooldown and hourly count), then its lock after wrong guesses
    (a locked phone gets no code: it could not be used), the client address's window,
    room in the service's hourly count, and the code. On PostgreSQL all of it is one
    statement, the function `users_issue_code` (migration 0004); elsewhere (SQLite)
    the same rules run here, in one transaction.
    """
    code = settings.OTP_TEST_NUMBERS.get(phone) or draw_code()
    if connection.vendor == "postgresql":
        return _issue_code_in_postgresql(phone=phone, client_key=client_key, code=code)
    return _issue_code_in_python(phone=phone, client_key=client_key, code=code)


@retrying
def _issue_code_in_postgresql(*, phone: str, client_key: str | None, code: str) -> IssuedCode:
    now = time.time()
    created_at = datetime.fromtimestamp(now, tz=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM users_issue_code(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                phone,
                code_hash(phone, code),
                client_key,
                now,
                created_at,
                settings.OTP_TTL,
                settings.OTP_RESEND_COOLDOWN,
                settings.OTP_MAX_SENDS_PER_PHONE,
                settings.OTP_MAX_FAILED_PER_PHONE,
                settings.OTP_MAX_SENDS_PER_IP,
                settings.OTP_MAX_SENDS_TOTAL,
                SendTotal.SHARDS,
            ],
        )
        refusal, wait, retry_after = cursor.fetchone()
    if refusal == "rate_limited":
        raise _rate_limited(wait)
    if refusal == "phone_locked":
        raise _phone_locked(wait, field="phone")
    if refusal == "service_cap":
        raise ServiceCapReached(wait)
    return IssuedCode(
        code=code,
        created_at=created_at,
        expires_at=created_at + timedelta(seconds=settings.OTP_TTL),
        retry_after=retry_after,
        counted_at=now,
    )


@use_case
def _issue_code_in_python(*, phone: str, client_key: str | None, code: str) -> IssuedCode:
    per_phone = throttle.lock(_send_key(phone), window=HOUR)
    limits = {"limit": settings.OTP_MAX_SENDS_PER_PHONE, "spacing": settings.OTP_RESEND_COOLDOWN}
    wait = per_phone.wait(**limits)
    if wait:
        raise _rate_limited(wait)
    locked_out = throttle.peek(
        _failure_key(phone), limit=settings.OTP_MAX_FAILED_PER_PHONE, window=DAY
    )
    if locked_out:
        raise _phone_locked(locked_out, field="phone")
    per_phone.add(keep=settings.OTP_MAX_SENDS_PER_PHONE)
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.OTP_TTL)
    OtpChallenge.objects.bulk_create(  # one upsert: a new code replaces the old
        [
            OtpChallenge(
                phone=phone,
                code_hash=code_hash(phone, code),
                created_at=now,
                expires_at=expires_at,
                attempts=0,
            )
        ],
        update_conflicts=True,
        unique_fields=["phone"],
        update_fields=["code_hash", "created_at", "expires_at", "attempts"],
    )
    # Last, so the address's row, shared by every phone behind one address (a NAT,
    # an office), is locked only for the end of the transaction.
    if client_key:
        wait = throttle.take(
            f"send:ip:{client_key}", limit=settings.OTP_MAX_SENDS_PER_IP, window=HOUR
        )
        if wait:
            raise _rate_limited(wait)
    # Last of all, in a random one of several rows: see users.throttle.take_total.
    wait = throttle.take_total(limit=settings.OTP_MAX_SENDS_TOTAL)
    if wait:
        raise ServiceCapReached(wait)
    return IssuedCode(
        code=code,
        created_at=now,
        expires_at=expires_at,
        retry_after=per_phone.wait(**limits),
        counted_at=per_phone.now,
    )


@use_case
def void_code(*, phone: str, issued: IssuedCode) -> int:
    """Undo what a send did to the phone after its delivery failed; the wait to try again.

    The code is deleted unless a newer send has already replaced it, and the phone's
    send counter forgets this send, so neither its cooldown nor its hourly count grows.
    """
    per_phone = throttle.lock(_send_key(phone), window=HOUR)
    per_phone.remove(issued.counted_at)
    OtpChallenge.objects.filter(phone=phone, created_at=issued.created_at).delete()
    return per_phone.wait(
        limit=settings.OTP_MAX_SENDS_PER_PHONE, spacing=settings.OTP_RESEND_COOLDOWN
    )


@use_case
def note_service_cap(*, hour: int) -> bool:
    """True the first time, across all workers, that the service's cap is hit in `hour`."""
    _, created = RateLimit.objects.get_or_create(
        key=f"send:total:reached:{hour}",
        defaults={"expires_at": datetime.fromtimestamp(hour + HOUR, tz=UTC)},
    )
    return created


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


async def send_code(*, phone: str, client_key: str | None, locale: str = "en") -> SentCode:
    """Issue a code for `phone` and deliver it. Answers alike for known and unknown phones.

    The one async use case: the database work runs off the event loop and gives its
    connection back before delivery is awaited, so a slow provider holds none.
    """
    phone = normalize_phone(phone)
    _check_region(phone)
    try:
        issued = await database.run(issue_code, phone=phone, client_key=client_key)
    except ServiceCapReached as refusal:
        if await database.run(note_service_cap, hour=refusal.hour):
            logger.warning("OTP_MAX_SENDS_TOTAL reached: no more codes until the hour ends")
        raise
    debug_code = None
    if phone not in settings.OTP_TEST_NUMBERS:
        backend = sms.get_backend()
        started = time.perf_counter()
        try:
            await backend.send(phone, issued.code, locale=locale)
        except sms.DeliveryError as error:
            took = time.perf_counter() - started
            metrics.observe_delivery(settings.SMS_BACKEND, error.code.lower(), took)
            wait = await database.run(void_code, phone=phone, issued=issued)
            raise _not_delivered(error, wait) from None
        took = time.perf_counter() - started
        metrics.observe_delivery(settings.SMS_BACKEND, "delivered", took)
        if sms.returns_code(backend):
            debug_code = issued.code
    return SentCode(
        phone=phone,
        expires_at=issued.expires_at,
        retry_after=issued.retry_after,
        debug_code=debug_code,
    )


def _not_delivered(error: sms.DeliveryError, wait: int) -> DomainError:
    if error.code is ErrorCode.INVALID_PHONE:
        return DomainError(
            error.code, _("This number cannot receive text messages."), field="phone"
        )
    if error.code is ErrorCode.REGION_NOT_ALLOWED:
        return DomainError(
            error.code, _("Codes cannot be sent to numbers of this country."), field="phone"
        )
    return DomainError(
        ErrorCode.DELIVERY_FAILED,
        _("The code could not be sent. Try again in a moment."),
        field="phone",
        retry_after=max(wait, DELIVERY_RETRY_AFTER),
    )


# Verifying


@dataclass(frozen=True)
class SignIn:
    user: User
    tokens: tokens.Tokens
    is_new_user: bool


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


def _wrong_code(*, commit: bool) -> DomainError:
    return DomainError(
        ErrorCode.INVALID_CODE,
        _("Wrong code. Check the SMS and try again."),
        field="code",
        commit=commit,
    )


def _live_challenge(*, phone: str, code: str) -> OtpChallenge:
    """Lock the phone's challenge and check `code` against it.

    A wrong code is counted against the code and the phone, and the refusal commits
    those counts: that is what caps guessing. Every other refusal writes nothing.
    """
    failures = throttle.lock(_failure_key(phone), window=DAY)
    challenge = OtpChallenge.objects.select_for_update().filter(phone=phone).first()
    wait = failures.wait(limit=settings.OTP_MAX_FAILED_PER_PHONE)
    if wait:
        raise _phone_locked(wait, field="code")
    if challenge is None:
        raise _no_live_code()
    if challenge.attempts >= settings.OTP_MAX_ATTEMPTS:
        raise _too_many_attempts(
            throttle.peek(
                _send_key(phone),
                limit=settings.OTP_MAX_SENDS_PER_PHONE,
                window=HOUR,
                spacing=settings.OTP_RESEND_COOLDOWN,
            )
        )
    if challenge.expires_at <= timezone.now():
        raise _expired()
    if not hmac.compare_digest(challenge.code_hash, code_hash(phone, code)):
        challenge.attempts += 1
        challenge.save(update_fields=["attempts"])
        failures.add(keep=settings.OTP_MAX_FAILED_PER_PHONE)
        raise _wrong_code(commit=True)
    return challenge


def verify_code(*, phone: str, code: str, invite_code: str | None = None) -> SignIn:
    """Check the code and sign in, creating the user on the first success.

    With `invite_code`, the invite is activated in the same transaction; if it is
    refused, the sign-in is not made and the code stays live. On PostgreSQL a sign-in
    without one is a single statement, the function `users_sign_in` (migration 0005);
    otherwise the same rules run here, in one transaction.
    """
    phone = normalize_phone(phone)
    if invite_code is not None and not invite_code.strip():
        invite_code = None  # an empty field on a sign-in form means no invite
    if len(code) > MAX_CODE_INPUT or not CODE_SHAPE.fullmatch(code):
        raise DomainError(ErrorCode.INVALID_CODE, _("The code is 4 digits."), field="code")
    if invite_code is None and connection.vendor == "postgresql":
        return _sign_in_in_postgresql(phone=phone, code=code)
    return _verify_code_in_python(phone=phone, code=code, invite_code=invite_code)


@retrying
def _sign_in_in_postgresql(*, phone: str, code: str) -> SignIn:
    refresh_token, refresh_token_hash = tokens.new_refresh_token()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM users_sign_in(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                phone,
                code_hash(phone, code),
                timezone.now(),
                settings.OTP_MAX_ATTEMPTS,
                settings.OTP_MAX_FAILED_PER_PHONE,
                settings.OTP_RESEND_COOLDOWN,
                settings.OTP_MAX_SENDS_PER_PHONE,
                [new_invite_code() for _ in range(5)],
                make_password(None),
                refresh_token_hash,
            ],
        )
        (refusal, wait, user_id, invite_code, inviter_code, activated_at, joined, is_new) = (
            cursor.fetchone()
        )
    refusals: dict[str, Callable[[], DomainError]] = {
        "phone_locked": lambda: _phone_locked(wait, field="code"),
        "no_code": _no_live_code,
        "dead_code": lambda: _too_many_attempts(wait),
        "expired": _expired,
        "wrong_code": lambda: _wrong_code(commit=False),  # the function committed the count
    }
    if refusal == "disabled":
        raise Forbidden(_("This account is disabled."))
    if refusal is not None:
        raise refusals[refusal]()
    user = User(
        pk=user_id,
        phone=phone,
        invite_code=invite_code,
        invite_activated_at=activated_at,
        date_joined=joined,
    )
    if inviter_code is not None:
        user.invited_by = User(invite_code=inviter_code)  # what a profile shows of them
    return SignIn(user=user, tokens=tokens.issued(user_id, refresh_token), is_new_user=bool(is_new))


@use_case
def _verify_code_in_python(*, phone: str, code: str, invite_code: str | None) -> SignIn:
    challenge = _live_challenge(phone=phone, code=code)
    user = User.objects.select_related("invited_by").filter(phone=phone).first()
    is_new_user = user is None
    if user is None:
        owner = invites.owner_for_new_user(phone=phone, invite_code=invite_code)
        user = User.objects.create_user(
            phone, invited_by=owner, invite_activated_at=owner and timezone.now()
        )
    else:
        if not user.is_active:
            raise Forbidden(_("This account is disabled."))
        if invite_code is not None:
            user = invites.activate(user_id=user.pk, invite_code=invite_code)
    challenge.delete()  # single use; last, so a refused invite leaves the code live
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    return SignIn(user=user, tokens=tokens.issue(user=user), is_new_user=is_new_user)
