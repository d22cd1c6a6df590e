"""Access tokens: the one module that uses django-graphql-jwt.

django-graphql-jwt pins graphene and so graphql-core < 3.3, which holds strawberry
below 0.328; keeping every use of it here makes replacing it one file's work.

Access tokens are JWTs (HS256, keyed with SECRET_KEY) that carry the user's id in
`sub`, never the phone, and the session they belong to in `sid` (users.models.Session),
and always have their expiry checked: a token without `exp` or `sid` is refused even
when its signature is good. Whether the session is still live is the database's to say
(users.selectors.active_user), on every request. Each token has its own random `jti`,
so two tokens issued for one user in the same second still differ: a client or a log
can tell a refreshed token from the one it replaced.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from graphql_jwt.exceptions import JSONWebTokenError
from graphql_jwt.utils import get_payload, jwt_encode

MAX_TOKEN_LENGTH = 4096
REQUIRED_CLAIMS = ("sub", "sid", "iat", "exp")


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class Claims:
    user_id: int
    session_id: int
    expires_at: int  # epoch seconds: a subscription is closed when its token expires


def issue_access_token(user_id: int, session_id: int) -> AccessToken:
    now = timezone.now().replace(microsecond=0)
    expires_at = now + timedelta(seconds=settings.JWT_EXPIRATION)
    payload = {
        "sub": str(user_id),
        "sid": str(session_id),
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": secrets.token_urlsafe(16),
    }
    return AccessToken(token=jwt_encode(payload), expires_at=expires_at)


def claims_of_access_token(token: str | None) -> Claims | None:
    """The user and session of a good token: signature, algorithm and expiry checked; no
    database."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        payload = get_payload(token)
    except JSONWebTokenError:
        return None
    if not all(isinstance(payload.get(claim), str | int) for claim in REQUIRED_CLAIMS):
        return None
    try:
        return Claims(
            user_id=int(payload["sub"]),
            session_id=int(payload["sid"]),
            expires_at=int(payload["exp"]),
        )
    except ValueError:
        return None


def user_id_from_access_token(token: str | None) -> int | None:
    """The user id of a good token (as claims_of_access_token checks it)."""
    claims = claims_of_access_token(token)
    return None if claims is None else claims.user_id
