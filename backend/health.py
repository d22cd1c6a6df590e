"""Liveness, readiness and the reference client page."""

from pathlib import Path

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.http import require_GET

CLIENT_PAGE = Path(__file__).with_name("client.html")


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
@require_GET
async def client(request):
    """The reference single-page client."""
    return HttpResponse(CLIENT_PAGE.read_bytes(), content_type="text/html; charset=utf-8")
