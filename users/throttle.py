"""Sliding-window limits kept in the database, so every worker shares them.

Each key has one row holding the times of its recent events. `lock` takes the row's
lock (creating the row if need be), so concurrent requests for one key queue up and
each sees the count the previous one left: no two can both take the last slot.
Use it inside the transaction that does the limited work, so a refused or failed
request records nothing.
"""

import json
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from django.db import connection
from django.db.models import F, JSONField, Q

from users.models import RateLimit, SendTotal, sql_names


@dataclass
class Window:
    row_id: int
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

    def remove(self, at: float) -> None:
        """Forget the event recorded at `at` (a send whose code was never delivered)."""
        if at in self.hits:
            self.hits = [hit for hit in self.hits if hit != at]
            RateLimit.objects.filter(pk=self.row_id).update(hits=self.hits)

    def add(self, *, keep: int) -> None:
        """Record one event now, keeping at most the `keep` newest."""
        self.hits = [*self.hits, self.now][-keep:]
        RateLimit.objects.filter(pk=self.row_id).update(
            hits=self.hits, expires_at=datetime.fromtimestamp(self.now + self.seconds, tz=UTC)
        )


def _lock_row_sql() -> str:
    """One statement creates the row if need be and locks it: an upsert that touches the
    row takes its lock on PostgreSQL (and SQLite locks the whole database for writes)."""
    table, key, hits, expires_at = sql_names(RateLimit, "key", "hits", "expires_at")
    return (
        f"INSERT INTO {table} ({key}, {hits}, {expires_at}) VALUES (%s, %s, %s) "
        f"ON CONFLICT ({key}) DO UPDATE SET {key} = excluded.{key} RETURNING id, {hits}"
    )


def lock(key: str, *, window: int) -> Window:
    """Lock `key`'s row (creating it) and return its events inside the window."""
    now = time.time()
    hits_field = cast(JSONField[list[float]], RateLimit._meta.get_field("hits"))
    with connection.cursor() as cursor:
        cursor.execute(
            _lock_row_sql(),
            [
                key,
                hits_field.get_db_prep_value([], connection),
                datetime.fromtimestamp(now, tz=UTC),
            ],
        )
        row_id, raw_hits = cursor.fetchone()
    # On SQLite the JSON comes back as text; psycopg has already decoded it.
    hits: list[float] = json.loads(raw_hits) if isinstance(raw_hits, str) else raw_hits
    return Window(row_id, window, now, [t for t in hits if t > now - window])


def take(key: str, *, limit: int, window: int) -> int:
    """Record one event for `key` and return 0, or record nothing and return the wait."""
    locked = lock(key, window=window)
    wait = locked.wait(limit=limit)
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
    return Window(row.pk, window, now, hits).wait(limit=limit, spacing=spacing)


def _take_shard_sql() -> str:
    table, hour, shard, count = sql_names(SendTotal, "hour", "shard", "count")
    return (
        f"INSERT INTO {table} ({hour}, {shard}, {count}) VALUES (%s, %s, 1) "
        f"ON CONFLICT ({hour}, {shard}) DO UPDATE SET {count} = {table}.{count} + 1 "
        f"WHERE {table}.{count} < %s RETURNING {count}"
    )


def take_total(*, limit: int) -> int:
    """Count one send against the whole service's hourly cap: 0, or the seconds to wait
    (until the next clock hour).

    The cap is split exactly between the shards (the first `limit % SHARDS` take one
    more). One statement takes room in a random shard, locking only that row; when
    that shard is full, any other shard with room that no one holds is taken instead,
    so the cap is reached exactly, by any number of workers, without a queue on one row.
    """
    now = time.time()
    hour = int(now // 3600 * 3600)
    shards = min(SendTotal.SHARDS, limit)
    if shards <= 0:
        return max(1, math.ceil(hour + 3600 - now))
    base, extra = divmod(limit, shards)
    shard = secrets.randbelow(shards)
    with connection.cursor() as cursor:
        cursor.execute(_take_shard_sql(), [hour, shard, base + (shard < extra)])
        if cursor.fetchone() is not None:
            return 0
    SendTotal.objects.bulk_create(
        [SendTotal(hour=hour, shard=shard) for shard in range(shards)], ignore_conflicts=True
    )
    with_room = SendTotal.objects.filter(hour=hour, shard__lt=shards).filter(
        Q(shard__lt=extra, count__lt=base + 1) | Q(shard__gte=extra, count__lt=base)
    )
    free = with_room.select_for_update(skip_locked=True).order_by("shard").first()
    if free is None:  # every shard with room is held by a send that may yet roll back
        free = with_room.select_for_update().order_by("shard").first()
    if free is not None:
        SendTotal.objects.filter(pk=free.pk).update(count=F("count") + 1)
        return 0
    return max(1, math.ceil(hour + 3600 - now))
