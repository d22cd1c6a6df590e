"""The transaction helper every use case runs through (users/services/unit.py)."""

import pytest

from users.errors import DomainError, ErrorCode
from users.models import RateLimit
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
