"""How a use case's database work runs: in one transaction, retried when PostgreSQL asks.

Work of several statements is a `use_case`: the decorator owns its transaction. Work
that is one statement (a function of users/sql, its own transaction) is only
`retrying`, as `issue_code` is. Two public services are neither: `verify_code` checks
its input, then hands the sign-in to one of the two (one statement without an invite
code, a `use_case` with one); `send_code`, the one async use case, awaits the
delivery between its statements, each run through the caller's `off_loop` and each
`retrying`, so that no transaction stays open while a provider is waited for.

A `use_case`'s body reads as the rule it implements:

- it commits when the function returns;
- it rolls back when the function raises, DomainError included: a refusal leaves
  nothing behind, unless the error says `commit=True`. Those refusals record
  something that must stay, a wrong guess or a revoked token family; the decorator
  commits, then raises the error.

Both run the work again, at most RETRIES times in all, when PostgreSQL ended the
transaction to break a deadlock (40P01) or a serialisation conflict (40001), or when
the work raised `Retry` because what it read changed before it could lock it (or
every invite code it drew for a new user was taken). If the last run still fails that
way, the error goes out: the API answers SERVICE_UNAVAILABLE, a moment's contention
and not the caller's fault.
"""

import functools
from collections.abc import Callable

from django.db import OperationalError, transaction

from users.errors import DomainError, Retry

__all__ = ["Retry", "retrying", "use_case"]

RETRIES = 3
RETRYABLE = {"40P01", "40001"}


def _retryable(error: Exception) -> bool:
    return isinstance(error, Retry) or getattr(error.__cause__, "sqlstate", None) in RETRYABLE


def retrying[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` again, at most RETRIES times in all, when PostgreSQL or `fn` asks.

    For a use case that is one statement (its own transaction); the rest are `use_case`.
    """

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, RETRIES + 1):
            try:
                return fn(*args, **kwargs)
            except (OperationalError, Retry) as error:
                if attempt == RETRIES or not _retryable(error):
                    raise
        raise AssertionError("unreachable")

    return run


def use_case[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` in its own transaction, retrying; see the module docstring."""

    @functools.wraps(fn)
    def in_transaction(*args: P.args, **kwargs: P.kwargs) -> R:
        with transaction.atomic():
            try:
                return fn(*args, **kwargs)
            except DomainError as error:
                if not error.commit:
                    raise
                refusal = error  # leaving the block commits what it recorded
        raise refusal

    return retrying(in_transaction)
