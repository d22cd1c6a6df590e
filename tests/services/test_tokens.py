"""users.services.tokens called directly: issuing, rotating and revoking refresh tokens."""

from datetime import timedelta

import pytest
from django.utils import timezone

from users.access_tokens import Claims, claims_of_access_token
from users.errors import DomainError, ErrorCode
from users.hashing import token_hash
from users.models import RefreshToken, Session, User
from users.services import tokens
from users.services.tokens import REFRESH_TOKEN_SHAPE


@pytest.fixture
def user(db):
    return User.objects.create_user("+375291234567")


def refusal(call, **kwargs) -> ErrorCode:
    with pytest.raises(DomainError) as refused:
        call(**kwargs)
    return refused.value.code


def live(refresh_token: str) -> bool:
    return RefreshToken.objects.filter(
        token_hash=token_hash(refresh_token), revoked_at=None
    ).exists()


def test_new_refresh_token_is_random_and_only_its_hash_is_kept():
    (first, first_hash), (second, _) = tokens.new_refresh_token(), tokens.new_refresh_token()
    assert first != second and len(first) == 64
    assert first_hash == token_hash(first) != first


def test_issue_stores_the_refresh_token_and_signs_an_access_token_for_the_user(user):
    issued = tokens.issue(user=user, device="Chrome on Android", network="192.0.2.0/24")
    assert live(issued.refresh_token)
    claims = claims_of_access_token(issued.token)
    assert claims is not None and claims.user_id == user.pk
    session = Session.objects.get(pk=claims.session_id)
    assert (session.user, session.device, session.network) == (
        user,
        "Chrome on Android",
        "192.0.2.0/24",
    )
    assert issued.token_expires_at > timezone.now()


def test_issued_signs_an_access_token_for_a_stored_refresh_token(user):
    issued = tokens.issued(user.pk, 7, "a refresh token stored by the caller")
    assert claims_of_access_token(issued.token) == Claims(
        user_id=user.pk, session_id=7, expires_at=int(issued.token_expires_at.timestamp())
    )
    assert issued.refresh_token == "a refresh token stored by the caller"


def test_the_successor_of_a_token_is_keyed_with_the_secret_key(settings):
    token = tokens.new_refresh_token()[0]
    following = tokens.successor(token)
    assert REFRESH_TOKEN_SHAPE.fullmatch(following) and following != token
    assert tokens.successor(token) == following
    settings.SECRET_KEY = "another-secret-key-0123456789abcdef0123456789"
    assert tokens.successor(token) != following


def test_rotate_replaces_the_refresh_token_once_and_a_second_tab_gets_the_same(user):
    old = tokens.issue(user=user).refresh_token
    rotated_user, new = tokens.rotate(refresh_token=old)
    assert rotated_user == user and live(new.refresh_token) and not live(old)
    _, again = tokens.rotate(refresh_token=old)  # two tabs, within the grace period
    assert again.refresh_token == new.refresh_token and again.session_id == new.session_id
    assert live(new.refresh_token)
    _, newer = tokens.rotate(refresh_token=new.refresh_token)
    assert refusal(tokens.rotate, refresh_token=old) == ErrorCode.INVALID_TOKEN  # no successor
    assert live(newer.refresh_token)  # within the grace period nothing more happens


def test_rotate_of_a_token_that_comes_back_later_ends_its_session_only(user, settings):
    old = tokens.issue(user=user).refresh_token
    _, new = tokens.rotate(refresh_token=old)
    other_device = tokens.issue(user=user).refresh_token
    RefreshToken.objects.filter(token_hash=token_hash(old)).update(
        revoked_at=timezone.now() - timedelta(seconds=2 * settings.REFRESH_REUSE_GRACE)
    )
    assert refusal(tokens.rotate, refresh_token=old) == ErrorCode.INVALID_TOKEN
    assert not live(new.refresh_token)  # kept although refused
    assert Session.objects.get(pk=new.session_id).ended_at is not None
    assert live(other_device)


def test_rotate_refuses_an_expired_token_and_a_disabled_user(user, settings):
    refresh_token = tokens.issue(user=user).refresh_token
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert refusal(tokens.rotate, refresh_token=refresh_token) == ErrorCode.INVALID_TOKEN
    User.objects.filter(pk=user.pk).update(is_active=True)
    settings.REFRESH_TOKEN_EXPIRATION = 0
    assert refusal(tokens.rotate, refresh_token=refresh_token) == ErrorCode.INVALID_TOKEN


def test_revoke_ends_a_refresh_token_and_its_session_once(user):
    issued = tokens.issue(user=user)
    refresh_token = issued.refresh_token
    tokens.revoke(refresh_token=refresh_token)
    assert not live(refresh_token)
    assert Session.objects.get(pk=issued.session_id).ended_at is not None
    assert refusal(tokens.revoke, refresh_token=refresh_token) == ErrorCode.INVALID_TOKEN
    assert refusal(tokens.rotate, refresh_token=refresh_token) == ErrorCode.INVALID_TOKEN
    assert refusal(tokens.revoke, refresh_token="not a token") == ErrorCode.INVALID_TOKEN


def test_delete_expired_deletes_only_refresh_tokens_past_their_lifetime(user, settings):
    kept = tokens.issue(user=user).refresh_token
    old = tokens.issue(user=user).refresh_token
    lifetime = timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION)
    RefreshToken.objects.filter(token_hash=token_hash(old)).update(
        created_at=timezone.now() - lifetime - timedelta(minutes=1)
    )
    assert tokens.delete_expired() == 1
    assert list(RefreshToken.objects.values_list("token_hash", flat=True)) == [token_hash(kept)]
