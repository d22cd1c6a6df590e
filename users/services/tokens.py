"""Refresh tokens: issued at sign-in, rotated on every use, revoked at sign-out.

Every refresh token belongs to a session (users.models.Session), the family of one
sign-in on one device; signing out with a refresh token ends its session, and with it
the access tokens of that session (users.selectors.active_user).

Only a SHA-256 of each refresh token is stored. A token's successor is not drawn at
random but derived from it with an HMAC keyed with SECRET_KEY (`successor`): only this
service can compute it, and a second refresh of one token can be given the same new
token as the first without storing any token. So a rotated token that comes back
within REFRESH_REUSE_GRACE seconds (two tabs of one browser refreshing at once: the
second waits on the token's row lock for the first to commit) gets the same new
refresh token, with an access token of the same session, while that successor is
still live. Later, it means the token was copied (OAuth 2.1 reuse detection): its
session ends, every token of it with it, and the person signs in again on that device;
their other devices are not touched. A token revoked by signing out is simply refused.

Lock order: the session's row, then its refresh tokens' (as sessions.py takes them),
so a refresh and a sign-out elsewhere queue instead of deadlocking.
"""

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from users import sql
from users.access_tokens import issue_access_token
from users.errors import DomainError, ErrorCode
from users.hashing import token_hash
from users.models import RefreshToken, Session, User
from users.services.unit import use_case

logger = logging.getLogger(__name__)

REFRESH_TOKEN_SHAPE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Tokens:
    token: str
    token_expires_at: datetime
    refresh_token: str
    session_id: int


def new_refresh_token() -> tuple[str, str]:
    """A new refresh token (256 random bits) and the hash that is stored of it."""
    refresh_token = secrets.token_hex(32)
    return refresh_token, token_hash(refresh_token)


def successor(refresh_token: str) -> str:
    """The refresh token that replaces `refresh_token` when it is rotated: an HMAC of it
    keyed with SECRET_KEY, so nobody without the key can compute it."""
    message = f"refresh:{refresh_token}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def issued(user_id: int, session_id: int, refresh_token: str) -> Tokens:
    """The tokens of a session whose refresh token has been stored."""
    access = issue_access_token(user_id, session_id)
    return Tokens(
        token=access.token,
        token_expires_at=access.expires_at,
        refresh_token=refresh_token,
        session_id=session_id,
    )


def issue(*, user: User, device: str = "", network: str = "") -> Tokens:
    """A new session with its first refresh token, and an access token of it, in the
    caller's transaction (a sign-in makes these in users_sign_in; staff and tests here)."""
    refresh_token, stored = new_refresh_token()
    session = Session.objects.create(user=user, device=device, network=network)
    RefreshToken.objects.create(user=user, session=session, token_hash=stored)
    return issued(user.pk, session.pk, refresh_token)


def _invalid_token(*, commit: bool = False) -> DomainError:
    return DomainError(
        ErrorCode.INVALID_TOKEN,
        _("This refresh token is unknown, expired or revoked. Sign in again."),
        field="refreshToken",
        commit=commit,
    )


def _locked(refresh_token: str) -> tuple[RefreshToken, datetime]:
    """The token's row and its session's, locked (the session first), and the
    database's clock, which every expiry and grace period here is measured by."""
    if not REFRESH_TOKEN_SHAPE.fullmatch(refresh_token):
        raise _invalid_token()
    hashed = token_hash(refresh_token)
    session = (
        Session.objects.select_for_update(of=("self",))  # the session's row only, first
        .annotate(db_now=Now())
        .filter(refresh_tokens__token_hash=hashed)
        .first()
    )
    if session is None:
        raise _invalid_token()
    # The user comes with their inviter: the new tokens' profile shows the code they
    # activated.
    refresh = (
        RefreshToken.objects.select_for_update(of=("self",))
        .select_related("user__invited_by")
        .get(token_hash=hashed)
    )
    refresh.session = session
    now: datetime = session.db_now
    if session.ended_at is not None or not refresh.user.is_active:
        raise _invalid_token()
    return refresh, now


def _expired(refresh: RefreshToken, now: datetime) -> bool:
    return now - refresh.created_at >= timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION)


SESSION_ENDED_CHANNEL = "users_session_ended"  # users/sql/sessions.sql notifies it


def end_sessions(sessions: "list[int]") -> int:
    """End these sessions and revoke their refresh tokens, in the caller's transaction
    (which holds or takes the sessions' rows first), telling every worker on commit
    (users_end_sessions). How many were still live."""
    (ended,) = sql.call("users_end_sessions", sessions=[int(pk) for pk in sessions])
    return int(ended)


def _grace_reuse(refresh: RefreshToken, refresh_token: str, now: datetime) -> Tokens:
    """A rotated token back within the grace period: its successor, if still live."""
    assert refresh.revoked_at is not None
    following = successor(refresh_token)
    live = RefreshToken.objects.filter(
        token_hash=token_hash(following), session_id=refresh.session_id, revoked_at__isnull=True
    ).first()
    if live is None or _expired(live, now):
        raise _invalid_token()
    return issued(refresh.user_id, refresh.session_id, following)


@use_case
def rotate(*, refresh_token: str) -> tuple[User, Tokens]:
    """Revoke `refresh_token` as rotated and issue its successor (see the module's
    docstring for a token that comes back)."""
    refresh, now = _locked(refresh_token)
    if refresh.rotated:
        assert refresh.revoked_at is not None
        if now - refresh.revoked_at < timedelta(seconds=settings.REFRESH_REUSE_GRACE):
            return refresh.user, _grace_reuse(refresh, refresh_token, now)
        end_sessions([refresh.session_id])
        logger.warning(
            "a rotated refresh token came back: session %s of user %s ended",
            refresh.session_id,
            refresh.user_id,
        )
        raise _invalid_token(commit=True)
    if refresh.revoked_at is not None or _expired(refresh, now):
        raise _invalid_token()
    refresh.revoked_at = now
    refresh.rotated = True
    refresh.save(update_fields=["revoked_at", "rotated"])
    following = successor(refresh_token)
    RefreshToken.objects.create(
        user_id=refresh.user_id, session_id=refresh.session_id, token_hash=token_hash(following)
    )
    Session.objects.filter(pk=refresh.session_id).update(last_used_at=Now())
    return refresh.user, issued(refresh.user_id, refresh.session_id, following)


@use_case
def revoke(*, refresh_token: str) -> None:
    """Sign out: end the session of one live refresh token."""
    refresh, now = _locked(refresh_token)
    if refresh.revoked_at is not None or _expired(refresh, now):
        raise _invalid_token()
    end_sessions([refresh.session_id])


def delete_expired() -> int:
    cutoff = Now() - timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION)
    deleted, _by_model = RefreshToken.objects.filter(created_at__lt=cutoff).delete()
    return deleted
