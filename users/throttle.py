"""Sliding-window limits kept in the database, so every worker shares them.

Each key has one row holding the times of its recent events. `lock` takes the row
with SELECT ... FOR UPDATE, so concurrent requests for one key queue up and each
sees the count the previous one left: no two requests can both take the last slot.
Use it inside the transaction that does the limited work, so a refused or failed
request records nothing.
"""

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from users.models import RateLimit


@dataclass
class Window:
    row: RateLimit
    seconds: int
    now: float
    hits: list[float]

    def wait(self, *, limit: int, spacing: int = 0) -> int:
        """Seconds until one more event fits (`limit` per window, `spacing` apart), or 0."""
        waits = [0.0]
        if len(self.hits) >= limit:
            waits.append(sorted(self.hits)[len(self.hits) - limit] + self.seconds - self.now)
        if spacing and self.hits:
            waits.append(max(self.hits) + spacing - self.now)
        return max(0, math.ceil(max(waits)))

    def add(self, *, keep: int) -> None:
        """Record one event now, keeping at most the `keep` newest."""
        self.hits = [*self.hits, self.now][-keep:]
        self.row.hits = self.hits
        self.row.expires_at = datetime.fromtimestamp(self.now + self.seconds, tz=UTC)
        self.row.save(update_fields=["hits", "expires_at"])


def lock(key: str, *, window: int) -> Window:
    """Lock `key`'s row (creating it) and return its events inside the window."""
    now = time.time()
    RateLimit.objects.bulk_create(
        [RateLimit(key=key, hits=[], expires_at=datetime.fromtimestamp(now, tz=UTC))],
        ignore_conflicts=True,
    )
    row = RateLimit.objects.select_for_update().get(key=key)
    return Window(row, window, now, [t for t in row.hits if t > now - window])


def take(key: str, *, limit: int, window: int, spacing: int = 0) -> int:
    """Record one event for `key` and return 0, or record nothing and return the wait."""
    locked = lock(key, window=window)
    wait = locked.wait(limit=limit, spacing=spacing)
    if not wait:
        locked.add(keep=limit)
    return wait


def peek(key: str, *, limit: int, window: int, spacing: int = 0) -> int:
    """The wait `take` would return now, without locking or recording anything."""
    now = time.time()
    row = RateLimit.objects.filter(key=key).first()
    if row is None:
        return 0
    hits = [t for t in row.hits if t > now - window]
    return Window(row, window, now, hits).wait(limit=limit, spacing=spacing)
