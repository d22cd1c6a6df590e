"""Access and refresh tokens: the one module that uses django-graphql-jwt.

django-graphql-jwt pins graphene and so graphql-core < 3.3, which holds strawberry
below 0.328; keeping every use of it here makes replacing it one file's work.

Access tokens are JWTs (HS256, keyed with SECRET_KEY) that carry the user's id in
`sub`, never the phone, and always have their expiry checked. Refresh tokens are
random strings stored by django-graphql-jwt's refresh_token app; they rotate on use.
"""

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from graphql_jwt.exceptions import JSONWebTokenError
from graphql_jwt.refresh_token.shortcuts import create_refresh_token
from graphql_jwt.refresh_token.utils import get_refresh_token_model
from graphql_jwt.utils import get_payload, jwt_encode

from users.errors import DomainError, ErrorCode
from users.models import User
from users.selectors import active_user

logger = logging.getLogger(__name__)

REFRESH_TOKEN_SHAPE = re.compile(r"[0-9a-f]{16,128}")
REUSE_GRACE = timedelta(seconds=10)


@dataclass(frozen=True)
class Tokens:
    token: str
    token_expires_at: datetime
    refresh_token: str


def jwt_payload(user, context=None) -> dict:
    now = datetime.now(tz=UTC)
    return {
        "sub": str(user.pk),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=settings.JWT_EXPIRATION)).timestamp()),
    }


def user_id_from_payload(payload: dict) -> str | None:
    return payload.get("sub")


def active_user_by_id(user_id) -> User | None:
    """The user a token names, with what a profile shows, or None."""
    try:
        pk = int(user_id)
    except (TypeError, ValueError):
        return None
    return active_user(user_id=pk)


def user_id_from_access_token(token: str) -> int | None:
    """Check signature, algorithm and expiry; no database. None when not good."""
    if not token or len(token) > 4096:
        return None
    try:
        payload = get_payload(token)
    except JSONWebTokenError:
        return None
    try:
        return int(user_id_from_payload(payload))
    except (TypeError, ValueError):
        return None


def issue_tokens(user: User) -> Tokens:
    """A new access token and a new stored refresh token for `user`."""
    payload = jwt_payload(user)
    return Tokens(
        token=jwt_encode(payload),
        token_expires_at=datetime.fromtimestamp(payload["exp"], tz=UTC),
        refresh_token=create_refresh_token(user).get_token(),
    )


def _invalid_token() -> DomainError:
    return DomainError(
        ErrorCode.INVALID_TOKEN,
        "This refresh token is unknown, expired or revoked. Sign in again.",
        field="refreshToken",
    )


def _locked_refresh_token(token: str):
    if not isinstance(token, str) or not REFRESH_TOKEN_SHAPE.fullmatch(token):
        return None
    RefreshToken = get_refresh_token_model()
    return (
        RefreshToken.objects.select_for_update()
        .select_related("user")
        .filter(token=token)
        .order_by("revoked")
        .first()
    )


def _usable(refresh) -> bool:
    if refresh is None or refresh.revoked is not None or not refresh.user.is_active:
        return False
    age = timezone.now() - refresh.created
    return age < timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION)


def rotate_refresh_token(*, refresh_token: str) -> tuple[User, Tokens]:
    """Revoke `refresh_token` and issue new tokens.

    A refresh token that was already revoked and comes back means it was copied:
    every live refresh token of that user is revoked too (OAuth 2.1 reuse detection),
    and the person signs in again. Within REUSE_GRACE of its revocation the reuse is
    taken for two tabs of one app refreshing at once: refused, nothing more.
    """
    reused = False
    with transaction.atomic():
        refresh = _locked_refresh_token(refresh_token)
        if refresh is not None and refresh.revoked is not None:
            if timezone.now() - refresh.revoked < REUSE_GRACE:
                raise _invalid_token()
            reused = True
            get_refresh_token_model().objects.filter(
                user_id=refresh.user_id, revoked__isnull=True
            ).update(revoked=timezone.now())
        elif _usable(refresh):
            refresh.revoke()
            return refresh.user, issue_tokens(refresh.user)
    if reused:
        logger.warning(
            "revoked refresh token reused; user %s signed out everywhere", refresh.user_id
        )
    raise _invalid_token()


def revoke_refresh_token(*, refresh_token: str) -> None:
    """Sign out: revoke one live refresh token."""
    with transaction.atomic():
        refresh = _locked_refresh_token(refresh_token)
        if refresh is None or refresh.revoked is not None or not _usable(refresh):
            raise _invalid_token()
        refresh.revoke()


def delete_expired_refresh_tokens() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION)
    deleted, _ = get_refresh_token_model().objects.filter(created__lt=cutoff).delete()
    return deleted
