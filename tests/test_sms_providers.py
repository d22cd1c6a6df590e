"""SMS delivery: each provider against a real HTTP server on loopback, as its documents say."""

import asyncio
import base64
import logging
import re
import socket
import threading
import time

import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Response

from users import sms
from users.errors import ErrorCode

PHONE = "+375291234567"
CODE = "7391"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-auth-token-never-logged"
SECRET = "whsec_" + base64.b64encode(b"webhook-secret-never-logged-32by").decode()
TWILIO_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
WEBHOOK_PATH = "/hooks/sms"
TIMEOUT = 1.5  # long enough for a loaded machine to connect on loopback
# The one wall-clock bound here, where promptness is the point: a provider that never
# answers costs the person about SMS_TIMEOUT, not the provider's silence. Generous: the
# provider below would hold the request for a minute, httpx's own default is 5 s.
PROMPTLY = TIMEOUT * 6


@pytest.fixture(scope="module")
def provider_server():
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def server(provider_server, settings):
    """The provider's server, with both backends pointed at it."""
    provider_server.clear()
    settings.SMS_TIMEOUT = TIMEOUT
    settings.SMS_TEMPLATE = ""
    settings.SMS_WEBOTP_DOMAIN = ""
    settings.TWILIO_API_URL = provider_server.url_for("/")
    settings.TWILIO_ACCOUNT_SID = ACCOUNT
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG0123456789abcdef0123456789abcdef"
    settings.TWILIO_FROM = ""
    settings.SMS_WEBHOOK_URL = provider_server.url_for(WEBHOOK_PATH)
    settings.SMS_WEBHOOK_SECRET = SECRET
    yield provider_server
    provider_server.check_assertions()


def deliver(name, phone=PHONE, code=CODE, locale="en"):
    """One send through a new backend, on its own event loop, as one request would."""
    backend = sms.BACKENDS[name]()

    async def send():
        try:
            await backend.send(phone, code, locale=locale)
        finally:
            await backend.aclose()

    asyncio.run(send())


def refused(name, **kwargs) -> sms.DeliveryError:
    with pytest.raises(sms.DeliveryError) as failure:
        deliver(name, **kwargs)
    return failure.value


PATHS = {"twilio": TWILIO_PATH, "webhook": WEBHOOK_PATH}
ACCEPTED = {"twilio": 201, "webhook": 204}


def answers(server, name, *statuses):
    """The provider answers each request in turn with the next status."""
    for status in statuses:
        body = {"sid": "SM0123456789abcdef0123456789abcdef"} if status == 201 else {}
        server.expect_ordered_request(PATHS[name], method="POST").respond_with_json(
            body, status=status
        )


def assert_nothing_secret(caplog, *texts):
    logged = caplog.text + "".join(texts)
    for secret in (TOKEN, SECRET, SECRET.removeprefix("whsec_"), PHONE, PHONE[1:]):
        assert secret not in logged
    assert base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode() not in logged
    assert not re.search(rf"\b{CODE}\b", logged)


# The requests, as documented


@pytest.mark.parametrize(
    "sender", [{"TWILIO_MESSAGING_SERVICE_SID": "MGabc"}, {"TWILIO_FROM": "+15005550006"}]
)
def test_twilio_creates_a_message_as_its_api_documents(server, settings, sender):
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    for name, value in sender.items():
        setattr(settings, name, value)
    answers(server, "twilio", 201)
    deliver("twilio")
    [(request, _)] = server.log
    assert request.method == "POST" and request.path == TWILIO_PATH
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.authorization.type == "basic"
    assert (request.authorization.username, request.authorization.password) == (ACCOUNT, TOKEN)
    field = {"TWILIO_MESSAGING_SERVICE_SID": "MessagingServiceSid", "TWILIO_FROM": "From"}
    [(setting, value)] = sender.items()
    assert request.form.to_dict() == {"To": PHONE, "Body": "Your code: 7391", field[setting]: value}


def test_the_webhook_posts_json_signed_per_standard_webhooks(server):
    answers(server, "webhook", 204)
    deliver("webhook", locale="ru")
    [(request, _)] = server.log
    assert request.method == "POST" and request.path == WEBHOOK_PATH
    assert request.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"msg_[\w-]+", request.headers["webhook-id"])
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    payload = Webhook(SECRET).verify(request.get_data(), dict(request.headers))
    assert payload == {
        "phone": PHONE,
        "code": CODE,
        "message": sms.message_text(CODE, "ru"),
        "locale": "ru",
    }
    with pytest.raises(Exception, match="signature"):
        other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
        Webhook(other).verify(request.get_data(), dict(request.headers))


def test_any_2xx_is_accepted_by_the_webhook(server):
    answers(server, "webhook", 200, 202)
    deliver("webhook")
    deliver("webhook")
    assert len(server.log) == 2


def test_a_backend_keeps_one_client_for_its_sends(server):
    answers(server, "twilio", 201, 201)
    backend = sms.TwilioSms()

    async def twice():
        await backend.send(PHONE, CODE)
        first = backend._client
        await backend.send(PHONE, CODE)
        assert backend._client is first
        await backend.aclose()

    asyncio.run(twice())
    assert len(server.log) == 2


# Retries: one, within the deadline, for a connection error, 429 or 5xx


@pytest.mark.parametrize("name", ["twilio", "webhook"])
@pytest.mark.parametrize("first", [500, 503, 429])
def test_one_retry_after_a_busy_or_failing_provider_sends_one_sms(server, name, first, caplog):
    answers(server, name, first, ACCEPTED[name])
    deliver(name)
    assert [response.status_code for _, response in server.log] == [first, ACCEPTED[name]]
    assert f"{name}: retrying SMS to +**********67: HTTP {first}" in caplog.text


@pytest.mark.parametrize("name", ["twilio", "webhook"])
def test_two_failures_fail_the_delivery_after_exactly_two_requests(server, name, caplog):
    answers(server, name, 500, 502)
    error = refused(name)
    assert error.code == ErrorCode.DELIVERY_FAILED
    assert str(error) == f"{name}: HTTP 502 after one retry"
    assert len(server.log) == 2
    assert_nothing_secret(caplog, str(error))


@pytest.mark.parametrize("name", ["twilio", "webhook"])
def test_a_refusal_is_not_retried(server, name, caplog):
    answers(server, name, 400)
    error = refused(name)
    assert error.code == ErrorCode.DELIVERY_FAILED
    assert len(server.log) == 1
    assert_nothing_secret(caplog, str(error))


@pytest.mark.parametrize("name", ["twilio", "webhook"])
def test_a_provider_slower_than_the_deadline_is_delayed_in_time_and_not_retried(
    server, name, caplog
):
    received, answered = threading.Event(), threading.Event()

    def slow(request):
        received.set()
        answered.wait(60)  # until the send has given up
        return Response(status=ACCEPTED[name])

    server.expect_request(PATHS[name]).respond_with_handler(slow)
    started = time.monotonic()
    try:
        error = refused(name)
    finally:
        answered.set()
    assert time.monotonic() - started < PROMPTLY
    assert received.wait(30)  # the provider had the message: it may still send it
    assert error.code == ErrorCode.DELIVERY_DELAYED
    assert str(error) == f"{name}: no answer within {TIMEOUT:g} s"
    assert len(server.log) <= 1  # the request was sent once; no time was left to retry
    assert_nothing_secret(caplog, str(error))


def closed_port_url(path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@pytest.mark.parametrize("name", ["twilio", "webhook"])
def test_a_refused_connection_is_tried_twice(server, settings, name, caplog):
    settings.TWILIO_API_URL = closed_port_url("")
    settings.SMS_WEBHOOK_URL = closed_port_url(WEBHOOK_PATH)
    error = refused(name)
    assert error.code == ErrorCode.DELIVERY_FAILED
    assert str(error) == f"{name}: connection error (ConnectError) after one retry"
    assert caplog.text.count(f"{name}: retrying SMS") == 1
    assert_nothing_secret(caplog, str(error))


def fill_queue(address):
    """Connect until the listener's queue is full, that is until a connection hangs."""
    queued = []
    for _ in range(8):
        connection = socket.socket()
        connection.settimeout(0.1)
        queued.append(connection)
        try:
            connection.connect(address)
        except TimeoutError:
            return queued
    raise AssertionError("the listener's queue never filled")


def test_a_connection_that_cannot_be_made_leaves_time_for_the_retry(server, settings, caplog):
    """Connecting may take half the deadline on the first try, so the retry gets the rest,
    and no more: what each try was given is in what the backend reports."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # never accepts: once its queue is full, connecting hangs
        queued = fill_queue(full.getsockname())
        host, port = full.getsockname()
        settings.TWILIO_API_URL = f"http://{host}:{port}"
        try:
            error = refused("twilio")
        finally:
            for connection in queued:
                connection.close()
    assert error.code == ErrorCode.DELIVERY_FAILED
    assert f"retrying SMS to +**********67: could not connect within {TIMEOUT / 2:g} s" in (
        caplog.text
    )
    retry = re.fullmatch(
        r"twilio: could not connect within ([0-9.e-]+) s after one retry", str(error)
    )
    assert retry, str(error)
    assert float(retry[1]) <= TIMEOUT / 2  # what was left of the one deadline, not another


# Twilio's error numbers


@pytest.mark.parametrize(
    ("twilio_code", "status", "code"),
    [
        (21211, 400, ErrorCode.INVALID_PHONE),
        (21614, 400, ErrorCode.INVALID_PHONE),
        (21408, 400, ErrorCode.REGION_NOT_ALLOWED),
        (21610, 400, ErrorCode.DELIVERY_FAILED),  # the person replied STOP
        (20003, 401, ErrorCode.DELIVERY_FAILED),  # wrong credentials
        (None, 404, ErrorCode.DELIVERY_FAILED),  # not Twilio's JSON at all
    ],
)
def test_twilio_refusals_map_to_what_the_person_is_told(server, twilio_code, status, code, caplog):
    body = {
        "code": twilio_code,
        "message": f"The 'To' number {PHONE} is not a valid phone number.",
        "more_info": f"https://www.twilio.com/docs/errors/{twilio_code}",
        "status": status,
    }
    handler = server.expect_request(TWILIO_PATH, method="POST")
    if twilio_code:
        handler.respond_with_json(body, status=status)
    else:
        handler.respond_with_data("<html>Not found</html>", status=status)
    error = refused("twilio")
    assert error.code == code
    assert str(error) == f"twilio: HTTP {status}, Twilio error {twilio_code}"
    assert len(server.log) == 1
    assert_nothing_secret(caplog, str(error))  # Twilio's own message repeats the number


# The message


def test_the_message_is_in_the_persons_language(settings):
    settings.SMS_TEMPLATE = ""
    settings.SMS_WEBOTP_DOMAIN = ""
    assert sms.message_text("1234", "en") == "Your code: 1234"
    assert sms.message_text("1234", "ru") == "Ваш код: 1234"
    assert sms.message_text("1234", "en") == "Your code: 1234"
    assert sms.message_text("1234", "fr") == "Your code: 1234"


def test_the_template_and_the_webotp_line(settings):
    settings.SMS_TEMPLATE = "{code} is your Example code. {Don't share it.}"
    settings.SMS_WEBOTP_DOMAIN = ""
    assert sms.message_text("1234", "ru") == "1234 is your Example code. {Don't share it.}"
    settings.SMS_WEBOTP_DOMAIN = "app.example.com"
    text = sms.message_text("1234", "en")
    assert text.splitlines() == [
        "1234 is your Example code. {Don't share it.}",
        "@app.example.com #1234",
    ]


def test_the_webotp_line_reaches_twilio(server, settings):
    settings.SMS_WEBOTP_DOMAIN = "app.example.com"
    answers(server, "twilio", 201)
    deliver("twilio")
    [(request, _)] = server.log
    assert request.form["Body"] == "Your code: 7391\n@app.example.com #7391"


# The backends without a provider, and classes of one's own


class FirstInterfaceSms:
    """Written to the interface README first promised: send(phone, code)."""

    sent = []

    async def send(self, phone, code):
        self.sent.append((phone, code))


class LocaleAwareSms:
    sent = []

    async def send(self, phone, code, *, locale="en"):
        self.sent.append((phone, code, locale))


@pytest.mark.parametrize("cls", [FirstInterfaceSms, LocaleAwareSms])
def test_a_class_of_ones_own_gets_the_locale_only_if_it_takes_it(settings, cls):
    settings.SMS_BACKEND = f"{__name__}.{cls.__name__}"
    backend = sms.get_backend()
    asyncio.run(backend.send(PHONE, CODE, locale="ru"))
    expected = (PHONE, CODE) if cls is FirstInterfaceSms else (PHONE, CODE, "ru")
    assert cls.sent[-1] == expected
    assert sms.get_backend() is backend
    assert not sms.returns_code(backend)


def test_only_the_simulated_backend_returns_the_code(settings):
    for name, returns in [("simulated", True), ("console", False), ("twilio", False)]:
        settings.SMS_BACKEND = name
        assert sms.returns_code(sms.get_backend()) is returns


def test_simulated_sends_wait_together_and_log_the_code(settings, caplog):
    settings.SMS_SIMULATED_DELAY = 0.2
    backend = sms.SimulatedSms()

    events = []

    async def one():
        events.append("waiting")
        await backend.send(PHONE, CODE, locale="en")
        events.append("sent")

    async def many():
        await asyncio.gather(*(one() for _ in range(20)))

    with caplog.at_level(logging.INFO, logger="users.sms"):
        asyncio.run(many())
    assert events == ["waiting"] * 20 + ["sent"] * 20  # all twenty waited at once
    assert caplog.text.count(f"simulated SMS to {PHONE}: code {CODE}") == 20


def test_console_logs_the_code_at_once(caplog):
    with caplog.at_level(logging.INFO, logger="users.sms"):
        asyncio.run(sms.ConsoleSms().send(PHONE, CODE, locale="ru"))
    assert f"SMS to {PHONE}: code {CODE}" in caplog.text
