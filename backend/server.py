"""uvicorn's HTTP protocol with a read timeout: `--http backend.server:HttpProtocol`.

uvicorn times out idle keep-alive connections, but not a client that opens a
connection and sends a request slowly, or never finishes it: enough of those hold
every socket a worker has. Here the whole request, head and body, must arrive within
REQUEST_READ_TIMEOUT seconds of its first byte (or of the connection opening);
otherwise the connection is closed.
"""

import asyncio
from typing import Any

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None

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
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
