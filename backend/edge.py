"""What the application believes of the network: the client, the scheme, the body size.

One ASGI wrapper in front of Django, so every view, the admin and the logs see the
same answers:

- TRUSTED_PROXIES: only when the socket peer is one of them are its X-Forwarded-For
  and X-Forwarded-Proto believed. The client is then the right-most X-Forwarded-For
  address that is not itself a trusted proxy (what the client wrote further left is
  not believed), and the scheme is the right-most X-Forwarded-Proto. Django then
  sees that address as REMOTE_ADDR and an https request as secure.
- MAX_REQUEST_BODY: a larger body is answered 413 from its Content-Length before any
  of it is read, or as soon as a body without one grows past it.
- The request id: a trusted proxy's X-Request-ID, else a new random one; it is on every
  log line of the request and sent back as X-Request-ID.
- When the request has been answered: its access line (ACCESS_LOG, backend/logs.py)
  and, for a GraphQL operation, its duration by operation name (backend/metrics.py).
"""

import ipaddress
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings

from backend import database, logs, metrics

type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

type Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@cache
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """TRUSTED_PROXIES parsed once, not for every hop of every request."""
    networks = []
    for proxy in proxies:
        try:
            networks.append(ipaddress.ip_network(proxy, strict=False))
        except ValueError:
            continue
    return tuple(networks)


def is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def _header(scope: Scope, name: bytes) -> str:
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ",".join(values)


def forwarded_client(peer: str, forwarded_for: str) -> str:
    """The right-most X-Forwarded-For hop that is not a trusted proxy, or the peer."""
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted_proxy(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a garbled header: count the proxy, not a made-up name
    return peer


def from_trusted_proxy(scope: Scope) -> bool:
    client = scope.get("client")
    return bool(client and settings.TRUSTED_PROXIES and is_trusted_proxy(client[0]))


def behind_proxy(scope: Scope) -> Scope:
    """The scope as the client made the request, when a trusted proxy says so."""
    client = scope.get("client")
    if not client or not from_trusted_proxy(scope):
        return scope
    scope = dict(scope)
    scope["client"] = (forwarded_client(client[0], _header(scope, b"x-forwarded-for")), 0)
    proto = _header(scope, b"x-forwarded-proto").rpartition(",")[2].strip().lower()
    if proto in ("http", "https"):
        scope["scheme"] = proto
    return scope


async def reject(send: Send, status: int, code: str, message: str) -> None:
    """Answer with a GraphQL-shaped JSON error; nothing of the request is run."""
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _too_large() -> str:
    return f"The request body is larger than {settings.MAX_REQUEST_BODY} bytes."


def request_log(scope: Scope, *, trusted: bool) -> logs.RequestLog:
    """What the logs say of this request (scope as `behind_proxy` made it)."""
    request_id = _header(scope, b"x-request-id").strip() if trusted else ""
    if not logs.REQUEST_ID.fullmatch(request_id):
        request_id = logs.new_request_id()
    client = scope.get("client")
    return logs.RequestLog(
        request_id=request_id,
        method=scope.get("method", ""),
        path=logs.redact(scope.get("path", "")),
        client=client[0] if client else None,
    )


def edge(app: ASGIApp) -> ASGIApp:
    """Wrap the Django application; see the module docstring."""
    metrics.worker_started()

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        trusted = from_trusted_proxy(scope)
        scope = behind_proxy(scope)
        request = request_log(scope, trusted=trusted)
        token = logs.begin(request)
        started = time.perf_counter()
        request_id = (b"x-request-id", request.request_id.encode())

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                request.status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), request_id]}
            await send(message)

        try:
            await _serve(app, scope, receive, answer)
        finally:
            seconds = time.perf_counter() - started
            if request.graphql:
                metrics.observe_request(request.operation, seconds)
            if settings.ACCESS_LOG:
                logs.access(request, seconds, _logged_operation(request))
            logs.end(token)

    return application


def _logged_operation(request: logs.RequestLog) -> str | None:
    """The operation's name as the access line shows it; None when not GraphQL."""
    if not request.graphql:
        return None
    if not request.operation:
        return "anonymous"
    return metrics.valid_operation_name(request.operation) or "other"


# Django runs its synchronous hooks (SecurityMiddleware, the request signals' receivers,
# closing the response) through sync_to_async, by default on a thread started for each
# request and joined by another started for that. API requests share one thread for
# those hooks instead: they are short and touch no database (database work has threads
# of its own, backend/database.py). The admin, whose views are synchronous and read the
# database, keeps Django's thread per request, so a slow admin page holds up nobody.
_hooks_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="django-hooks")


async def _serve(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """The request under the body limit (MAX_REQUEST_BODY), its hooks on the shared thread."""
    if scope["path"].startswith("/admin"):
        await _limited(app, scope, receive, send)
        return
    async with ThreadSensitiveContext(executor=_hooks_thread):
        await _limited(app, scope, receive, send)


async def _limited(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    database.serving()  # this task's context only: each request is its own task
    limit = settings.MAX_REQUEST_BODY
    declared = _header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        await reject(send, 413, "PAYLOAD_TOO_LARGE", _too_large())
        return
    received = 0
    refused = False

    async def limited_receive() -> Message:
        nonlocal received, refused
        if refused:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                refused = True
                await reject(send, 413, "PAYLOAD_TOO_LARGE", _too_large())
                return {"type": "http.disconnect"}
        return message

    async def guarded_send(message: Message) -> None:
        if not refused:
            await send(message)

    await app(scope, limited_receive, guarded_send)
