"""SMS backends of the tests' own, named by dotted path in SMS_BACKEND."""

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
