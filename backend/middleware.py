"""Middleware arranged so that API requests make no needless thread hops.

Under ASGI, Django runs each hook of a classic (MiddlewareMixin) middleware through
sync_to_async: two thread hops per middleware per request. The API needs none of the
cookie machinery (it authenticates by the Bearer header only), so sessions,
authentication, messages, CSRF and the rest run for the admin's URLs only. The
middleware here is written for both modes, so it costs no hop itself.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.decorators import sync_and_async_middleware
from django.utils.module_loading import import_string
from whitenoise.middleware import WhiteNoiseMiddleware

from schema.graphiql import STATIC as GRAPHIQL_STATIC

type Handler = Callable[[HttpRequest], Any]
type AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

# The probes: a load balancer calls an instance by its address, not by the service's
# name, so ALLOWED_HOSTS does not apply to them (it applies to every other route).
# /metrics is not among them: list the addresses Prometheus scrapes in ALLOWED_HOSTS
# (docs/operations.md, "Metrics").
PROBES = ("/healthz", "/readyz")
# A static file is read and sent this many bytes at a time (Django's ASGI chunk).
STATIC_CHUNK = 64 * 1024


def _both(
    get_response: Handler,
    sync: Callable[[HttpRequest], HttpResponseBase],
    asynchronous: AsyncHandler,
) -> Handler:
    return asynchronous if iscoroutinefunction(get_response) else sync


# Django's own name for these refusals, so filters written for it keep working.
host_logger = logging.getLogger("django.security.DisallowedHost")


@sync_and_async_middleware
def allowed_hosts(get_response: Handler) -> Handler:
    """ALLOWED_HOSTS on every route but the probes: a foreign Host is 400.

    Django checks the Host header only when something asks for it, which the API
    never did. Left to Django, the DisallowedHost that `get_host()` raises becomes its
    HTML 400 page and an ERROR with a traceback for every request, which scanners
    that try every address would turn into noise; so it is answered here: a JSON
    400 in the GraphQL error shape and one WARNING line.
    """

    def refused(request: HttpRequest) -> HttpResponseBase | None:
        if request.path_info in PROBES:
            return None
        try:
            request.get_host()
        except DisallowedHost:
            host = request.META.get("HTTP_HOST", request.META.get("SERVER_NAME", ""))
            host_logger.warning("refused: Host %r is not in ALLOWED_HOSTS", host[:100])
            message = "This server does not serve the host named in the Host header."
            return JsonResponse(
                {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]},
                status=400,
            )
        return None

    def sync(request: HttpRequest) -> HttpResponseBase:
        if (refusal := refused(request)) is not None:
            return refusal
        response: HttpResponseBase = get_response(request)
        return response

    async def asynchronous(request: HttpRequest) -> HttpResponseBase:
        if (refusal := refused(request)) is not None:
            return refusal
        response: HttpResponseBase = await get_response(request)
        return response

    return _both(get_response, sync, asynchronous)


@sync_and_async_middleware
def static_files(get_response: Handler) -> Handler:
    """WhiteNoise, without a thread hop for requests that are not for a static file.

    WhiteNoise's own middleware is synchronous, so under ASGI Django would run every
    request through a thread to reach it. Its index of files is built at start-up
    from STATIC_ROOT (`collectstatic`), so finding a file is a dictionary lookup;
    only a hit opens the file, in a thread. The file is then read a chunk at a time,
    each in a thread, as the client takes it: a worker holds a chunk per answer, not
    the file, however many clients ask for it and however slowly they read.

    GraphiQL's files (schema/static/graphiql/) are there only while GRAPHIQL is on:
    its script alone is 3.5 MB.
    """
    whitenoise = WhiteNoiseMiddleware(get_response)
    files, serve = whitenoise.files, whitenoise.serve
    graphiql = f"{settings.STATIC_URL}{GRAPHIQL_STATIC}"

    def find(request: HttpRequest) -> Any:
        if not settings.GRAPHIQL and request.path_info.startswith(graphiql):
            return None
        return files.get(request.path_info)

    def sync(request: HttpRequest) -> HttpResponseBase:
        static_file = find(request)
        if static_file is None:
            response: HttpResponseBase = get_response(request)
            return response
        served: HttpResponseBase = serve(static_file, request)
        return served

    async def asynchronous(request: HttpRequest) -> HttpResponseBase:
        static_file = find(request)
        if static_file is None:
            response: HttpResponseBase = await get_response(request)
            return response
        # WhiteNoise's FileResponse, its file opened in the thread.
        served: FileResponse = await asyncio.to_thread(serve, static_file, request)
        file = served.file_to_stream
        if file is None:  # HEAD, 304: headers only
            served.close()
            empty = HttpResponse(status=served.status_code)
            for header, value in served.items():
                empty[header] = value
            return empty
        served.streaming_content = _chunks(file)
        return served

    return _both(get_response, sync, asynchronous)


async def _chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    """`file` a STATIC_CHUNK at a time, each read in a thread; closed when done or
    when the client has gone (Django closes the iterator)."""
    try:
        while chunk := await asyncio.to_thread(file.read, STATIC_CHUNK):
            yield chunk
    finally:
        file.close()


@sync_and_async_middleware
def admin_middleware(get_response: Handler) -> Handler:
    """Runs settings.ADMIN_MIDDLEWARE around requests under /admin/ only.

    The admin's views apply CSRF protection themselves (csrf_protect), so running
    CsrfViewMiddleware here for its request and response hooks only loses nothing.
    """
    admin = get_response
    for path in reversed(settings.ADMIN_MIDDLEWARE):
        admin = import_string(path)(admin)

    def sync(request: HttpRequest) -> HttpResponseBase:
        handler = admin if request.path_info.startswith("/admin/") else get_response
        response: HttpResponseBase = handler(request)
        return response

    async def asynchronous(request: HttpRequest) -> HttpResponseBase:
        handler = admin if request.path_info.startswith("/admin/") else get_response
        response: HttpResponseBase = await handler(request)
        return response

    return _both(get_response, sync, asynchronous)
