"""Work per request is a fixed number of queries, whatever the number of rows."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import ME, Api, new_phone
from users.models import User

USERS = """query { users(first: 20) { totalCount edges { cursor node {
  id phone inviteCode activatedInviteCode inviteActivatedAt dateJoined } }
  pageInfo { hasNextPage endCursor } } }"""


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


def test_me_costs_the_same_queries_with_0_1_100_and_1000_referrals(make_user):
    api = Api()
    inviter, token = make_user()
    counts = {}
    for total in (0, 1, 100, 1000):
        add_referrals(inviter, total - User.objects.filter(invited_by=inviter).count())
        counts[total] = queries(api, ME, token)
        assert api.me(token)["referrals"]["totalCount"] == total
    assert set(counts.values()) == {counts[0]}, counts
    assert counts[0] <= 4, counts  # the token's user, the referral count, the page


def test_users_page_does_not_grow_with_the_page(make_user):
    api = Api()
    inviter, _ = make_user()
    _, staff = make_user(is_staff=True)
    small = queries(api, USERS, staff)
    add_referrals(inviter, 40)  # more users than a page, each with an inviter to show
    assert queries(api, USERS, staff) == small <= 4
