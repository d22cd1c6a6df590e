"""Middleware arranged so that API requests make no needless thread hops.

Under ASGI, Django runs each hook of a classic (MiddlewareMixin) middleware through
sync_to_async: two thread hops per middleware per request. The API needs none of the
cookie machinery (it authenticates by the Bearer header only), so sessions,
authentication, messages, CSRF and the rest run for the admin's URLs only. The
middleware here is written for both modes, so it costs no hop itself.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.decorators import sync_and_async_middleware
from django.utils.module_loading import import_string
from whitenoise.middleware import WhiteNoiseMiddleware

type Handler = Callable[[HttpRequest], Any]
type AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

# Called on an instance by its address, not by the service's name (SPEC "Other
# endpoints"). /metrics is not among them: list the addresses Prometheus scrapes in
# ALLOWED_HOSTS (README "Metrics").
PROBES = ("/healthz", "/readyz")


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
    only a hit opens the file, in a thread.
    """
    whitenoise = WhiteNoiseMiddleware(get_response)
    files, serve = whitenoise.files, whitenoise.serve

    def serve_whole(static_file: Any, request: HttpRequest) -> HttpResponseBase:
        """The file read whole in the thread: under ASGI, Django would otherwise iterate
        WhiteNoise's file on the event loop's behalf and warn for every worker."""
        streamed: HttpResponseBase = serve(static_file, request)
        if not streamed.streaming:
            return streamed
        try:
            body = b"".join(streamed.streaming_content)  # type: ignore[attr-defined]
            whole = HttpResponse(body, status=streamed.status_code)
        finally:
            streamed.close()
        for header, value in streamed.items():
            whole[header] = value
        return whole

    def sync(request: HttpRequest) -> HttpResponseBase:
        static_file = files.get(request.path_info)
        if static_file is None:
            response: HttpResponseBase = get_response(request)
            return response
        served: HttpResponseBase = serve(static_file, request)
        return served

    async def asynchronous(request: HttpRequest) -> HttpResponseBase:
        static_file = files.get(request.path_info)
        if static_file is None:
            response: HttpResponseBase = await get_response(request)
            return response
        served: HttpResponseBase = await sync_to_async(serve_whole)(static_file, request)
        return served

    return _both(get_response, sync, asynchronous)


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
