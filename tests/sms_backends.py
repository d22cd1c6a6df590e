"""SMS backends of the tests' own, named by dotted path in SMS_BACKEND."""

import asyncio

from users.errors import ErrorCode
from users.sms import DeliveryError

sent: list[tuple[str, str, str]] = []
refused: list[str] = []


class Refusing:
    """A provider that refuses every message, and remembers each number it refused."""

    async def send(self, phone: str, code: str, *, locale: str = "en") -> None:
        refused.append(phone)
        raise DeliveryError(ErrorCode.DELIVERY_FAILED, "test: refused")


class Recording:
    """A provider that accepts every message and remembers it."""

    async def send(self, phone: str, code: str, *, locale: str = "en") -> None:
        sent.append((phone, code, locale))


class Holding:
    """A provider that takes each message only when the test lets it: `taking` is set
    once a send has reached it, and the send returns once `release` is set. The test
    makes both events inside its event loop."""

    taking: asyncio.Event
    release: asyncio.Event

    async def send(self, phone: str, code: str, *, locale: str = "en") -> None:
        self.taking.set()
        await self.release.wait()
