"""PostgreSQL LISTEN for the whole worker: one connection, however many subscribers.

A subscription (`referralAdded`, schema/subscriptions.py; a connection waiting for its
session's end, schema/websocket.py) asks `notices.subscribe(key)` for a queue; the
first subscription of a worker opens this worker's one listening connection, which
LISTENs on every channel and stays open for the worker's life. Each NOTIFY on a channel
is read once and handed to the queues of the key it names, so a thousand subscribers on a
worker cost one connection and one read per notice, and a notice made on any worker of
any host reaches every worker that listens. PostgreSQL delivers a NOTIFY only when the
transaction that sent it commits (users/sql/referrals.sql sends it with the
activation), so a subscriber never hears of a referral that was rolled back.

The connection is a direct one (LISTEN_DATABASE_URL, else the service's database):
PgBouncer in transaction mode does not keep a LISTEN. When the connection drops it is
opened again after a second, then two, up to 30; notices sent while it was down are
lost to this worker's subscribers (a client that must not miss one reads `me` again
after reconnecting, as the reference client does).
"""

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection as django_connection

logger = logging.getLogger(__name__)

QUEUE_SIZE = 100  # notices a slow subscriber may have waiting; more are dropped
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


def connection_params() -> dict[str, Any]:
    """How the listening connection connects: as Django's, without its sync helpers."""
    if settings.LISTEN_DATABASE_URL:
        return {"conninfo": settings.LISTEN_DATABASE_URL, "connect_timeout": 5}
    params = dict(django_connection.get_connection_params())
    for sync_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(sync_only, None)
    # A LISTEN waits for as long as the worker lives: no statement timeout may end it.
    params.pop("options", None)
    return params


class _Listener:
    """The worker's one listening connection, for every channel a `Notices` was made for."""

    def __init__(self) -> None:
        self.channels: dict[str, Notices] = {}
        self.task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the connection listens

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._listen(), name="listen")

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    **connection_params(), autocommit=True
                ) as conn:
                    for channel in self.channels:
                        await conn.execute(f"LISTEN {channel}")
                    self.listening.set()
                    failures = 0
                    async for notice in conn.notifies():
                        self.channels[notice.channel].dispatch(notice.payload)
            except psycopg.Error as error:
                logger.warning("listening failed, again shortly: %s", error)
            finally:
                self.listening.clear()
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1


_listener = _Listener()


class Notices:
    """This worker's subscribers to one channel, by the key each notice is for. Made at
    import (a module's global), before the worker's first subscription starts listening."""

    def __init__(self, channel: str, key_of: Callable[[dict[str, Any]], object]) -> None:
        assert _listener.task is None, f"{channel}: made after the worker began to listen"
        self.channel = channel
        self.key_of = key_of
        self.queues: defaultdict[object, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self.listening = _listener.listening
        _listener.channels[channel] = self

    @asynccontextmanager
    async def subscribe(self, key: object) -> AsyncIterator["asyncio.Queue[dict[str, Any]]"]:
        """A queue of the notices for `key`, for as long as the block lasts."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.queues[key].add(queue)
        _listener.start()
        try:
            yield queue
        finally:
            self.queues[key].discard(queue)
            if not self.queues[key]:
                del self.queues[key]

    def subscribers(self) -> int:
        return sum(len(queues) for queues in self.queues.values())

    def dispatch(self, payload: str) -> None:
        try:
            notice = json.loads(payload)
            key = self.key_of(notice)
        except (ValueError, KeyError, TypeError):
            logger.warning("a notice on %s that is not ours: %.100s", self.channel, payload)
            return
        for queue in self.queues.get(key, ()):
            try:
                queue.put_nowait(notice)
            except asyncio.QueueFull:
                logger.warning("a subscriber on %s is not reading: a notice dropped", self.channel)
