"""Sliding-window limits kept in the database, so every worker and host shares them.

The rules are SQL functions (users/sql/windows.sql, their only text), timed by the
database's clock; these are their typed callers. Use them inside the transaction that
does the limited work, so a refused or failed request records nothing unless it
commits on purpose.
"""

from django.db import connection


def check(key: str, *, limit: int, window: int, spacing: int = 0, lock: bool = True) -> int:
    """The seconds until one more event of `key` fits (0: now), recording nothing.

    With `lock`, `key`'s row stays locked until the transaction ends, so the caller can
    decide and then `take` without a race.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT users_window_check(%s, %s, %s, %s, %s)", [key, limit, window, spacing, lock]
        )
        (wait,) = cursor.fetchone()
    return int(wait)


def take(key: str, *, limit: int, window: int, spacing: int = 0) -> tuple[int, float | None]:
    """Record one event of `key` if it fits: (0, the event), else (the wait, None)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wait, event FROM users_window_take(%s, %s, %s, %s)",
            [key, limit, window, spacing],
        )
        wait, event = cursor.fetchone()
    return int(wait), event


def forget(key: str, event: float) -> None:
    """Strike the event `take` recorded at `event` off `key`'s window."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT users_window_forget(%s, %s)", [key, event])
