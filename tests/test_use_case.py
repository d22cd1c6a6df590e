"""The transaction helpers use cases run through (users/services/unit.py)."""

import threading
from collections import Counter

import pytest
from django.db import connection
from django.db.models.functions import Now

from tests.conftest import at_once, concurrent
from users.errors import DomainError, ErrorCode
from users.models import RateLimit, User
from users.services.unit import RETRIES, Retry, use_case


def _write(key):
    RateLimit.objects.create(key=key, hits=[], expires_at="2100-01-01T00:00:00Z")


@use_case
def refuse(*, key, commit):
    _write(key)
    raise DomainError(ErrorCode.INVALID_CODE, "no", commit=commit)


def test_a_refusal_leaves_nothing_behind(db):
    with pytest.raises(DomainError):
        refuse(key="plain", commit=False)
    assert not RateLimit.objects.filter(key="plain").exists()


def test_a_refusal_marked_to_commit_keeps_what_it_recorded(db):
    """What the guessing cap and reuse detection rely on."""
    with pytest.raises(DomainError) as raised:
        refuse(key="kept", commit=True)
    assert raised.value.code == ErrorCode.INVALID_CODE
    assert RateLimit.objects.filter(key="kept").exists()


def test_a_use_case_that_saw_its_rows_change_runs_again_from_scratch(db):
    runs = []

    @use_case
    def changing(*, key):
        runs.append(1)
        _write(f"{key}{len(runs)}")
        if len(runs) < RETRIES:
            raise Retry("changed")
        return len(runs)

    assert changing(key="run") == RETRIES
    assert list(RateLimit.objects.values_list("key", flat=True)) == [f"run{RETRIES}"]


def test_a_use_case_that_keeps_seeing_changes_gives_up(db):
    @use_case
    def always_changing():
        raise Retry("changed")

    with pytest.raises(Retry):
        always_changing()


# What PostgreSQL asks for: real conflicts between two transactions, each on a
# connection of its own.


def two_users():
    return [User.objects.create_user(f"+37529123456{i}").pk for i in range(2)]


@concurrent
def test_a_use_case_chosen_to_break_a_deadlock_runs_again_and_both_succeed():
    """Two use cases lock two rows in opposite orders: PostgreSQL ends one of them
    (40P01) and that one runs again. Its second run waits until the other has
    committed: a row lock is no queue, so a retry at once could be caught in a new
    deadlock with the same transaction (it is retried then too, but not exactly once)."""
    first, second = two_users()
    orders = [(first, second), (second, first)]
    both_hold_one = threading.Barrier(2)
    committed = {rows: threading.Event() for rows in orders}
    runs = Counter()

    @use_case
    def lock_both(*, rows):
        runs[rows] += 1
        if runs[rows] > 1:
            [other] = set(orders) - {rows}
            assert committed[other].wait(timeout=30)
        list(User.objects.select_for_update().filter(pk=rows[0]))
        if runs[rows] == 1:
            both_hold_one.wait(timeout=30)  # each holds its first row: a deadlock follows
        list(User.objects.select_for_update().filter(pk=rows[1]))
        return rows

    def run(i):
        done = lock_both(rows=orders[i])
        committed[orders[i]].set()
        return done

    assert at_once(2, run) == orders
    assert sorted(runs.values()) == [1, 2]  # the deadlock's victim ran twice


@concurrent
def test_a_use_case_that_lost_a_serialisation_conflict_runs_again():
    """Two repeatable-read use cases update one row: the one whose snapshot is older
    than the other's commit is ended by PostgreSQL (40001) and runs again."""
    user_id, _ = two_users()
    both_read = threading.Barrier(2)
    first_committed = threading.Event()
    runs = Counter()

    @use_case
    def mark(*, name):
        runs[name] += 1
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        User.objects.get(pk=user_id)  # the snapshot is taken here
        if runs[name] == 1:
            both_read.wait(timeout=30)
            if name == "second":
                assert first_committed.wait(timeout=30)
        User.objects.filter(pk=user_id).update(last_login=Now())
        return name

    def run(i):
        name = ["first", "second"][i]
        result = mark(name=name)
        if name == "first":
            first_committed.set()
        return result

    assert at_once(2, run) == ["first", "second"]
    assert runs == {"first": 1, "second": 2}
