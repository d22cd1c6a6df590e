"""Liveness and readiness: /healthz and /readyz."""

import asyncio
import functools
import logging
import time
import weakref

import psycopg
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

READY_TIMEOUT = 2.0
READY_CACHE_SECONDS = 1.0


@require_safe
async def healthz(request: HttpRequest) -> HttpResponse:
    """200 while the process serves."""
    return JsonResponse({"status": "ok"})


@functools.cache
def _conninfo() -> str:
    """The default database's address and options as Django connects (the embedded
    server's socket included, which this may start), without the pool's settings."""
    params = connection.get_connection_params()
    usable = {
        key: str(value)
        for key, value in params.items()
        if isinstance(value, str | int) and value not in (None, "")
    }
    return psycopg.conninfo.make_conninfo(**usable)


async def _postgresql_answers() -> None:
    """`SELECT 1` on a connection of the check's own, not one from the pool: a pool
    busy with a burst of requests is load, not a database that is down."""
    conninfo = await asyncio.to_thread(_conninfo)
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    try:
        await conn.execute("SELECT 1")
    finally:
        await conn.close()


async def _check() -> bool:
    """Does the database answer `SELECT 1` within READY_TIMEOUT seconds?"""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await _postgresql_answers()
        return True
    except (TimeoutError, OSError, DatabaseError, psycopg.Error) as error:
        logger.warning("readiness: the database did not answer: %r", error)
        return False


_last_check: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[float, asyncio.Task[bool]]
] = weakref.WeakKeyDictionary()


async def database_answers() -> bool:
    """The database's readiness, checked at most once a second however many probes ask."""
    loop = asyncio.get_running_loop()
    checked_at, task = _last_check.get(loop, (0.0, None))
    if task is None or (time.monotonic() - checked_at > READY_CACHE_SECONDS and task.done()):
        task = loop.create_task(_check())
        _last_check[loop] = (time.monotonic(), task)
    return await asyncio.shield(task)


@require_safe
async def readyz(request: HttpRequest) -> HttpResponse:
    """200 when the database answers, 503 otherwise."""
    if await database_answers():
        return JsonResponse({"status": "ok"})
    return JsonResponse({"status": "database unavailable"}, status=503)
