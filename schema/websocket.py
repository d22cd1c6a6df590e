"""Subscriptions over WebSocket: graphql-transport-ws on /graphql/.

Strawberry's handler of the protocol (BaseGraphQLTransportWSHandler) speaks it, over
the raw ASGI socket backend/edge.py hands here once it has checked the Host. What the
service adds to it:

- Authentication in connection_init's payload, `{"Authorization": "Bearer <access
  token>"}` (no cookie, no header: browsers cannot set headers on a WebSocket). A token
  that is not good (signature, expiry, or its user disabled or gone) is closed with
  4403 Forbidden, as the protocol says for a refused connection_init.
- The token's expiry: when it passes, the connection is closed with 4403 too ("Token
  expired"). graphql-ws clients do not treat 4403 as fatal: they reconnect and call
  `connectionParams` again, which should return a fresh token (docs/frontend.md).
- The token's session: when it ends (signed out there or elsewhere, by staff, by reuse
  detection), on whichever worker or host, the connection is closed with 4403 "Session
  ended" (users/sql/sessions.sql's notice, through this worker's LISTEN); reconnecting
  with that session's tokens is refused, as every request is.
- Caps: SUBSCRIPTIONS_PER_USER authenticated connections per user on this worker (the
  next one's connection_init is answered with 4429 "Too many connections"), and
  SUBSCRIPTIONS_PER_WORKER connections of any kind per worker (the handshake beyond it is
  accepted and closed with 1013 Try Again Later, so a client retries, perhaps on
  another worker). A connection that sends no connection_init within
  SUBSCRIPTION_INIT_TIMEOUT seconds is closed with 4408, as the protocol says.
- A protocol `ping` every SUBSCRIPTION_PING_INTERVAL seconds: idle connections stay
  open through proxies' idle timeouts, and a peer that has gone is found when the ping
  cannot be sent (uvicorn's own WebSocket pings drop one that stopped answering).
- A message larger than MAX_REQUEST_BODY closes the connection with 1009.
"""

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from strawberry.http.async_base_view import AsyncWebSocketAdapter
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.types.unset import UNSET, UnsetType

from backend import database, metrics
from backend.edge import Receive, Scope, Send
from backend.listen import Notices
from schema.schema import schema
from schema.subscriptions import LISTEN_WAIT
from users import selectors
from users.access_tokens import claims_of_access_token
from users.services.tokens import SESSION_ENDED_CHANNEL

logger = logging.getLogger(__name__)

MAX_OPERATIONS = 10  # subscriptions one connection may run at once
FORBIDDEN = (4403, "Forbidden")
EXPIRED = (4403, "Token expired")
SESSION_ENDED = (4403, "Session ended")
TOO_MANY = (4429, "Too many connections")
TRY_AGAIN = (1013, "Try again later")


class Connections:
    """This worker's open connections: all of them, and the authenticated ones by user."""

    def __init__(self) -> None:
        self.open = 0
        self.by_user: Counter[int] = Counter()

    def leave_user(self, user_id: int) -> None:
        self.by_user[user_id] -= 1
        if self.by_user[user_id] <= 0:
            del self.by_user[user_id]


connections = Connections()
# Sessions ended anywhere, by id: each authenticated connection waits on its own.
ended_sessions = Notices(SESSION_ENDED_CHANNEL, key_of=lambda notice: int(notice["session"]))


@dataclass
class SocketContext:
    """The context of every operation on one connection: who subscribes, until when."""

    connection_params: dict[str, object] = field(default_factory=dict)
    subscriber_id: int | None = None
    expires_at: float = 0.0  # epoch seconds, the access token's exp


class _View:
    """What Strawberry's handler asks of its view."""

    async def on_ws_connect(self, context: SocketContext) -> UnsetType | dict[str, object] | None:
        return cast(UnsetType, UNSET)

    def decode_json(self, data: str | bytes) -> object:
        return json.loads(data)

    def encode_json(self, data: object) -> str:
        return json.dumps(data, separators=(",", ":"))


class Socket(AsyncWebSocketAdapter):
    """An ASGI WebSocket as Strawberry's handler uses one; `close` also ends the reading."""

    def __init__(self, receive: Receive, send: Send) -> None:
        super().__init__(_View())  # type: ignore[arg-type]
        self._receive = receive
        self._send = send
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    async def _next(self) -> Mapping[str, Any] | None:
        """The next message, or None once the connection is closed from this side."""
        receiving = asyncio.ensure_future(self._receive())
        closing = asyncio.ensure_future(self.closed.wait())
        done, _ = await asyncio.wait({receiving, closing}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        if receiving in done:
            return receiving.result()
        receiving.cancel()
        return None

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        while not self.closed.is_set():
            message = await self._next()
            if message is None or message["type"] == "websocket.disconnect":
                self.closed.set()
                return
            text = message.get("text")
            if text is None:
                raise NonTextMessageReceived
            if len(text) > settings.MAX_REQUEST_BODY:
                await self.close(1009, "Message too big")
                return
            try:
                yield json.loads(text)
            except ValueError:
                if not ignore_parsing_errors:
                    raise NonJsonMessageReceived from None

    async def send_json(self, message: Mapping[str, object]) -> None:
        if self.closed.is_set():
            raise WebSocketDisconnected
        text = json.dumps(message, separators=(",", ":"))
        try:
            await self._send({"type": "websocket.send", "text": text})
        except OSError as error:  # uvicorn's ClientDisconnected
            self.closed.set()
            raise WebSocketDisconnected from error

    async def close(self, code: int, reason: str) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.close_code = code
        with suppress(OSError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


class Handler(BaseGraphQLTransportWSHandler[SocketContext, None]):
    """Strawberry's protocol, with the token checked and the caps kept at connection_init."""

    context: SocketContext
    websocket: Socket
    expiry: "asyncio.Task[None] | None" = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload") or {}
        if not self.connection_init_received and isinstance(payload, dict):
            refusal = await self._authenticate(payload)
            if refusal is not None:
                self.connection_init_received = True
                if self.connection_init_timeout_task:
                    self.connection_init_timeout_task.cancel()
                await self.websocket.close(*refusal)
                return
        await super().handle_connection_init(message)

    async def _authenticate(self, payload: dict[str, object]) -> tuple[int, str] | None:
        header = payload.get("Authorization", payload.get("authorization"))
        scheme, _, token = str(header or "").strip().partition(" ")
        claims = claims_of_access_token(token.strip()) if scheme.lower() == "bearer" else None
        if claims is None:
            return FORBIDDEN
        user_id, expires_at = claims.user_id, claims.expires_at
        try:
            user = await database.run(
                selectors.active_user, user_id=user_id, session_id=claims.session_id
            )
        except Exception:  # the database is unavailable or busy: the client retries
            logger.warning("a subscription's user could not be looked up", exc_info=True)
            return TRY_AGAIN
        if user is None:
            return FORBIDDEN
        if connections.by_user[user_id] >= settings.SUBSCRIPTIONS_PER_USER:
            return TOO_MANY
        connections.by_user[user_id] += 1
        self.context.subscriber_id = user_id
        self.context.expires_at = expires_at
        self.expiry = asyncio.create_task(
            _expire(self.websocket, expires_at, session_id=claims.session_id)
        )
        # Acknowledged once this worker listens (or has tried for a while): a session
        # ended after the client's connection_ack closes this connection.
        with suppress(TimeoutError):
            async with asyncio.timeout(LISTEN_WAIT):
                await ended_sessions.listening.wait()
        return None


async def _expire(socket: Socket, at: float, *, session_id: int) -> None:
    """Close the connection when its token expires or its session ends."""
    async with ended_sessions.subscribe(session_id) as ended:
        try:
            async with asyncio.timeout(max(0.0, at - time.time())):  # JWT exp: host time
                await ended.get()
        except TimeoutError:
            await socket.close(*EXPIRED)
            return
    await socket.close(*SESSION_ENDED)


async def _ping(socket: Socket) -> None:
    while not socket.closed.is_set():
        await asyncio.sleep(settings.SUBSCRIPTION_PING_INTERVAL)
        with suppress(WebSocketDisconnected):
            await socket.send_json({"type": "ping"})


async def serve(scope: Scope, receive: Receive, send: Send) -> int | None:
    """One WebSocket connection, from its handshake to its end; the close code sent."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return None
    socket = Socket(receive, send)
    if connections.open >= settings.SUBSCRIPTIONS_PER_WORKER:
        await send({"type": "websocket.accept"})
        await socket.close(*TRY_AGAIN)
        return socket.close_code
    if GRAPHQL_TRANSPORT_WS_PROTOCOL not in scope.get("subprotocols", ()):
        await send({"type": "websocket.accept"})
        await socket.close(4406, "Subprotocol not acceptable")
        return socket.close_code
    connections.open += 1  # before any await: the cap is checked and taken at once
    metrics.WEBSOCKETS.inc()
    database.serving()  # database work on the worker's database threads, as requests
    handler = Handler(
        view=_View(),  # type: ignore[arg-type]
        websocket=socket,
        context=SocketContext(),
        root_value=None,
        schema=schema,
        connection_init_wait_timeout=timedelta(seconds=settings.SUBSCRIPTION_INIT_TIMEOUT),
        max_subscriptions_per_connection=MAX_OPERATIONS,
    )
    pings = None
    try:
        await send({"type": "websocket.accept", "subprotocol": GRAPHQL_TRANSPORT_WS_PROTOCOL})
        pings = asyncio.create_task(_ping(socket))
        await handler.handle()
    finally:
        socket.closed.set()
        if pings is not None:
            pings.cancel()
        if handler.expiry is not None:
            handler.expiry.cancel()
        connections.open -= 1
        metrics.WEBSOCKETS.dec()
        if handler.context.subscriber_id is not None:
            connections.leave_user(handler.context.subscriber_id)
    return socket.close_code
