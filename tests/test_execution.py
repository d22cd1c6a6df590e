"""The execution short cut (schema/execution.py) answers exactly what graphql-core would."""

import pytest

from schema import execution
from tests.conftest import Api

QUERY = """query Profile($withReferrals: Boolean!, $first: Int!) {
  me { ...Who
    __typename
    again: phone
    activatedInviteCode
    referrals(first: $first) @include(if: $withReferrals) {
      __typename totalCount
      edges { cursor node { ... on Referral { phone } at: activatedAt } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}
fragment Who on Profile { id phone inviteCode inviteActivatedAt dateJoined }"""


@pytest.fixture
def without_short_cut(monkeypatch):
    def disable():
        monkeypatch.setattr(execution, "_reader", lambda parent_type, name: None)

    return disable


@pytest.mark.parametrize("with_referrals", [True, False])
def test_the_short_cut_answers_as_graphql_core_does(
    make_user, without_short_cut, monkeypatch, with_referrals
):
    inviter, token = make_user()
    for _ in range(3):
        _, invited_token = make_user()
        Api().activate(invited_token, inviter.invite_code)
    variables = {"withReferrals": with_referrals, "first": 2}
    plans = []
    make_plan = execution.ExecutionContext._plan
    monkeypatch.setattr(
        execution.ExecutionContext,
        "_plan",
        lambda self, *args: plans.append(args) or make_plan(self, *args),
    )
    quick = Api().post(QUERY, variables, token=token)
    assert plans  # the short cut was taken
    without_short_cut()
    slow = Api().post(QUERY, variables, token=token)
    assert quick == slow and "errors" not in quick
    me = quick["data"]["me"]
    assert me["inviteActivatedAt"] is None and me["activatedInviteCode"] is None  # nulls
    if with_referrals:
        assert me["referrals"]["__typename"] == "ReferralConnection"
        assert len(me["referrals"]["edges"]) == 2 and me["referrals"]["totalCount"] == 3
    else:
        assert "referrals" not in me
