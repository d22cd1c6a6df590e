"""One-time codes: issuing and delivering them (sendCode), checking them (verifyCode).

Row locks are taken in one order, so transactions queue instead of deadlocking:
the phone's rows (its send counter, its failure counter, its OtpChallenge), then
the client address's counter, then user rows in id order (invites).
"""

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from backend import database
from users import sms, throttle
from users.errors import DomainError, ErrorCode, Forbidden
from users.hashing import code_hash
from users.models import OtpChallenge, User
from users.phones import normalize_phone
from users.services import invites, tokens
from users.services.unit import use_case

HOUR = 3600
DAY = 24 * HOUR
CODE_SHAPE = re.compile(r"[0-9]{4}", re.ASCII)
MAX_CODE_INPUT = 64


def _send_key(phone: str) -> str:
    return f"send:phone:{phone}"


def _failure_key(phone: str) -> str:
    return f"fail:phone:{phone}"


def _rate_limited(wait: int) -> DomainError:
    return DomainError(
        ErrorCode.RATE_LIMITED,
        f"Too many codes requested. Try again in {wait} s.",
        field="phone",
        retry_after=wait,
    )


def _phone_locked(wait: int, *, field: str) -> DomainError:
    return DomainError(
        ErrorCode.TOO_MANY_ATTEMPTS,
        "Too many wrong codes for this number. Try again later.",
        field=field,
        retry_after=wait,
    )


# Sending


@dataclass(frozen=True)
class IssuedCode:
    code: str
    expires_at: datetime
    retry_after: int


@use_case
def issue_code(*, phone: str, client_key: str | None) -> IssuedCode:
    """Count a send against every limit and store a new code for `phone` (E.164).

    A phone locked out by wrong guesses gets no code: it could not be used.
    """
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
    code = settings.OTP_TEST_NUMBERS.get(phone) or f"{secrets.randbelow(10_000):04d}"
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
    return IssuedCode(code=code, expires_at=expires_at, retry_after=per_phone.wait(**limits))


@dataclass(frozen=True)
class SentCode:
    phone: str
    expires_at: datetime
    retry_after: int
    debug_code: str | None


async def send_code(*, phone: str, client_key: str | None) -> SentCode:
    """Issue a code for `phone` and deliver it. Answers alike for known and unknown phones.

    The one async use case: the database work runs off the event loop and gives its
    connection back before delivery is awaited, so a slow provider holds none.
    """
    phone = normalize_phone(phone)
    issued = await database.run(issue_code, phone=phone, client_key=client_key)
    debug_code = None
    if phone not in settings.OTP_TEST_NUMBERS:
        backend = sms.get_backend()
        await backend.send(phone, issued.code)
        if sms.returns_code(backend):
            debug_code = issued.code
    return SentCode(
        phone=phone,
        expires_at=issued.expires_at,
        retry_after=issued.retry_after,
        debug_code=debug_code,
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
        "Too many wrong codes. Request a new code.",
        field="code",
        retry_after=wait,
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
        raise DomainError(
            ErrorCode.CODE_EXPIRED, "No live code for this number. Request a new one.", field="code"
        )
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
        raise DomainError(
            ErrorCode.CODE_EXPIRED, "This code has expired. Request a new one.", field="code"
        )
    if not hmac.compare_digest(challenge.code_hash, code_hash(phone, code)):
        challenge.attempts += 1
        challenge.save(update_fields=["attempts"])
        failures.add(keep=settings.OTP_MAX_FAILED_PER_PHONE)
        raise DomainError(
            ErrorCode.INVALID_CODE,
            "Wrong code. Check the SMS and try again.",
            field="code",
            commit=True,
        )
    return challenge


@use_case
def verify_code(*, phone: str, code: str, invite_code: str | None = None) -> SignIn:
    """Check the code and sign in, creating the user on the first success.

    With `invite_code`, the invite is activated in the same transaction; if it is
    refused, the sign-in is not made and the code stays live.
    """
    phone = normalize_phone(phone)
    if invite_code is not None and not invite_code.strip():
        invite_code = None  # an empty field on a sign-in form means no invite
    if len(code) > MAX_CODE_INPUT or not CODE_SHAPE.fullmatch(code):
        raise DomainError(ErrorCode.INVALID_CODE, "The code is 4 digits.", field="code")
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
            raise Forbidden("This account is disabled.")
        if invite_code is not None:
            user = invites.activate(user_id=user.pk, invite_code=invite_code)
    challenge.delete()  # single use; last, so a refused invite leaves the code live
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    return SignIn(user=user, tokens=tokens.issue(user=user), is_new_user=is_new_user)
