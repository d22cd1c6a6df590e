"""Work per request is a fixed number of queries, whatever the number of rows or users."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import ME, Api, new_phone
from users.models import User
from users.services import tokens

# Every test twice: with the execution short cut and without it (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("short_cut")

USERS = """query { users(first: 100) { totalCount edges { cursor node {
  id phone inviteCode activatedInviteCode inviteActivatedAt dateJoined } }
  pageInfo { hasNextPage endCursor } } }"""
USERS_WITH_REFERRALS = """query { users(first: 100) { totalCount edges { node {
  phone referrals(first: 5) { totalCount edges { node { phone activatedAt } } } } } } }"""


def queries(api, query, token):
    with CaptureQueriesContext(connection) as captured:
        api.data(query, token=token)
    return len(captured.captured_queries)


_codes = (f"{i:06d}".translate(str.maketrans("01", "AB")) for i in range(10**6))


def add_referrals(inviter, count):
    users = [User(phone=new_phone(), invite_code=next(_codes)) for _ in range(count)]
    for user in User.objects.bulk_create(users):
        user.invited_by = inviter
        user.invite_activated_at = user.date_joined
    User.objects.bulk_update(users, ["invited_by", "invite_activated_at"])


def test_me_is_three_queries_with_1_100_and_1000_referrals(make_user):
    """The token's user, the referral count, the referral page; no page without referrals."""
    api = Api()
    inviter, token = make_user()
    counts = {}
    for total in (0, 1, 100, 1000):
        add_referrals(inviter, total - User.objects.filter(invited_by=inviter).count())
        counts[total] = queries(api, ME, token)
        assert api.me(token)["referrals"]["totalCount"] == total
    assert counts == {0: 2, 1: 3, 100: 3, 1000: 3}


ME_WITH_SESSIONS = "{ me { phone sessions { id device lastUsedAt current } } }"


def test_the_session_check_is_in_the_users_query_and_the_devices_list_is_one_more(make_user):
    """The access token's session is read with the user (no query of its own); listing
    the sessions is one query, with 1 or 30 of them."""
    api = Api()
    user, token = make_user()
    assert queries(api, "{ me { phone } }", token) == 1
    counts = {}
    for total in (1, 30):
        while user.sessions.count() < total:
            tokens.issue(user=user, device="Safari on iOS")
        counts[total] = queries(api, ME_WITH_SESSIONS, token)
        assert len(api.data(ME_WITH_SESSIONS, token=token)["me"]["sessions"]) == total
    assert counts == {1: 2, 30: 2}


def test_users_page_is_three_queries_and_five_with_referrals(make_user):
    """The staff user, the count, the page; with referrals, their counts and their pages."""
    api = Api()
    User.objects.bulk_create(  # more users than a page, older than the ones below
        [User(phone=new_phone(), invite_code=next(_codes)) for _ in range(120)]
    )
    _, staff = make_user(is_staff=True)
    inviters = [make_user()[0] for _ in range(3)]
    assert queries(api, USERS, staff) == 3
    assert queries(api, USERS_WITH_REFERRALS, staff) == 4  # nobody has referrals: no page
    for inviter in inviters:
        add_referrals(inviter, 7)  # more than a page of referrals, each with an inviter
    assert queries(api, USERS, staff) == 3
    assert queries(api, USERS_WITH_REFERRALS, staff) == 5
    page = api.data(USERS_WITH_REFERRALS, token=staff)["users"]["edges"]
    assert len(page) == 100
    shown = {edge["node"]["phone"]: edge["node"]["referrals"] for edge in page}
    for inviter in inviters:
        assert shown[inviter.phone]["totalCount"] == 7
        assert len(shown[inviter.phone]["edges"]) == 5
