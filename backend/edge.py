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
- Requests in flight: one signed-in user may have MAX_IN_FLIGHT_PER_USER requests
  being served by this worker at once, one client address MAX_IN_FLIGHT_PER_ADDRESS;
  the next one is answered at once, before Django or GraphQL sees it, with the
  top-level error SERVICE_UNAVAILABLE (HTTP 200 on /graphql/, as every GraphQL error
  is; 503 elsewhere) and Retry-After: 1. So a burst costs its sender: the rest of it
  is refused in microseconds instead of queueing ahead of everybody else's requests
  for the CPU and the database. The probes are not counted: a load balancer that is
  not in TRUSTED_PROXIES makes every client one address, and must still see the
  instance healthy.
- WebSocket connections go to the subscriptions (schema/websocket.py) on /graphql/
  only, with the same proxy and Host rules (`websocket`).
"""

import asyncio
import ipaddress
import json
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils import translation
from django.utils.translation import gettext as _

from backend import database, logs, metrics
from backend.languages import preferred_language
from backend.middleware import PROBES
from users.access_tokens import user_id_from_access_token

type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# A WebSocket application: answers with the close code it sent, if any, for the log.
type WebSocketApp = Callable[[Scope, Receive, Send], Awaitable[int | None]]

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


def address_key(client_ip: str | None) -> str | None:
    """What a per-address limit counts: an IPv4 address, or an IPv6 /64.

    One IPv6 subscriber usually holds a whole /64, so counting single addresses
    would let one client rotate through billions of them.
    """
    if not client_ip:
        return None
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip[:64]
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def address_network(client_ip: str | None) -> str:
    """The client's network: an IPv4 /24 or an IPv6 /64 (the /64 the address limits count
    by; what one subscriber, or one household's router, usually holds). A session shows
    it instead of the address and the referral program compares it; "" for what is not
    an address."""
    if not client_ip:
        return ""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if isinstance(address, ipaddress.IPv4Address) else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


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


def edge(app: ASGIApp, websockets: WebSocketApp | None = None) -> ASGIApp:
    """Wrap the Django application, and the WebSocket one; see the module docstring."""
    metrics.worker_started()

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and websockets is not None:
            await websocket(websockets, scope, receive, send)
            return
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
            callers = _callers(scope)
            bound = in_flight.enter(callers)
            if bound is not None:
                metrics.record_shed(bound)
                logs.add_outcome("SERVICE_UNAVAILABLE")
                await _shed(scope, answer)
                return
            try:
                await _serve(app, scope, receive, answer)
            finally:
                in_flight.leave(callers)
        finally:
            seconds = time.perf_counter() - started
            if request.graphql:
                metrics.observe_request(request.operation, seconds)
            if settings.ACCESS_LOG:
                logs.access(request, seconds, _logged_operation(request))
            logs.end(token)

    return application


async def websocket(app: WebSocketApp, scope: Scope, receive: Receive, send: Send) -> None:
    """A WebSocket connection: the subscriptions' (`app`, schema/websocket.py) on /graphql/.

    The edge's rules hold for it as for a request: the client and scheme as a trusted
    proxy says, a Host in ALLOWED_HOSTS, and its access line when it ends, with its
    duration and the close code sent. A foreign Host or any other path is refused: HTTP
    403 to the handshake. Its size limits and caps are schema/websocket.py's.
    """
    trusted = from_trusted_proxy(scope)
    scope = behind_proxy(scope)
    request = request_log(scope, trusted=trusted)
    request.method = "GET"
    token = logs.begin(request)
    started = time.perf_counter()
    try:
        if scope["path"] not in ("/graphql/", "/graphql") or not _allowed_host(
            _header(scope, b"host")
        ):
            request.status = 403
            await _refuse_handshake(receive, send)
        else:
            request.status = 101
            code = await app(scope, receive, send)
            if code is not None:
                logs.add_outcome(f"CLOSED_{code}")
    finally:
        if settings.ACCESS_LOG:
            logs.access(request, time.perf_counter() - started, None)
        logs.end(token)


def _allowed_host(host: str) -> bool:
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


async def _refuse_handshake(receive: Receive, send: Send) -> None:
    """Refuse the handshake: uvicorn answers it 403. (Its websocket.http.response
    extension would let the application choose the status, but uvicorn 0.54 then logs
    an error for every refusal.)"""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


# Requests in flight


type Caller = tuple[str, str, int]  # the bound's name, the key counted, the bound


class InFlight:
    """How many requests each user and each client address has in flight on this worker."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def enter(self, callers: list[Caller]) -> str | None:
        """Count a request of `callers`; or, if one of them is at its bound, the name of
        that bound, and nothing is counted."""
        for name, key, bound in callers:
            if self.counts[name, key] >= bound:
                return name
        for name, key, _bound in callers:
            self.counts[name, key] += 1
        return None

    def leave(self, callers: list[Caller]) -> None:
        for name, key, _bound in callers:
            self.counts[name, key] -= 1
            if self.counts[name, key] <= 0:
                del self.counts[name, key]


in_flight = InFlight()


def bearer_user(scope: Scope) -> int | None:
    """The user of a good `Authorization: Bearer` access token (no database)."""
    scheme, _, token = _header(scope, b"authorization").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return user_id_from_access_token(token.strip())


def _callers(scope: Scope) -> list[Caller]:
    """Whom this request counts against (scope as `behind_proxy` made it)."""
    if scope["path"] in PROBES:
        return []
    callers = []
    if per_user := settings.MAX_IN_FLIGHT_PER_USER:
        user = bearer_user(scope)
        if user is not None:
            callers.append(("user", str(user), per_user))
    if per_address := settings.MAX_IN_FLIGHT_PER_ADDRESS:
        client = scope.get("client")
        address = address_key(client[0] if client else None)
        if address is not None:
            callers.append(("address", address, per_address))
    return callers


async def _shed(scope: Scope, send: Send) -> None:
    """The answer to a request over its caller's bound: SERVICE_UNAVAILABLE, at once."""
    language = preferred_language(_header(scope, b"accept-language"))
    with translation.override(language):
        message = _("The service is busy, try again shortly.")
    error = {"message": message, "extensions": {"code": "SERVICE_UNAVAILABLE"}}
    body = json.dumps({"errors": [error]}).encode()
    await send(
        {
            "type": "http.response.start",
            # A GraphQL client reads the errors of a 200; others see what it is.
            "status": 200 if scope["path"].startswith("/graphql") else 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
        await _admin(app, scope, receive, send)
        return
    async with ThreadSensitiveContext(executor=_hooks_thread):
        await _limited(app, scope, receive, send)


_admin_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)
BUSY_PAGE = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Busy</title>"
    b"<p>The admin is busy. Try again in a few seconds.</p></html>"
)


async def _admin(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """An admin request in the admin's own share of the worker (ADMIN_CONCURRENCY): its
    synchronous views and their database connections never take the API's, and a burst
    waits its turn, or is answered 503 after ADMIN_QUEUE_TIMEOUT, never a 500."""
    loop = asyncio.get_running_loop()
    slots = _admin_slots.get(loop)
    if slots is None:
        slots = _admin_slots[loop] = asyncio.Semaphore(settings.ADMIN_CONCURRENCY)
    try:
        async with asyncio.timeout(settings.ADMIN_QUEUE_TIMEOUT):
            await slots.acquire()
    except TimeoutError:
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(BUSY_PAGE)).encode()),
                    (b"retry-after", b"5"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": BUSY_PAGE})
        return
    try:
        await _limited(app, scope, receive, send)
    finally:
        slots.release()


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
