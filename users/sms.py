"""Delivery of one-time codes.

A backend is a class with one async method, `send(phone, code)`. SMS_BACKEND picks
it: `simulated` (the default), `console`, or the dotted path of a provider's class.
"""

import asyncio
import logging
from functools import cache
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger("users.sms")


class SimulatedSms:
    """Stands in for a provider: waits as one would, then logs the code.

    The only backend whose code reaches the API response (`debugCode`).
    """

    returns_code = True

    async def send(self, phone: str, code: str) -> None:
        await asyncio.sleep(settings.SMS_SIMULATED_DELAY)
        logger.info("simulated SMS to %s: code %s", phone, code)


class ConsoleSms:
    """Logs the code at once; the code stays out of the API response."""

    returns_code = False

    async def send(self, phone: str, code: str) -> None:
        logger.info("SMS to %s: code %s", phone, code)


BACKENDS = {"simulated": SimulatedSms, "console": ConsoleSms}


@cache
def _backend_for(name: str) -> Any:
    return (BACKENDS.get(name) or import_string(name))()


def get_backend() -> Any:
    return _backend_for(settings.SMS_BACKEND)


def returns_code(backend: object) -> bool:
    return getattr(backend, "returns_code", False)
