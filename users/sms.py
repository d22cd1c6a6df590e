"""Delivery of one-time codes.

SMS_BACKEND picks the backend: `simulated` (the default while DEBUG is on), `console`,
`twilio`, `webhook`, or the dotted path of a class of one's own. Every backend has
`async def send(phone, code, *, locale="en")` and raises DeliveryError when the provider
refuses or does not answer in time. A class written to the first interface,
`send(phone, code)`, still works: get_backend() leaves the locale out for it.

users/checks.py refuses settings that would fail or leak codes, in `manage.py check` and,
through check_at_start(), when the server starts.
"""

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import logging
import multiprocessing
import secrets
import sys
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import translation
from django.utils.module_loading import import_string
from django.utils.translation import gettext
from standardwebhooks import Webhook

from users.errors import ErrorCode

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("users.sms")


class SmsBackend(Protocol):
    async def send(self, phone: str, code: str, *, locale: str = "en") -> str | None:
        """Hand the SMS to the provider; its id for the message, if it gives one."""
        ...


class DeliveryError(Exception):
    """The provider refused the message, or could not be reached. `code` is what the
    person is told; `provider_code` the provider's own error (Twilio's number, or the
    HTTP status), for the delivery log.

    str(error) is a short reason for operators, with no secret, no code and no whole phone.
    """

    def __init__(self, code: ErrorCode, reason: str, *, provider_code: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.provider_code = provider_code


class DeliveryDelayed(DeliveryError):
    """The provider was sent the message but did not answer within SMS_TIMEOUT: it may
    well have taken it, so the code stays live and the SMS may still arrive."""

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.DELIVERY_DELAYED, reason, provider_code="timeout")


def masked(phone: str) -> str:
    """The phone as logs show it: its last two digits, "+*********67"."""
    return "+" + "*" * max(len(phone.lstrip("+")) - 2, 0) + phone[-2:]


def message_text(code: str, locale: str) -> str:
    """The SMS: SMS_TEMPLATE or the default in the person's language, then the WebOTP line."""
    if settings.SMS_TEMPLATE:
        text = settings.SMS_TEMPLATE
    else:
        with translation.override(locale):
            text = gettext("Your code: {code}")
    # replace(), not format(): a template may hold other braces.
    text = text.replace("{code}", code)
    if settings.SMS_WEBOTP_DOMAIN:
        # WebOTP: browsers on phones offer the code to the page of this domain.
        text += f"\n@{settings.SMS_WEBOTP_DOMAIN} #{code}"
    return text


class SimulatedSms:
    """Stands in for a provider: waits as one would, then logs the code.

    The only backend whose code reaches the API response (`debugCode`).
    """

    async def send(self, phone: str, code: str, *, locale: str = "en") -> str | None:
        await asyncio.sleep(settings.SMS_SIMULATED_DELAY)
        logger.info("simulated SMS to %s: code %s", phone, code)
        return None


class ConsoleSms:
    """Logs the code at once; the code stays out of the API response."""

    async def send(self, phone: str, code: str, *, locale: str = "en") -> str | None:
        logger.info("SMS to %s: code %s", phone, code)
        return None


class HttpSms:
    """A provider reached by one HTTP POST per SMS.

    One deadline per send, SMS_TIMEOUT, covers the retry too. One retry, on a connection
    error, 429 or 5xx, while time is left. Connecting may take at most half the deadline
    on the first try, so a connection that cannot be made leaves time for the retry; once
    the request is sent, the try may run to the deadline, because the provider may
    already be texting the person and a retry would text them twice.

    Its log lines name the phone by its last two digits only, and never a secret, the URL
    or the code.
    """

    name = "http"

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> "httpx.AsyncClient":
        """One pooled client per event loop, made inside it (an ASGI worker has one loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Imported by the real providers only: importing httpx and making its client
            # cost a worker with the application loaded 150-190 ms of CPU and 8 MB
            # (measured), for nothing when simulated.
            import httpx

            self._client, self._loop = httpx.AsyncClient(), loop
        assert self._client is not None
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = self._loop = None

    def _failed(
        self,
        phone: str,
        code: ErrorCode,
        reason: str,
        *,
        level: int = logging.WARNING,
        provider_code: str = "",
    ) -> DeliveryError:
        logger.log(level, "%s: SMS to %s not sent: %s", self.name, masked(phone), reason)
        return DeliveryError(code, f"{self.name}: {reason}", provider_code=provider_code)

    async def _post(self, phone: str, url: str, **request: Any) -> "httpx.Response":
        """POST within the deadline; return the answer unless it is worth a retry.

        Raises DeliveryError(DELIVERY_FAILED) when the provider could not be reached or
        its last answer was a 429 or 5xx, and DeliveryDelayed when it was sent the
        request but did not answer in time (it may have taken the message: no retry).
        Any other answer, 2xx or 4xx, is returned for the backend to read.
        """
        import httpx

        client = self._http()
        loop = asyncio.get_running_loop()
        budget = settings.SMS_TIMEOUT
        deadline = loop.time() + budget
        retried = False
        while True:
            left = deadline - loop.time()
            connect = left if retried else min(left, budget / 2)
            pause = 0.0
            sending: list[str] = []  # httpx's trace: the request has started to go out

            async def trace(event: str, info: object, sending: list[str] = sending) -> None:
                if "send_request_headers.started" in event:
                    sending.append(event)

            try:
                async with asyncio.timeout_at(deadline):
                    response = await client.post(
                        url,
                        timeout=httpx.Timeout(left, connect=connect),
                        extensions={"trace": trace},
                        **request,
                    )
            except (TimeoutError, httpx.TimeoutException):
                if not sending:  # nothing went out: the provider has nothing to text
                    reason = f"could not connect within {connect:.2g} s"
                else:
                    reason = f"no answer within {budget:g} s"
                    logger.warning("%s: SMS to %s: %s", self.name, masked(phone), reason)
                    raise DeliveryDelayed(f"{self.name}: {reason}") from None
            except httpx.TransportError as error:
                # Named by its type only: some messages carry the URL.
                reason = f"connection error ({type(error).__name__})"
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                reason = f"HTTP {response.status_code}"
                pause = min(0.25, budget / 10)  # spares a provider that said it is busy
            if retried or deadline - loop.time() - pause <= 0:
                status = reason.removeprefix("HTTP ") if reason.startswith("HTTP ") else ""
                reason += " after one retry" if retried else ""
                raise self._failed(phone, ErrorCode.DELIVERY_FAILED, reason, provider_code=status)
            logger.info("%s: retrying SMS to %s: %s", self.name, masked(phone), reason)
            await asyncio.sleep(pause)
            retried = True


class TwilioSms(HttpSms):
    """Twilio Programmable Messaging: create a Message resource.

    POST {TWILIO_API_URL}/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json, HTTP
    basic auth with the account SID and auth token, form fields To, Body, and
    MessagingServiceSid or From. Twilio answers 201 when it has queued the message, and
    refusals carry its error number in the JSON field `code`.
    """

    name = "twilio"
    # Twilio's error numbers that say something the person can act on.
    ERRORS = {
        21211: ErrorCode.INVALID_PHONE,  # invalid 'To' number
        21614: ErrorCode.INVALID_PHONE,  # 'To' is not a mobile number
        21408: ErrorCode.REGION_NOT_ALLOWED,  # not enabled for the number's region
    }

    async def send(self, phone: str, code: str, *, locale: str = "en") -> str | None:
        # Settings are read at each send, so a cached backend follows them (tests change them).
        account = settings.TWILIO_ACCOUNT_SID
        api = settings.TWILIO_API_URL.rstrip("/")
        url = f"{api}/2010-04-01/Accounts/{account}/Messages.json"
        if settings.TWILIO_MESSAGING_SERVICE_SID:
            sender = {"MessagingServiceSid": settings.TWILIO_MESSAGING_SERVICE_SID}
        else:
            sender = {"From": settings.TWILIO_FROM}
        form = {"To": phone, "Body": message_text(code, locale), **sender}
        if callback := twilio_status_callback():
            form["StatusCallback"] = callback
        auth = (account, settings.TWILIO_AUTH_TOKEN)
        response = await self._post(phone, url, data=form, auth=auth)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if response.is_success:
            sid = answer.get("sid")
            return sid if isinstance(sid, str) else None
        error = answer.get("code")
        reason = f"HTTP {response.status_code}, Twilio error {error}"
        provider_code = str(error if error is not None else response.status_code)[:40]
        if error in self.ERRORS:
            raise self._failed(
                phone, self.ERRORS[error], reason, level=logging.INFO, provider_code=provider_code
            )
        # Anything else: mostly the service's own problem (credentials, sender, balance).
        raise self._failed(
            phone,
            ErrorCode.DELIVERY_FAILED,
            reason,
            level=logging.ERROR,
            provider_code=provider_code,
        )


class WebhookSms(HttpSms):
    """POST {"phone", "code", "message", "locale"} to SMS_WEBHOOK_URL, signed per Standard Webhooks.

    Headers webhook-id, webhook-timestamp and webhook-signature (HMAC-SHA256 keyed with
    SMS_WEBHOOK_SECRET). A retry repeats the same message id, so the receiver can tell it
    from a second SMS. Any 2xx means accepted.
    """

    name = "webhook"

    async def send(self, phone: str, code: str, *, locale: str = "en") -> str | None:
        payload = {"phone": phone, "code": code, "message": message_text(code, locale)}
        body = json.dumps({**payload, "locale": locale}, ensure_ascii=False)
        message_id = f"msg_{secrets.token_urlsafe(18)}"
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(settings.SMS_WEBHOOK_SECRET).sign(message_id, now, body),
        }
        url = settings.SMS_WEBHOOK_URL
        response = await self._post(phone, url, content=body.encode(), headers=headers)
        if not response.is_success:
            reason = f"HTTP {response.status_code}"
            raise self._failed(
                phone,
                ErrorCode.DELIVERY_FAILED,
                reason,
                level=logging.ERROR,
                provider_code=str(response.status_code),
            )
        return message_id  # its receipts name it (`/sms/receipts/webhook`)


BACKENDS = {
    "simulated": SimulatedSms,
    "console": ConsoleSms,
    "twilio": TwilioSms,
    "webhook": WebhookSms,
}


def backend_class(name: str) -> type[Any]:
    """The class SMS_BACKEND names. ImportError for a dotted path that does not import."""
    if not name:
        raise ImproperlyConfigured("SMS_BACKEND is not set (see `manage.py check`)")
    return BACKENDS.get(name) or import_string(name)


def accepts_locale(send: Any) -> bool:
    parameters = inspect.signature(send).parameters.values()
    return any(p.name == "locale" or p.kind is p.VAR_KEYWORD for p in parameters)


class _WithoutLocale:
    """A class written to the first interface, `send(phone, code)`: the locale is left out."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    async def send(self, phone: str, code: str, *, locale: str = "en") -> str | None:
        message_id = await self.backend.send(phone, code)
        return message_id if isinstance(message_id, str) else None


@cache
def _backend_for(name: str) -> SmsBackend:
    backend = backend_class(name)()
    return backend if accepts_locale(backend.send) else _WithoutLocale(backend)


def get_backend() -> SmsBackend:
    return _backend_for(settings.SMS_BACKEND)


def returns_code(backend: SmsBackend) -> bool:
    """Only the simulated backend puts the code in the response."""
    return isinstance(backend, SimulatedSms)


def status_once_accepted(backend: SmsBackend) -> str:
    """A delivery's status once the backend has taken the SMS: the demo backends deliver
    (there is no phone), and a real provider has sent it, its receipts to tell more."""
    return "delivered" if isinstance(backend, SimulatedSms | ConsoleSms) else "sent"


# Receipts


RECEIPT_PATHS = {"twilio": "/sms/receipts/twilio", "webhook": "/sms/receipts/webhook"}


def twilio_status_callback() -> str | None:
    """The StatusCallback URL given with each message, when SMS_RECEIPTS_URL is set."""
    if not settings.SMS_RECEIPTS_URL:
        return None
    return settings.SMS_RECEIPTS_URL.rstrip("/") + RECEIPT_PATHS["twilio"]


def twilio_signature(url: str, params: dict[str, list[str]]) -> str:
    """X-Twilio-Signature as Twilio computes it: HMAC-SHA1, keyed with the auth token, of
    the URL it called followed by each form field's name and value, sorted by name."""
    signed = url + "".join(
        name + value for name in sorted(params) for value in sorted(params[name])
    )
    digest = hmac.new(settings.TWILIO_AUTH_TOKEN.encode(), signed.encode(), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()


# Twilio's MessageStatus values, as the delivery log names them.
TWILIO_STATUSES = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}
# What a webhook gateway may report of a message it was given.
WEBHOOK_STATUSES = {"sent", "delivered", "undelivered", "failed"}


DEMO_BACKENDS = {
    "simulated": "SMS_BACKEND=simulated: every code is returned to the caller (debugCode) "
    "and logged, so anyone can sign in as anyone. For demos only.",
    "console": "SMS_BACKEND=console: every code is written to the log and no SMS is sent. "
    "For demos only.",
}


def check_at_start() -> None:
    """Refuse to serve with SMS settings that would fail or leak codes (backend/asgi.py).

    The same problems `manage.py check` reports. A demo backend with DEBUG off is
    allowed, with a WARNING, since codes then reach callers or the log.
    """
    from users.checks import sms_errors  # users.checks imports this module

    errors = sms_errors()
    if errors:
        message = "\n".join(error.msg for error in errors)
        uvicorn = sys.modules.get("uvicorn.config")
        if uvicorn is not None and multiprocessing.parent_process() is not None:
            # A worker of `uvicorn --workers N`: its supervisor restarts a worker that
            # raises, forever, but stops when one exits with STARTUP_FAILURE.
            logger.critical("%s", message)
            raise SystemExit(uvicorn.STARTUP_FAILURE)
        raise ImproperlyConfigured(message)
    get_backend()  # a class that cannot be made fails now, not at the first sign-in
    if not settings.DEBUG and settings.SMS_BACKEND in {"simulated", "console"}:
        logger.warning("%s", DEMO_BACKENDS[settings.SMS_BACKEND])
