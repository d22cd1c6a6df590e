"""users.services.tokens called directly: issuing, rotating and revoking refresh tokens."""

from datetime import timedelta

import pytest
from django.utils import timezone

from users.access_tokens import user_id_from_access_token
from users.errors import DomainError, ErrorCode
from users.hashing import token_hash
from users.models import RefreshToken, User
from users.services import tokens


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
    issued = tokens.issue(user=user)
    assert live(issued.refresh_token)
    assert user_id_from_access_token(issued.token) == user.pk
    assert issued.token_expires_at > timezone.now()


def test_issued_signs_an_access_token_for_a_stored_refresh_token(user):
    issued = tokens.issued(user.pk, "a refresh token stored by the caller")
    assert user_id_from_access_token(issued.token) == user.pk
    assert issued.refresh_token == "a refresh token stored by the caller"


def test_rotate_replaces_the_refresh_token_once(user):
    old = tokens.issue(user=user).refresh_token
    rotated_user, new = tokens.rotate(refresh_token=old)
    assert rotated_user == user and live(new.refresh_token) and not live(old)
    assert refusal(tokens.rotate, refresh_token=old) == ErrorCode.INVALID_TOKEN  # two tabs
    assert live(new.refresh_token)  # within the grace period nothing more happens


def test_rotate_of_a_token_that_comes_back_later_signs_the_user_out_everywhere(user):
    old = tokens.issue(user=user).refresh_token
    _, new = tokens.rotate(refresh_token=old)
    other_device = tokens.issue(user=user).refresh_token
    RefreshToken.objects.filter(token_hash=token_hash(old)).update(
        revoked_at=timezone.now() - 2 * tokens.REUSE_GRACE
    )
    assert refusal(tokens.rotate, refresh_token=old) == ErrorCode.INVALID_TOKEN
    assert not live(new.refresh_token) and not live(other_device)  # kept although refused


def test_rotate_refuses_an_expired_token_and_a_disabled_user(user, settings):
    refresh_token = tokens.issue(user=user).refresh_token
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert refusal(tokens.rotate, refresh_token=refresh_token) == ErrorCode.INVALID_TOKEN
    User.objects.filter(pk=user.pk).update(is_active=True)
    settings.REFRESH_TOKEN_EXPIRATION = 0
    assert refusal(tokens.rotate, refresh_token=refresh_token) == ErrorCode.INVALID_TOKEN


def test_revoke_ends_a_refresh_token_once(user):
    refresh_token = tokens.issue(user=user).refresh_token
    tokens.revoke(refresh_token=refresh_token)
    assert not live(refresh_token)
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
