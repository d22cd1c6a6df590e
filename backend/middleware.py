"""Middleware arranged so that API requests make no needless thread hops.

Under ASGI, Django runs each hook of a classic (MiddlewareMixin) middleware through
sync_to_async: two thread hops per middleware per request. The API needs none of the
cookie machinery (it authenticates by the Bearer header only), so sessions,
authentication, messages, CSRF and the rest run for the admin's URLs only.
"""

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.middleware.security import SecurityMiddleware
from django.utils.decorators import sync_and_async_middleware
from django.utils.module_loading import import_string


@sync_and_async_middleware
def security_headers(get_response):
    """Django's SecurityMiddleware, whose hooks do no I/O, called without thread hops."""
    security = SecurityMiddleware(get_response)

    if iscoroutinefunction(get_response):

        async def middleware(request):
            response = security.process_request(request) or await get_response(request)
            return security.process_response(request, response)

    else:

        def middleware(request):
            response = security.process_request(request) or get_response(request)
            return security.process_response(request, response)

    return middleware


@sync_and_async_middleware
def admin_middleware(get_response):
    """Runs settings.ADMIN_MIDDLEWARE around requests under /admin/ only.

    The admin's views apply CSRF protection themselves (csrf_protect), so running
    CsrfViewMiddleware here for its request and response hooks only loses nothing.
    """
    admin = get_response
    for path in reversed(settings.ADMIN_MIDDLEWARE):
        admin = import_string(path)(admin)

    if iscoroutinefunction(get_response):

        async def middleware(request):
            if request.path_info.startswith("/admin/"):
                return await admin(request)
            return await get_response(request)

    else:

        def middleware(request):
            if request.path_info.startswith("/admin/"):
                return admin(request)
            return get_response(request)

    return middleware
