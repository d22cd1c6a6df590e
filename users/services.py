"""Sign-in and invite use cases. Each runs in one transaction and raises DomainError.

Row locks are taken in one order, so transactions queue instead of deadlocking:
the phone's rows (its send counter, its OtpChallenge, its failure counter), then the
client address's counter, then user rows in id order.
"""

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from users import sms, throttle
from users.errors import DomainError, ErrorCode
from users.models import INVITE_ALPHABET, INVITE_LENGTH, OtpChallenge, User
from users.phones import normalize_phone
from users.tokens import Tokens, issue_tokens

HOUR = 3600
DAY = 24 * HOUR
CODE_SHAPE = re.compile(r"[0-9]{4}", re.ASCII)
INVITE_SHAPE = re.compile(rf"[{INVITE_ALPHABET}]{{{INVITE_LENGTH}}}")
MAX_CODE_INPUT = 64


def _retrying(fn):
    """Run `fn` again when PostgreSQL ends its transaction to break a deadlock."""

    def run(**kwargs):
        for attempt in range(3):
            try:
                return fn(**kwargs)
            except OperationalError as error:
                if getattr(error.__cause__, "sqlstate", None) not in {"40P01", "40001"}:
                    raise
                if attempt == 2:
                    raise

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def code_hash(phone: str, code: str) -> str:
    """HMAC of the code, keyed with SECRET_KEY and bound to the phone."""
    message = f"{phone}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def release_connection() -> None:
    """Give the database connection back (to the pool) before a long wait.

    Inside an outer transaction (tests) the connection must stay.
    """
    if not connection.in_atomic_block:
        connection.close()


# Sending codes


def address_key(client_ip: str) -> str:
    """What the per-address limit counts: an IPv4 address, or an IPv6 /64.

    One IPv6 subscriber usually holds a whole /64, so counting single addresses
    would let one client rotate through billions of them.
    """
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip[:64]
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


@dataclass(frozen=True)
class SentCode:
    phone: str
    expires_at: datetime
    retry_after: int
    debug_code: str | None


def _rate_limited(wait: int) -> DomainError:
    return DomainError(
        ErrorCode.RATE_LIMITED,
        f"Too many codes requested. Try again in {wait} s.",
        field="phone",
        retry_after=wait,
    )


@_retrying
def issue_code(*, phone: str, client_ip: str | None) -> tuple[str, datetime, int]:
    """Count the send against every limit and store a new code.

    Returns the code, its expiry and the seconds until this phone may ask again.
    """
    with transaction.atomic():
        per_phone = throttle.lock(f"send:phone:{phone}", window=HOUR)
        limits = {
            "limit": settings.OTP_MAX_SENDS_PER_PHONE,
            "spacing": settings.OTP_RESEND_COOLDOWN,
        }
        wait = per_phone.wait(**limits)
        if wait:
            raise _rate_limited(wait)
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
        if client_ip:
            wait = throttle.take(
                f"send:ip:{address_key(client_ip)}",
                limit=settings.OTP_MAX_SENDS_PER_IP,
                window=HOUR,
            )
            if wait:
                raise _rate_limited(wait)
    return code, expires_at, per_phone.wait(**limits)


async def send_code(*, phone: str, client_ip: str | None) -> SentCode:
    """Issue a code for `phone` and deliver it. Answers alike for known and unknown phones.

    The database work is done and the connection released before delivery is
    awaited, so a slow provider holds no connection.
    """
    phone = normalize_phone(phone)

    def issue():
        try:
            return issue_code(phone=phone, client_ip=client_ip)
        finally:
            release_connection()

    code, expires_at, retry_after = await sync_to_async(issue)()
    debug_code = None
    if phone not in settings.OTP_TEST_NUMBERS:
        backend = sms.get_backend()
        await backend.send(phone, code)
        if sms.returns_code(backend):
            debug_code = code
    return SentCode(
        phone=phone,
        expires_at=expires_at,
        retry_after=retry_after,
        debug_code=debug_code,
    )


# Verifying codes


@dataclass(frozen=True)
class SignIn:
    user: User
    tokens: Tokens
    is_new_user: bool


def _too_many_attempts(wait: int, message: str) -> DomainError:
    return DomainError(ErrorCode.TOO_MANY_ATTEMPTS, message, field="code", retry_after=wait)


def _check_code(*, phone: str, code: str) -> bool:
    """Lock the phone's challenge and check `code`: True uses it up, False counts a miss.

    The miss is written in the caller's transaction, which must commit it; the
    other refusals raise DomainError and write nothing.
    """
    challenge = OtpChallenge.objects.select_for_update().filter(phone=phone).first()
    failures = throttle.lock(f"fail:phone:{phone}", window=DAY)
    wait = failures.wait(limit=settings.OTP_MAX_FAILED_PER_PHONE)
    if wait:
        raise _too_many_attempts(wait, "Too many wrong codes for this number. Try again later.")
    if challenge is None:
        raise DomainError(
            ErrorCode.CODE_EXPIRED, "No live code for this number. Request a new one.", field="code"
        )
    if challenge.attempts >= settings.OTP_MAX_ATTEMPTS:
        wait = throttle.peek(
            f"send:phone:{phone}",
            limit=settings.OTP_MAX_SENDS_PER_PHONE,
            window=HOUR,
            spacing=settings.OTP_RESEND_COOLDOWN,
        )
        raise _too_many_attempts(wait, "Too many wrong codes. Request a new code.")
    if challenge.expires_at <= timezone.now():
        raise DomainError(
            ErrorCode.CODE_EXPIRED, "This code has expired. Request a new one.", field="code"
        )
    if not hmac.compare_digest(challenge.code_hash, code_hash(phone, code)):
        challenge.attempts += 1
        challenge.save(update_fields=["attempts"])
        failures.add(keep=settings.OTP_MAX_FAILED_PER_PHONE)
        return False
    challenge.delete()
    return True


@_retrying
def verify_code(*, phone: str, code: str, invite_code: str | None = None) -> SignIn:
    """Check the code and sign in, creating the user on the first success.

    With `invite_code`, the invite is activated in the same transaction; if it is
    refused, nothing is written and the code stays live.
    """
    phone = normalize_phone(phone)
    if isinstance(invite_code, str) and not invite_code.strip():
        invite_code = None  # an empty field on a sign-in form means no invite
    if not isinstance(code, str) or len(code) > MAX_CODE_INPUT or not CODE_SHAPE.fullmatch(code):
        raise DomainError(ErrorCode.INVALID_CODE, "The code is 4 digits.", field="code")
    with transaction.atomic():
        if _check_code(phone=phone, code=code):
            user = User.objects.select_related("invited_by").filter(phone=phone).first()
            is_new_user = user is None
            if is_new_user:
                owner = _invite_owner(invite_code) if invite_code is not None else None
                user = User.objects.create_user(
                    phone, invited_by=owner, invite_activated_at=owner and timezone.now()
                )
            elif invite_code is not None:
                user = _activate(user_id=user.pk, invite_code=invite_code)
            if not user.is_active:
                raise DomainError(
                    ErrorCode.INVALID_CODE, "This account is disabled.", field="phone"
                )
            User.objects.filter(pk=user.pk).update(last_login=timezone.now())
            return SignIn(user=user, tokens=issue_tokens(user), is_new_user=is_new_user)
    raise DomainError(
        ErrorCode.INVALID_CODE, "Wrong code. Check the SMS and try again.", field="code"
    )


# Invites


def normalize_invite_code(raw) -> str | None:
    """Trimmed and upper-cased; None when it cannot be an invite code."""
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    code = raw.strip().upper()
    return code if INVITE_SHAPE.fullmatch(code) else None


def _invite_owner(raw_code) -> User:
    code = normalize_invite_code(raw_code)
    owner = User.objects.filter(invite_code=code).first() if code else None
    if owner is None or not owner.is_active:
        raise DomainError(
            ErrorCode.INVITE_NOT_FOUND, "No user has this invite code.", field="inviteCode"
        )
    return owner


ROOT_OF = """
WITH RECURSIVE chain(id, invited_by_id, depth) AS (
    SELECT id, invited_by_id, 0 FROM users_user WHERE id = %s
    UNION ALL
    SELECT u.id, u.invited_by_id, chain.depth + 1
    FROM users_user u JOIN chain ON u.id = chain.invited_by_id
    WHERE chain.depth < 100000
)
SELECT id FROM chain WHERE invited_by_id IS NULL
"""


def _root_of(user_id: int) -> int | None:
    """The top of `user_id`'s referral tree, in one query."""
    with connection.cursor() as cursor:
        cursor.execute(ROOT_OF, [user_id])
        row = cursor.fetchone()
    return row[0] if row else None


def _activate(*, user_id: int, invite_code: str) -> User:
    """Make the owner of `invite_code` the inviter of `user_id`, in the caller's transaction.

    A user who has not activated a code yet is the root of their own tree, so the
    new link closes a cycle exactly when the owner's root is the caller. Locking the
    caller and that root (in id order) serialises every activation that could change
    the answer: a root only stops being one by activating, which needs its lock.
    """
    owner = _invite_owner(invite_code)
    if owner.pk == user_id:
        raise DomainError(
            ErrorCode.SELF_INVITE, "This is your own invite code.", field="inviteCode"
        )
    for _ in range(5):
        root_id = _root_of(owner.pk)
        locked = {
            u.pk: u
            for u in User.objects.select_for_update()
            .filter(pk__in={user_id, root_id})
            .order_by("pk")
        }
        user = locked[user_id]
        if user.invite_activated_at is not None:
            if user.invited_by_id == owner.pk:
                user.invited_by = owner
                return user
            raise DomainError(
                ErrorCode.INVITE_ALREADY_ACTIVATED,
                "You have already activated an invite code.",
                field="inviteCode",
            )
        if root_id in locked and locked[root_id].invited_by_id is None:
            break
    else:
        raise OperationalError("referral tree kept changing")
    if root_id == user_id:
        raise DomainError(
            ErrorCode.INVITE_CYCLE,
            "This code's owner joined through your invite.",
            field="inviteCode",
        )
    user.invited_by = owner
    user.invite_activated_at = timezone.now()
    user.save(update_fields=["invited_by", "invite_activated_at"])
    return user


@_retrying
def activate_invite(*, user_id: int, invite_code: str) -> User:
    """Activate another user's invite code, once ever; the same code again is a no-op."""
    with transaction.atomic():
        return _activate(user_id=user_id, invite_code=invite_code)


# Housekeeping


def purge_expired() -> dict[str, int]:
    """Delete codes, counters and refresh tokens that can no longer matter."""
    from users.models import RateLimit
    from users.tokens import delete_expired_refresh_tokens

    now = timezone.now()
    # A dead code (attempts used up) still answers TOO_MANY_ATTEMPTS until a new send,
    # but a send can replace it only within a day's limits, so a day covers it.
    codes, _ = OtpChallenge.objects.filter(
        Q(expires_at__lt=now, attempts__lt=settings.OTP_MAX_ATTEMPTS)
        | Q(expires_at__lt=now - timedelta(days=1))
    ).delete()
    counters, _ = RateLimit.objects.filter(expires_at__lt=now).delete()
    return {
        "codes": codes,
        "counters": counters,
        "refresh_tokens": delete_expired_refresh_tokens(),
    }
