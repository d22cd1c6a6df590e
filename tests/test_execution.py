"""The execution short cut (schema/execution.py) answers exactly what graphql-core would,
hides no bug of its own, and stays off when it is told to or cannot run."""

import logging
from datetime import UTC, datetime

import graphql
import pytest
import strawberry

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
def plans(monkeypatch):
    """The plans the short cut makes (one per field it takes)."""
    made = []
    make_plan = execution.ExecutionContext._plan
    monkeypatch.setattr(
        execution.ExecutionContext,
        "_plan",
        lambda self, *args: made.append(args) or make_plan(self, *args),
    )
    return made


@pytest.mark.parametrize("with_referrals", [True, False])
def test_the_short_cut_answers_as_graphql_core_does(make_user, settings, plans, with_referrals):
    inviter, token = make_user()
    for _ in range(3):
        _, invited_token = make_user()
        Api().activate(invited_token, inviter.invite_code)
    variables = {"withReferrals": with_referrals, "first": 2}
    quick = Api().post(QUERY, variables, token=token)
    assert plans  # the short cut was taken
    settings.GRAPHQL_SHORT_CUT = False
    plans.clear()
    slow = Api().post(QUERY, variables, token=token)
    assert plans == []  # turned off at once, for the next operation
    assert quick == slow and "errors" not in quick
    me = quick["data"]["me"]
    assert me["inviteActivatedAt"] is None and me["activatedInviteCode"] is None  # nulls
    if with_referrals:
        assert me["referrals"]["__typename"] == "ReferralConnection"
        assert len(me["referrals"]["edges"]) == 2 and me["referrals"]["totalCount"] == 3
    else:
        assert "referrals" not in me


# Values the schema's own code cannot read or serialise: graphql-core says what is wrong,
# at the field's own path, with the short cut as without it.


class Unreadable:
    @property
    def name(self):
        raise RuntimeError("this attribute cannot be read")


@strawberry.type
class Item:
    name: str
    seen: datetime


@strawberry.type
class Box:
    label: str
    dated: list[Item] | None
    named: list[Item] | None


FINE = Item(name="fine", seen=datetime(2026, 1, 1, tzinfo=UTC))


@strawberry.type
class Query:
    @strawberry.field
    def box(self) -> Box:
        no_date = Item(name="no date", seen="not a datetime")
        return Box(label="box", dated=[FINE, no_date], named=[FINE, Unreadable()])


BOX = "{ box { label dated { name seen } named { name } } }"


def test_values_that_do_not_read_or_serialise_are_reported_as_graphql_core_does():
    with_short_cut = strawberry.Schema(
        query=Query, execution_context_class=execution.ExecutionContext
    )
    without = strawberry.Schema(query=Query)
    quick, slow = with_short_cut.execute_sync(BOX), without.execute_sync(BOX)
    assert quick.data == slow.data == {"box": {"label": "box", "dated": None, "named": None}}
    assert [(e.message, e.path) for e in quick.errors] == [(e.message, e.path) for e in slow.errors]
    assert [e.path for e in quick.errors] == [
        ["box", "dated", 1, "seen"],
        ["box", "named", 1, "name"],
    ]


def test_a_bug_of_the_short_cut_is_not_hidden_behind_graphql_core(make_user, monkeypatch):
    """Only the short cut's own signal sends a field down graphql-core's path; anything
    else it raises is an error in the answer (logged as unexpected), not a silent
    fallback that would hide it."""
    inviter, token = make_user()
    _, invited_token = make_user()
    Api().activate(invited_token, inviter.invite_code)

    def broken(value):
        raise TypeError("a bug in the short cut")

    monkeypatch.setattr(execution, "_typename", broken)  # its reader of __typename
    body = Api().post("{ me { referrals { edges { __typename } } } }", token=token)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


def test_it_stays_off_with_a_graphql_core_it_was_not_written_for(settings, monkeypatch, caplog):
    assert execution.execution_context_class() is execution.ExecutionContext
    monkeypatch.setattr(graphql, "version_info", graphql.version_info.from_str("3.3.0"))
    monkeypatch.setattr(graphql, "version", "3.3.0")
    with caplog.at_level(logging.WARNING, logger="schema.execution"):
        assert execution.execution_context_class() is None  # Strawberry's own
    [line] = caplog.messages
    assert line == (
        "GRAPHQL_SHORT_CUT: the execution short cut stays off: "
        "it was written for graphql-core 3.2, and 3.3.0 is installed"
    )
    caplog.clear()
    settings.GRAPHQL_SHORT_CUT = False
    assert execution.execution_context_class() is None
    assert caplog.messages == []  # turned off on purpose: nothing to say
