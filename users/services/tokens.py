"""Refresh tokens: issued at sign-in, rotated on every use, revoked at sign-out.

Only a SHA-256 of each refresh token is stored. A rotated token that comes back
later than REUSE_GRACE means it was copied: every live refresh token of that user
is revoked too (OAuth 2.1 reuse detection) and the person signs in again. Within
REUSE_GRACE a reuse is two tabs of one app refreshing at once: refused, nothing
more. A token revoked by signing out is simply refused: a stale tab that still has
it must not sign the person out on their other devices.
"""

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from users.access_tokens import issue_access_token
from users.errors import DomainError, ErrorCode
from users.hashing import token_hash
from users.models import RefreshToken, User
from users.services.unit import use_case

logger = logging.getLogger(__name__)

REFRESH_TOKEN_SHAPE = re.compile(r"[0-9a-f]{64}")
REUSE_GRACE = timedelta(seconds=10)


@dataclass(frozen=True)
class Tokens:
    token: str
    token_expires_at: datetime
    refresh_token: str


def new_refresh_token() -> tuple[str, str]:
    """A new refresh token (256 random bits) and the hash that is stored of it."""
    refresh_token = secrets.token_hex(32)
    return refresh_token, token_hash(refresh_token)


def issued(user_id: int, refresh_token: str) -> Tokens:
    """The tokens of a sign-in whose refresh token has been stored."""
    access = issue_access_token(user_id)
    return Tokens(
        token=access.token, token_expires_at=access.expires_at, refresh_token=refresh_token
    )


def issue(*, user: User) -> Tokens:
    """A new access token and a new stored refresh token, in the caller's transaction."""
    refresh_token, stored = new_refresh_token()
    RefreshToken.objects.create(user=user, token_hash=stored)
    return issued(user.pk, refresh_token)


def _invalid_token(*, commit: bool = False) -> DomainError:
    return DomainError(
        ErrorCode.INVALID_TOKEN,
        _("This refresh token is unknown, expired or revoked. Sign in again."),
        field="refreshToken",
        commit=commit,
    )


def _locked(refresh_token: str) -> tuple[RefreshToken | None, datetime | None]:
    """The token's row, locked, and the database's clock, which every expiry and grace
    period here is measured by."""
    if not REFRESH_TOKEN_SHAPE.fullmatch(refresh_token):
        return None, None
    # The user comes with their inviter: the new tokens' profile shows the code they
    # activated. Only the token's own row is locked.
    refresh = (
        RefreshToken.objects.select_for_update(of=("self",))
        .select_related("user__invited_by")
        .annotate(db_now=Now())
        .filter(token_hash=token_hash(refresh_token))
        .first()
    )
    if refresh is None:
        return None, None
    now: datetime = refresh.db_now
    return refresh, now


def _live(refresh: RefreshToken | None, now: datetime | None) -> tuple[RefreshToken, datetime]:
    if refresh is None or now is None or refresh.revoked_at is not None:
        raise _invalid_token()
    if not refresh.user.is_active:
        raise _invalid_token()
    if now - refresh.created_at >= timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION):
        raise _invalid_token()
    return refresh, now


@use_case
def rotate(*, refresh_token: str) -> tuple[User, Tokens]:
    """Revoke `refresh_token` as rotated and issue new tokens."""
    refresh, now = _locked(refresh_token)
    if refresh is not None and now is not None and refresh.rotated:
        assert refresh.revoked_at is not None
        if now - refresh.revoked_at >= REUSE_GRACE:
            revoked = RefreshToken.objects.filter(
                user_id=refresh.user_id, revoked_at__isnull=True
            ).update(revoked_at=Now())
            logger.warning(
                "a rotated refresh token came back: user %s signed out on %s devices",
                refresh.user_id,
                revoked,
            )
            raise _invalid_token(commit=True)
    refresh, now = _live(refresh, now)
    refresh.revoked_at = now
    refresh.rotated = True
    refresh.save(update_fields=["revoked_at", "rotated"])
    return refresh.user, issue(user=refresh.user)


@use_case
def revoke(*, refresh_token: str) -> None:
    """Sign out: revoke one live refresh token."""
    refresh, now = _live(*_locked(refresh_token))
    refresh.revoked_at = now
    refresh.save(update_fields=["revoked_at"])


def delete_expired() -> int:
    cutoff = Now() - timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION)
    deleted, _by_model = RefreshToken.objects.filter(created_at__lt=cutoff).delete()
    return deleted
