"""Liveness, readiness and the reference client page."""

import asyncio
import functools
import logging
import time
import weakref

import phonenumbers
import psycopg
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.http import require_safe

from backend.languages import preferred_language

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


def _phone_rules() -> dict[str, str]:
    """What the phone field accepts, for its hint: with PHONE_DEFAULT_REGION set, numbers
    of that country without their country code too. An example mobile number of the
    country in both spellings, from libphonenumber's metadata."""
    region: str | None = settings.PHONE_DEFAULT_REGION
    if not region:
        return {}
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:  # a region code libphonenumber does not know
        return {}
    return {
        "phone_region": region,
        "phone_example": phonenumbers.format_number(
            example, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        ),
        "phone_local_example": phonenumbers.format_number(
            example, phonenumbers.PhoneNumberFormat.NATIONAL
        ),
    }


@xframe_options_deny
@require_safe
async def client(request: HttpRequest) -> HttpResponse:
    """The reference single-page client: backend/templates/client.html and its static files.

    The page runs only its own script files (no inline script, nothing from elsewhere).
    Its first language is the first of ru or en in Accept-Language, the same choice the
    script makes from navigator.languages, so the page does not change language on load.
    The phone field carries what the server accepts (_phone_rules) for the script's hint.
    """
    lang = preferred_language(request.headers.get("Accept-Language", ""))
    response = render(request, "client.html", {"lang": lang, **_phone_rules()})
    response["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    patch_vary_headers(response, ["Accept-Language"])
    return response
