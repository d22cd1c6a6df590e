"""ASGI entry point: `uvicorn backend.asgi:application` (see the Makefile for the flags)."""

import os
import sys
from typing import cast

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
# Django first: the settings prepare the environment that prometheus-client, imported
# by the modules below, reads when it is first imported.
django_application = get_asgi_application()

from backend.edge import ASGIApp, Receive, Scope, Send, edge  # noqa: E402


def answering_lifespan(app: ASGIApp) -> ASGIApp:
    """`app`, with the ASGI lifespan protocol answered.

    uvicorn (with its default --lifespan auto) opens a lifespan connection at every
    start; Django's handler refuses any scope but http, which uvicorn reports as
    "ASGI 'lifespan' protocol appears unsupported." in every worker's log. Nothing
    here needs a start-up or shut-down step, so both are acknowledged, and the
    launch needs no flag for it.
    """

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return application


from schema.websocket import serve as serve_websocket  # noqa: E402

application = answering_lifespan(edge(cast(ASGIApp, django_application), serve_websocket))
from backend.checks import check_at_start  # noqa: E402 (needs Django set up)
from users.sms import check_at_start as check_sms_at_start  # noqa: E402

check_at_start()  # refuses to serve production without DATABASE_URL
check_sms_at_start()  # refuses SMS settings that would fail or leak codes


def _leave_client_address_to_the_edge() -> None:
    """Switch off uvicorn's own X-Forwarded-For rewriting.

    Unless started with --no-proxy-headers, uvicorn replaces the client address with
    one from X-Forwarded-For for peers in its FORWARDED_ALLOW_IPS (loopback by
    default), so any local process could pick the address the per-address SMS limit
    counts. The service has one rule for that, TRUSTED_PROXIES (backend/edge.py).
    uvicorn imports this module before it wraps the application, so this takes.
    """
    uvicorn_config = sys.modules.get("uvicorn.config")
    if uvicorn_config is not None and hasattr(uvicorn_config, "ProxyHeadersMiddleware"):
        uvicorn_config.ProxyHeadersMiddleware = lambda app, **kwargs: app  # type: ignore[attr-defined]


_leave_client_address_to_the_edge()
