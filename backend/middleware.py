"""Middleware arranged so that API requests make no needless thread hops.

Under ASGI, Django runs each hook of a classic (MiddlewareMixin) middleware through
sync_to_async: two thread hops per middleware per request. The API needs none of the
cookie machinery (it authenticates by the Bearer header only), so sessions,
authentication, messages, CSRF and the rest run for the admin's URLs only.
"""

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.middleware.security import SecurityMiddleware
from django.utils.decorators import sync_and_async_middleware
from django.utils.module_loading import import_string
from whitenoise.middleware import WhiteNoiseMiddleware


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


@sync_and_async_middleware
def static_files(get_response):
    """WhiteNoise, without a thread hop for requests that are not for a static file.

    WhiteNoise's own middleware is synchronous, so under ASGI Django would run every
    request through a thread to reach it. Its index of files is built at start-up
    from STATIC_ROOT (`collectstatic`), so finding a file is a dictionary lookup;
    only a hit opens the file, in a thread.
    """
    whitenoise = WhiteNoiseMiddleware(get_response)
    files, serve = whitenoise.files, whitenoise.serve

    if iscoroutinefunction(get_response):

        async def middleware(request):
            static_file = files.get(request.path_info)
            if static_file is None:
                return await get_response(request)
            return await sync_to_async(serve)(static_file, request)

    else:

        def middleware(request):
            static_file = files.get(request.path_info)
            return get_response(request) if static_file is None else serve(static_file, request)

    return middleware
