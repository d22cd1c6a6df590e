"""uvicorn's HTTP protocol with the bounds it lacks: `--http backend.server:HttpProtocol`.

- Reading. uvicorn times out idle keep-alive connections, but not a client that opens
  a connection and sends a request slowly, or never finishes it: enough of those hold
  every socket a worker has. Here the whole request, head and body, must arrive within
  REQUEST_READ_TIMEOUT seconds of its first byte (or of the connection opening);
  otherwise the connection is closed.
- The request head. httptools puts no bound on it: a 16 MiB header was gathered whole,
  and 20,000 headers were taken. Here the head (request line and headers) may take
  MAX_REQUEST_HEAD bytes and MAX_REQUEST_HEADERS headers. The bytes are counted before
  httptools sees them, and httptools is never fed more of a head than is left of the
  bound, so a worker never holds more than that of one head. Beyond it the answer is
  431, and the connection lingers a moment, reading and dropping what the client
  still sends, so that the client reads the 431 instead of a reset.
- Writing. A client that asks and never reads would keep its answer in the worker's
  memory for as long as it stays connected. Here the bytes written must leave the
  worker's buffer within RESPONSE_WRITE_TIMEOUT seconds, each time it fills (or after
  an answer ends with bytes still in it); otherwise the connection is dropped, and
  with it the buffer.
"""

import asyncio
import socket
import struct
from contextlib import suppress
from typing import Any

import httptools
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from backend import logs

# How long a refused connection keeps reading (and dropping) before it closes.
LINGER = 2.0


class _HeadRefused(Exception):
    """Raised in a parser callback to stop httptools mid-head."""


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        # Bytes the head being read may still take; None once it has been read.
        self._head_left: int | None = settings.MAX_REQUEST_HEAD
        self._header_count = 0
        self._messages = 0  # requests read whole on this connection
        self._refused = False

    # Reading: the timeout

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(settings.REQUEST_READ_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _too_slow(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_write()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        self._messages += 1
        self._head_left = settings.MAX_REQUEST_HEAD  # the next request's head starts here
        super().on_message_complete()

    # Reading: the head's bounds

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered already: what the client still sends is dropped
        while data:
            if self._head_left is None:  # past the head: the body, bounded by backend/edge.py
                self._feed(data)
                return
            piece, data = data[: self._head_left], data[self._head_left :]
            messages = self._messages
            self._feed(piece)
            if self._refused or self.transport.is_closing():
                return
            if self.transport.get_protocol() is not self:
                return  # upgraded to a WebSocket, which reads the rest itself
            # A head that began inside what was fed, after the previous request ended
            # (pipelining), is not charged for it: such a head may take one read more
            # than the bound (uvloop reads 256 KiB at most), never an unbounded amount.
            if self._head_left is not None and messages == self._messages:
                self._head_left -= len(piece)
                if self._head_left <= 0:
                    self._refuse_head(f"more than {settings.MAX_REQUEST_HEAD} bytes")
                    return

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, which answers 400 to what httptools cannot parse,
        but for a head refused by a callback here."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, _HeadRefused):
                self._refuse_head(str(error.__context__))
                return
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > settings.MAX_REQUEST_HEADERS:
            raise _HeadRefused(f"more than {settings.MAX_REQUEST_HEADERS} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_left = None
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the WebSocket protocol keeps its own time from here
        self._disarm_write()
        super().handle_websocket_upgrade()

    def _refuse_head(self, why: str) -> None:
        """Answer 431 and linger (see the module docstring); nothing of the request runs.

        Plain text, as uvicorn's own refusals of what is not HTTP: the request never
        reached the application, whose answers are JSON.
        """
        self._refused = True
        self._disarm()
        body = f"Request Header Fields Too Large: the request head has {why}.\n".encode()
        head = [
            STATUS_LINE[431],
            *(b"%s: %s\r\n" % pair for pair in self.server_state.default_headers),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER, self._close)
        self._log_refusal(431)

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _log_refusal(self, status: int) -> None:
        """The access line of a request refused before it reached the application."""
        try:
            method = self.parser.get_method().decode("ascii")
        except (httptools.HttpParserError, UnicodeError, AttributeError):
            method = ""
        path = getattr(self, "url", b"").partition(b"?")[0][:200].decode("latin-1")
        request = logs.RequestLog(
            request_id=logs.new_request_id(),
            method=method,
            path=logs.redact(path),
            client=self.client[0] if self.client else None,
            status=status,
        )
        token = logs.begin(request)
        try:
            logs.access(request, 0.0, None)
        finally:
            logs.end(token)

    # Writing

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm_write()

    def resume_writing(self) -> None:
        self._disarm_write()
        super().resume_writing()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.get_write_buffer_size():
            self._arm_write()  # the end of an answer is still to be read
        else:
            self._disarm_write()

    def _arm_write(self) -> None:
        self._disarm_write()
        self._write_timer = self.loop.call_later(settings.RESPONSE_WRITE_TIMEOUT, self._not_read)

    def _disarm_write(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _not_read(self) -> None:
        self._write_timer = None
        if not self.transport.get_write_buffer_size():
            return
        # A reset, not a close: close() would wait for the buffer to be read, and even
        # abort() leaves the kernel's copy queued behind a FIN the client never reads.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()
