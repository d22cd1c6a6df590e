"""Liveness, readiness and the reference client page."""

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.http import require_GET, require_safe


@require_GET
async def healthz(request):
    """200 while the process serves."""
    return JsonResponse({"status": "ok"})


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False
    except Exception:  # psycopg_pool.PoolTimeout and kin: not answering in time
        return False


@require_GET
async def readyz(request):
    """200 when the database answers, 503 otherwise."""
    if await sync_to_async(_database_answers)():
        return JsonResponse({"status": "ok"})
    return JsonResponse({"status": "database unavailable"}, status=503)


@xframe_options_deny
@require_safe
async def client(request):
    """The reference single-page client: backend/templates/client.html and its static files.

    The page runs only its own script files (no inline script, nothing from elsewhere).
    Its first language is the first of ru or en in Accept-Language, the same choice the
    script makes from navigator.languages, so the page does not change language on load.
    """
    preferred = (
        part.split(";")[0].strip().lower().split("-")[0]
        for part in request.headers.get("Accept-Language", "").split(",")
    )
    lang = next((tag for tag in preferred if tag in ("ru", "en")), "en")
    response = render(request, "client.html", {"lang": lang})
    response["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    patch_vary_headers(response, ["Accept-Language"])
    return response
