"""Activating invite codes and seeing who joined through yours."""

import pytest

from tests.conftest import (
    ACTIVATE,
    ME,
    Api,
    at_once,
    concurrent,
    error_codes,
    new_phone,
    top_error_code,
)
from users.models import OtpChallenge, User
from users.services import tokens

# Every test twice: with the execution short cut and without it (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("short_cut")


def test_activating_a_code_shows_on_both_profiles(api, make_user):
    inviter, inviter_token = make_user()
    _, token = make_user()
    result = api.activate(token, inviter.invite_code)
    assert result["userErrors"] == []
    assert result["profile"]["activatedInviteCode"] == inviter.invite_code
    me = api.me(token)
    assert me["activatedInviteCode"] == inviter.invite_code and me["inviteActivatedAt"]
    referrals = api.me(inviter_token)["referrals"]
    assert referrals["totalCount"] == 1
    assert referrals["edges"][0]["node"] == {
        "phone": me["phone"],
        "activatedAt": me["inviteActivatedAt"],
    }


def test_codes_are_trimmed_and_case_insensitive(api, make_user):
    inviter, _ = make_user()
    _, token = make_user()
    assert api.activate(token, f"  {inviter.invite_code.lower()} ")["userErrors"] == []


@pytest.mark.parametrize("code", ["ZZZZZZ", "abc", "", "O0I1L0", "\x00" * 6, "A" * 10_000])
def test_unknown_or_malformed_codes_are_not_found(api, make_user, code):
    _, token = make_user()
    result = api.activate(token, code)
    assert error_codes(result) == ["INVITE_NOT_FOUND"]
    assert result["userErrors"][0]["field"] == "inviteCode" and result["profile"] is None


def test_own_code_is_refused(api, make_user):
    user, token = make_user()
    assert error_codes(api.activate(token, user.invite_code)) == ["SELF_INVITE"]


def test_a_code_is_activated_once_ever(api, make_user):
    first, _ = make_user()
    second, _ = make_user()
    _, token = make_user()
    assert api.activate(token, first.invite_code)["userErrors"] == []
    activated_at = api.me(token)["inviteActivatedAt"]
    again = api.activate(token, first.invite_code)
    assert again["userErrors"] == [] and again["profile"]["inviteActivatedAt"] == activated_at
    assert error_codes(api.activate(token, second.invite_code)) == ["INVITE_ALREADY_ACTIVATED"]
    assert api.me(token)["activatedInviteCode"] == first.invite_code


def test_cycles_are_refused_directly_and_through_others(api, make_user):
    a, a_token = make_user()
    b, b_token = make_user()
    c, c_token = make_user()
    assert api.activate(b_token, a.invite_code)["userErrors"] == []  # A invited B
    assert error_codes(api.activate(a_token, b.invite_code)) == ["INVITE_CYCLE"]
    assert api.activate(c_token, b.invite_code)["userErrors"] == []  # B invited C
    assert error_codes(api.activate(a_token, c.invite_code)) == ["INVITE_CYCLE"]
    assert api.me(a_token)["activatedInviteCode"] is None


def test_activation_needs_a_signed_in_user(api, make_user):
    inviter, _ = make_user()
    body = api.post(ACTIVATE, {"code": inviter.invite_code})
    assert top_error_code(body) == "UNAUTHENTICATED"


def test_sign_in_with_an_invite_code_activates_it(api, make_user):
    inviter, inviter_token = make_user()
    signed_in = api.sign_in("+375291234567", invite=inviter.invite_code.lower())
    assert signed_in["isNewUser"] is True
    assert signed_in["profile"]["activatedInviteCode"] == inviter.invite_code
    assert api.me(inviter_token)["referrals"]["totalCount"] == 1


def test_an_empty_invite_code_on_sign_in_means_none(api):
    assert api.sign_in("+375291234567", invite="  ")["profile"]["activatedInviteCode"] is None


def test_a_refused_invite_on_sign_in_writes_nothing_and_keeps_the_code(api):
    sent = api.send("+375291234567")
    refused = api.verify("+375291234567", sent["debugCode"], invite="ZZZZZZ")
    assert error_codes(refused) == ["INVITE_NOT_FOUND"] and refused["token"] is None
    assert not User.objects.exists()
    assert OtpChallenge.objects.get().attempts == 0
    retried = api.verify("+375291234567", sent["debugCode"])
    assert retried["userErrors"] == [] and retried["isNewUser"] is True


def test_a_refused_invite_for_a_known_user_keeps_the_code(api, make_user):
    first, _ = make_user()
    second, _ = make_user()
    _, token = make_user(phone="+375291234567")
    assert api.activate(token, first.invite_code)["userErrors"] == []
    sent = api.send("+375291234567")
    refused = api.verify("+375291234567", sent["debugCode"], invite=second.invite_code)
    assert error_codes(refused) == ["INVITE_ALREADY_ACTIVATED"]
    assert api.verify("+375291234567", sent["debugCode"])["userErrors"] == []


def test_who_has_activated_a_code_learns_nothing_about_other_codes(api, make_user):
    first, _ = make_user()
    second, _ = make_user()
    _, token = make_user()
    assert api.activate(token, first.invite_code)["userErrors"] == []
    for code in [second.invite_code, "ZZZZZZ", "abc"]:
        assert error_codes(api.activate(token, code)) == ["INVITE_ALREADY_ACTIVATED"]


def test_invite_codes_cannot_be_probed(api, make_user, settings):
    settings.INVITE_MAX_FAILED_PER_HOUR = 3
    real, _ = make_user()
    _, token = make_user()
    for code in ["ZZZZZ2", "ZZZZZ3", "ZZZZZ4"]:
        assert error_codes(api.activate(token, code)) == ["INVITE_NOT_FOUND"]
    for code in ["ZZZZZ5", real.invite_code]:  # even a real code is not looked up now
        limited = api.activate(token, code)
        assert error_codes(limited) == ["RATE_LIMITED"]
        assert 3500 < limited["userErrors"][0]["retryAfter"] <= 3600
    # Nor through sign-in, where a refused invite leaves the code live to try again.
    sent = api.send("+375291234567")
    for code in ["ZZZZZ6", "ZZZZZ7", "ZZZZZ8"]:
        refused = api.verify("+375291234567", sent["debugCode"], invite=code)
        assert error_codes(refused) == ["INVITE_NOT_FOUND"]
    limited = api.verify("+375291234567", sent["debugCode"], invite=real.invite_code)
    assert error_codes(limited) == ["RATE_LIMITED"]
    assert api.verify("+375291234567", sent["debugCode"])["userErrors"] == []


def test_the_code_is_checked_before_the_invite(api):
    sent = api.send("+375291234567")
    wrong = "0000" if sent["debugCode"] != "0000" else "1111"
    assert error_codes(api.verify("+375291234567", wrong, invite="ZZZZZZ")) == ["INVALID_CODE"]
    assert OtpChallenge.objects.get().attempts == 1


def test_referrals_are_paged_oldest_first(api, make_user):
    inviter, token = make_user()
    phones = []
    for _ in range(5):
        user, user_token = make_user()
        assert api.activate(user_token, inviter.invite_code)["userErrors"] == []
        phones.append(user.phone)
    seen, after = [], None
    while True:
        referrals = api.me(token, first=2, after=after)["referrals"]
        assert referrals["totalCount"] == 5
        seen += [edge["node"]["phone"] for edge in referrals["edges"]]
        assert referrals["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not referrals["pageInfo"]["hasNextPage"]:
            break
        after = referrals["pageInfo"]["endCursor"]
    assert seen == phones


def test_page_size_is_capped_and_bad_cursors_are_refused(api, make_user):
    _, token = make_user()
    assert api.me(token, first=0)["referrals"]["edges"] == []
    assert top_error_code(api.post(ME, {"first": -1}, token=token)) == "BAD_USER_INPUT"
    for cursor in ["not-a-cursor", "\x00", "QQ==", "x" * 10_000]:
        assert top_error_code(api.post(ME, {"after": cursor}, token=token)) == "BAD_USER_INPUT"


def test_first_is_capped_at_100(api, make_user):
    inviter, token = make_user()
    users = [User.objects.create_user(new_phone()) for _ in range(101)]
    for user in users:
        user.invited_by = inviter
        user.invite_activated_at = user.date_joined
        user.save()
    referrals = api.me(token, first=500)["referrals"]
    assert len(referrals["edges"]) == 100 and referrals["pageInfo"]["hasNextPage"] is True
    assert referrals["totalCount"] == 101


# Real concurrent transactions (PostgreSQL in CI).


@concurrent
def test_concurrent_activations_by_one_user_leave_one_code(make_user):
    owners = [make_user()[0] for _ in range(8)]
    for _ in range(5):
        user, token = make_user()
        results = at_once(8, lambda i, token=token: Api().activate(token, owners[i].invite_code))
        won = [r for r in results if r["userErrors"] == []]
        assert len(won) == 1
        lost = [r for r in results if r not in won]
        assert all(error_codes(r) == ["INVITE_ALREADY_ACTIVATED"] for r in lost)
        user.refresh_from_db()
        assert user.invited_by.invite_code == won[0]["profile"]["activatedInviteCode"]


@concurrent
def test_two_users_activating_each_others_codes_at_once_leave_at_most_one(make_user):
    for _ in range(5):
        a, a_token = make_user()
        b, b_token = make_user()
        pairs = [(a_token, b.invite_code), (b_token, a.invite_code)]
        results = at_once(2, lambda i, pairs=pairs: Api().activate(*pairs[i]))
        codes = sorted(tuple(error_codes(r)) for r in results)
        assert codes == [(), ("INVITE_CYCLE",)]
        assert User.objects.filter(pk__in=[a.pk, b.pk], invited_by__isnull=False).count() == 1


@concurrent
def test_a_longer_cycle_closed_from_two_ends_at_once_is_refused(make_user):
    """A -> B -> C -> D exists as B invited by C...; closing it from both ends at once."""
    for _ in range(3):
        a, a_token = make_user()
        b, _ = make_user()
        c, c_token = make_user()
        d, _ = make_user()
        # Existing links: B joined through C, D joined through A.
        assert Api().activate(issue_for(b), c.invite_code)["userErrors"] == []
        assert Api().activate(issue_for(d), a.invite_code)["userErrors"] == []
        # A activates B's code while C activates D's: together A->B->C->D->A.
        pairs = [(a_token, b.invite_code), (c_token, d.invite_code)]
        results = at_once(2, lambda i, pairs=pairs: Api().activate(*pairs[i]))
        assert sorted(tuple(error_codes(r)) for r in results) == [(), ("INVITE_CYCLE",)]


def issue_for(user):
    return tokens.issue(user=user).token


@concurrent
def test_concurrent_first_sign_ins_with_one_code_create_one_user():
    api = Api()
    code = api.send("+375291234567")["debugCode"]
    results = at_once(10, lambda i: Api().verify("+375291234567", code))
    won = [r for r in results if r["userErrors"] == []]
    assert len(won) == 1 and won[0]["isNewUser"] is True
    assert all(error_codes(r) == ["CODE_EXPIRED"] for r in results if r not in won)
    assert User.objects.filter(phone="+375291234567").count() == 1
