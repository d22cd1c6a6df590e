"""users.services.invites called directly: activating another user's invite code."""

import pytest
from django.db import transaction

from users.errors import DomainError, ErrorCode
from users.models import User
from users.services import invites


def refusal(**kwargs) -> ErrorCode:
    with pytest.raises(DomainError) as refused:
        invites.activate_invite(**kwargs)
    return refused.value.code


@pytest.fixture
def people(db):
    """Three users, none invited yet."""
    return [User.objects.create_user(f"+37529123456{i}") for i in range(3)]


def test_normalize_invite_code_trims_and_upper_cases_or_refuses_the_shape():
    assert invites.normalize_invite_code("  abc234 ") == "ABC234"
    assert invites.normalize_invite_code("O0I1L0") is None  # letters never drawn
    assert invites.normalize_invite_code("A" * 10_000) is None


def test_activate_invite_makes_the_owner_the_inviter_once_ever(people):
    inviter, other, user = people
    activated = invites.activate_invite(user_id=user.pk, invite_code=inviter.invite_code.lower())
    assert activated.invited_by == inviter and activated.invite_activated_at is not None
    again = invites.activate_invite(user_id=user.pk, invite_code=inviter.invite_code)
    assert again.invite_activated_at == activated.invite_activated_at  # changes nothing
    assert refusal(user_id=user.pk, invite_code=other.invite_code) == (
        ErrorCode.INVITE_ALREADY_ACTIVATED
    )


def test_activate_invite_refuses_ones_own_code_and_a_cycle(people):
    a, b, c = people
    assert refusal(user_id=a.pk, invite_code=a.invite_code) == ErrorCode.SELF_INVITE
    invites.activate_invite(user_id=b.pk, invite_code=a.invite_code)  # a invited b
    invites.activate_invite(user_id=c.pk, invite_code=b.invite_code)  # b invited c
    assert refusal(user_id=a.pk, invite_code=c.invite_code) == ErrorCode.INVITE_CYCLE
    assert User.objects.get(pk=a.pk).invited_by is None


def test_activate_invite_counts_misses_and_then_refuses_to_look(people, settings):
    settings.INVITE_MAX_FAILED_PER_HOUR = 2
    inviter, _, user = people
    assert refusal(user_id=user.pk, invite_code="ZZZZZZ") == ErrorCode.INVITE_NOT_FOUND
    assert refusal(user_id=user.pk, invite_code="nonsense") == ErrorCode.INVITE_NOT_FOUND
    assert refusal(user_id=user.pk, invite_code=inviter.invite_code) == ErrorCode.RATE_LIMITED


def test_activate_runs_in_the_callers_transaction(people):
    inviter, _, user = people
    with transaction.atomic():
        invites.activate(user_id=user.pk, invite_code=inviter.invite_code)
        transaction.set_rollback(True)
    assert User.objects.get(pk=user.pk).invited_by is None


def test_owner_for_new_user_is_the_active_owner_of_the_code(people):
    inviter, _, _ = people
    new_phone = "+375297654321"
    assert invites.owner_for_new_user(phone=new_phone, invite_code=inviter.invite_code) == inviter
    User.objects.filter(pk=inviter.pk).update(is_active=False)
    with pytest.raises(DomainError) as refused:
        invites.owner_for_new_user(phone=new_phone, invite_code=inviter.invite_code)
    assert refused.value.code == ErrorCode.INVITE_NOT_FOUND
