"""System checks for SMS delivery: settings that would fail at the first sign-in, or leak codes.

`manage.py check` reports them, and the server refuses to start on the same errors
(users.sms.check_at_start). `check --deploy` warns about the demo backends.
"""

import base64
import binascii
import inspect
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

from users import sms

CHOICES = (
    "simulated, console, twilio, webhook, or the dotted path of a class with "
    "an async send(phone, code)"
)


@checks.register("sms")
def check_sms_settings(app_configs: object = None, **kwargs: object) -> list[checks.Error]:
    return sms_errors()


@checks.register("sms", deploy=True)
def check_sms_backend_for_deploy(
    app_configs: object = None, **kwargs: object
) -> list[checks.CheckMessage]:
    message = sms.DEMO_BACKENDS.get(settings.SMS_BACKEND)
    return [checks.Warning(message, id="users.W001")] if message else []


def sms_errors() -> list[checks.Error]:
    """Every problem with the SMS settings, each naming the variable to set."""
    errors = [*_backend_errors(), *_text_errors()]
    if settings.SMS_TIMEOUT <= 0:
        errors.append(_error("SMS_TIMEOUT must be more than 0 seconds.", 8))
    return errors


def _error(message: str, number: int) -> checks.Error:
    return checks.Error(message, id=f"users.E{number:03d}")


def _backend_errors() -> list[checks.Error]:
    name = settings.SMS_BACKEND
    if not name:
        return [_error(f"SMS_BACKEND is not set. With DEBUG off, choose one of: {CHOICES}.", 1)]
    if name == "twilio":
        return _twilio_errors()
    if name == "webhook":
        return _webhook_errors()
    if name in sms.BACKENDS:
        return []
    if "." not in name:
        return [_error(f"SMS_BACKEND={name!r} is not one of: {CHOICES}.", 2)]
    try:
        backend = sms.backend_class(name)
    except Exception as error:  # an import runs any code; report whatever it raised
        message = f"SMS_BACKEND={name!r} does not import ({type(error).__name__}: {error})."
        return [_error(message, 2)]
    if not inspect.iscoroutinefunction(getattr(backend, "send", None)):
        return [_error(f"SMS_BACKEND={name!r} has no async send(phone, code).", 3)]
    return []


def _missing(backend: str, *names: str) -> list[checks.Error]:
    return [
        _error(f"SMS_BACKEND={backend} needs {name}.", 4)
        for name in names
        if not getattr(settings, name)
    ]


def _twilio_errors() -> list[checks.Error]:
    errors = _missing("twilio", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    if not (settings.TWILIO_MESSAGING_SERVICE_SID or settings.TWILIO_FROM):
        errors.append(
            _error("SMS_BACKEND=twilio needs TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM.", 4)
        )
    return errors + _url_errors("TWILIO_API_URL")


def _webhook_errors() -> list[checks.Error]:
    errors = _missing("webhook", "SMS_WEBHOOK_URL", "SMS_WEBHOOK_SECRET")
    if settings.SMS_WEBHOOK_URL:
        errors += _url_errors("SMS_WEBHOOK_URL")
    secret = settings.SMS_WEBHOOK_SECRET
    if secret and not _is_webhook_secret(secret):
        # The value is never repeated: it is a secret, even when malformed.
        errors.append(
            _error(
                "SMS_WEBHOOK_SECRET is not a Standard Webhooks secret: whsec_ followed by "
                "the base64 of 24 to 64 random bytes.",
                5,
            )
        )
    return errors


def _is_webhook_secret(secret: str) -> bool:
    if not secret.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) > 0
    except binascii.Error:
        return False


def _url_errors(name: str) -> list[checks.Error]:
    """The provider's address: http(s), and no secret in it.

    A user name, password, query string or fragment is refused, though httpx would
    send them: a URL is what proxies, the provider's access logs and error reports
    keep, so what authenticates a request goes elsewhere (the webhook's signature,
    keyed with SMS_WEBHOOK_SECRET; Twilio's auth token). The message never repeats
    the URL, which may hold a secret.
    """
    url = urlsplit(getattr(settings, name))
    if url.scheme not in {"http", "https"} or not url.hostname:
        return [_error(f"{name} must be an http:// or https:// URL.", 6)]
    if "@" in url.netloc:
        found, number = "a user name or password (user:password@)", 10
    elif url.query or url.fragment:
        found, number = "a query string or fragment (?... or #...)", 11
    else:
        return []
    return [
        _error(
            f"{name} must not contain {found}: URLs are kept in proxy and access logs. "
            + AUTHENTICATION[name],
            number,
        )
    ]


AUTHENTICATION = {
    "SMS_WEBHOOK_URL": "The receiver authenticates each request by its Standard Webhooks "
    "signature (SMS_WEBHOOK_SECRET); a route can go in the path.",
    "TWILIO_API_URL": "Twilio is authenticated with TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.",
}


def _text_errors() -> list[checks.Error]:
    errors = []
    if settings.SMS_TEMPLATE and "{code}" not in settings.SMS_TEMPLATE:
        errors.append(_error("SMS_TEMPLATE must contain {code}, where the code goes.", 7))
    domain = settings.SMS_WEBOTP_DOMAIN
    if domain and ("/" in domain or ":" in domain or " " in domain):
        errors.append(
            _error("SMS_WEBOTP_DOMAIN is the SPA's host name alone, e.g. app.example.com.", 9)
        )
    return errors
