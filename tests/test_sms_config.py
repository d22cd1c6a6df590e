"""Safe by default: SMS settings that would fail or leak codes stop the check and the server."""

import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from tests.servers import start_server
from users import sms
from users.checks import check_sms_backend_for_deploy, sms_errors

CHOICES = "simulated, console, twilio, webhook, or the dotted path of a class"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def sms_settings(**variables):
    """No SMS settings but these: the test process's own ones are left out."""
    unset = {name: None for name in os.environ if name.startswith(("SMS_", "TWILIO_"))}
    return {**unset, "SMS_BACKEND": None, **variables}


def manage(*args, **variables):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SMS_", "TWILIO_", "DEBUG"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**env, "SECRET_KEY": settings.SECRET_KEY, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused_start(workers=1, **variables):
    """Start the server as operators do (tests/servers.py), DEBUG off, with these SMS
    settings, and wait until it stops: its exit status and what it said."""
    with start_server(sms_settings(**variables), workers, fails=True, timeout=60) as server:
        pass
    return server.process.returncode, server.log


def demo_start():
    """Start with an explicit demo backend, wait until it answers, stop it: its log."""
    with start_server(sms_settings(SMS_BACKEND="simulated"), timeout=60) as server:
        pass
    return server.log


def several_workers():
    return refused_start(workers=2, SMS_BACKEND="twilio")


WEBHOOK_URL = "https://sms-gateway.example.com/send"
# What an operator runs, each a Django start-up of about a second: run together.
OPERATOR_RUNS = {
    "check, unset": lambda: manage("check"),
    "start, unset": lambda: refused_start(),
    "check, twilio": lambda: manage("check", SMS_BACKEND="twilio"),
    "start, twilio": lambda: refused_start(SMS_BACKEND="twilio"),
    "check, webhook": lambda: manage("check", SMS_BACKEND="webhook", SMS_WEBHOOK_URL=WEBHOOK_URL),
    "start, webhook": lambda: refused_start(SMS_BACKEND="webhook", SMS_WEBHOOK_URL=WEBHOOK_URL),
    "deploy, simulated": lambda: manage("check", "--deploy", SMS_BACKEND="simulated"),
    "deploy, console": lambda: manage("check", "--deploy", SMS_BACKEND="console"),
    "start, webhook with a password": lambda: refused_start(
        SMS_BACKEND="webhook",
        SMS_WEBHOOK_URL="https://sms:hunter2-password@sms-gateway.example.com/send",
        SMS_WEBHOOK_SECRET=SECRET,
    ),
    "start, simulated": demo_start,
    "start, several workers": several_workers,
}


@pytest.fixture(scope="module")
def operator():
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = {name: pool.submit(run) for name, run in OPERATOR_RUNS.items()}
    return {name: run.result for name, run in runs.items()}


# Subprocesses, as an operator meets them


def test_without_a_backend_and_debug_off_check_and_start_fail_naming_the_choices(operator):
    checked = operator["check, unset"]()
    assert checked.returncode != 0
    assert "SMS_BACKEND is not set" in checked.stderr and CHOICES in checked.stderr
    code, log = operator["start, unset"]()
    assert code != 0
    assert "ImproperlyConfigured: SMS_BACKEND is not set" in log and CHOICES in log


def test_twilio_without_its_settings_names_each_one_missing(operator):
    missing = [
        "SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID.",
        "SMS_BACKEND=twilio needs TWILIO_AUTH_TOKEN.",
        "SMS_BACKEND=twilio needs TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM.",
    ]
    checked = operator["check, twilio"]()
    assert checked.returncode != 0
    assert all(line in checked.stderr for line in missing), checked.stderr
    code, log = operator["start, twilio"]()
    assert code != 0
    assert all(line in log for line in missing), log


def test_a_webhook_without_its_secret_is_refused(operator):
    checked = operator["check, webhook"]()
    assert checked.returncode != 0
    assert "SMS_BACKEND=webhook needs SMS_WEBHOOK_SECRET." in checked.stderr
    assert "SMS_WEBHOOK_URL" not in checked.stderr
    code, log = operator["start, webhook"]()
    assert code != 0 and "SMS_BACKEND=webhook needs SMS_WEBHOOK_SECRET." in log


def test_several_workers_stop_instead_of_restarting_forever(operator):
    """uvicorn restarts a worker that raises; one that exits as a failed start stops it
    (a supervisor that restarted it forever would still be running: refused_start)."""
    _, log = operator["start, several workers"]()  # it stopped: uvicorn's own status is 0
    assert "SMS_BACKEND=twilio needs TWILIO_AUTH_TOKEN." in log
    assert "failed to start, stopping the parent process" in log


@pytest.mark.parametrize("backend", ["simulated", "console"])
def test_a_demo_backend_chosen_with_debug_off_is_a_deploy_warning(operator, backend):
    checked = operator[f"deploy, {backend}"]()
    assert checked.returncode == 0, checked.stderr
    assert f"(users.W001) SMS_BACKEND={backend}: every code" in checked.stderr


def test_a_demo_backend_chosen_with_debug_off_starts_with_a_warning(operator):
    log = operator["start, simulated"]()
    line = next(line for line in log.splitlines() if "SMS_BACKEND=simulated: " in line)
    warning = json.loads(line)  # with DEBUG off every log line is JSON (backend/logs.py)
    assert (warning["level"], warning["logger"]) == ("WARNING", "users.sms")
    assert warning["message"].startswith("SMS_BACKEND=simulated: every code is returned to the")
    assert "Application startup complete" in log


# The same checks in process, for the cases a subprocess would only make slower


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("twillio", "SMS_BACKEND='twillio' is not one of: simulated, console, twilio, webhook"),
        ("sms_gateway.Backend", "SMS_BACKEND='sms_gateway.Backend' does not import"),
        ("users.sms.masked", "SMS_BACKEND='users.sms.masked' has no async send(phone, code)."),
    ],
)
def test_an_unknown_backend_is_an_error(settings, backend, message):
    settings.SMS_BACKEND = backend
    [error] = sms_errors()
    assert error.msg.startswith(message) and error.id.startswith("users.E")


def test_only_the_missing_twilio_settings_are_named(settings):
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = "AC0123"
    settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_FROM = "+15005550006"
    assert [e.msg for e in sms_errors()] == ["SMS_BACKEND=twilio needs TWILIO_AUTH_TOKEN."]
    settings.TWILIO_AUTH_TOKEN = "token"
    settings.TWILIO_API_URL = "api.twilio.com"
    assert [e.msg for e in sms_errors()] == ["TWILIO_API_URL must be an http:// or https:// URL."]


@pytest.mark.parametrize(
    "secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_"]
)
def test_a_webhook_secret_must_be_in_its_whsec_form_and_is_never_repeated(settings, secret):
    settings.SMS_BACKEND = "webhook"
    settings.SMS_WEBHOOK_URL = "https://sms-gateway.example.com/send"
    settings.SMS_WEBHOOK_SECRET = secret
    [error] = sms_errors()
    assert error.msg.startswith("SMS_WEBHOOK_SECRET is not a Standard Webhooks secret")
    value = secret.removeprefix("whsec_")
    assert not value or value not in error.msg
    settings.SMS_WEBHOOK_SECRET = SECRET
    assert sms_errors() == []


def test_a_webhook_url_with_a_password_stops_the_start_without_repeating_it(operator):
    code, log = operator["start, webhook with a password"]()
    assert code != 0
    assert "SMS_WEBHOOK_URL must not contain a user name or password" in log
    assert "hunter2" not in log


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("https://sms:hunter2@sms-gateway.example.com/send", "a user name or password"),
        ("https://hunter2@sms-gateway.example.com/send", "a user name or password"),
        ("https://sms-gateway.example.com/send?api_key=hunter2", "a query string"),
        ("https://sms-gateway.example.com/send#hunter2", "a query string or fragment"),
    ],
)
def test_a_webhook_url_must_hold_no_secret(settings, url, found):
    settings.SMS_BACKEND = "webhook"
    settings.SMS_WEBHOOK_URL = url
    settings.SMS_WEBHOOK_SECRET = SECRET
    [error] = sms_errors()
    assert error.msg.startswith(f"SMS_WEBHOOK_URL must not contain {found}")
    assert "SMS_WEBHOOK_SECRET" in error.msg and "hunter2" not in error.msg
    settings.SMS_WEBHOOK_URL = "https://sms-gateway.example.com:8443/v1/send"
    assert sms_errors() == []


def test_the_twilio_api_url_must_hold_no_secret(settings):
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC0123", "token"
    settings.TWILIO_FROM = "+15005550006"
    settings.TWILIO_API_URL = "https://AC0123:token@api.twilio.com"
    [error] = sms_errors()
    assert error.msg.startswith("TWILIO_API_URL must not contain a user name or password")


def test_the_message_settings_are_checked(settings):
    settings.SMS_BACKEND = "console"
    settings.SMS_TEMPLATE = "Your code is below"
    settings.SMS_WEBOTP_DOMAIN = "https://app.example.com/"
    settings.SMS_TIMEOUT = 0
    assert [e.id for e in sms_errors()] == ["users.E007", "users.E009", "users.E008"]


def test_the_start_raises_the_same_messages_as_the_check(settings):
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_FROM = settings.TWILIO_MESSAGING_SERVICE_SID = ""
    with pytest.raises(ImproperlyConfigured) as refused:
        sms.check_at_start()
    assert str(refused.value).splitlines() == [e.msg for e in sms_errors()]


@pytest.mark.parametrize(("debug", "warned"), [(False, True), (True, False)])
def test_a_demo_backend_is_a_warning_at_start_only_with_debug_off(settings, caplog, debug, warned):
    settings.DEBUG = debug
    settings.SMS_BACKEND = "console"
    with caplog.at_level(logging.WARNING, logger="users.sms"):
        sms.check_at_start()
    assert ("SMS_BACKEND=console: every code is written to the log" in caplog.text) is warned
    assert [w.id for w in check_sms_backend_for_deploy()] == ["users.W001"]


def test_real_providers_are_no_deploy_warning(settings):
    settings.SMS_BACKEND = "twilio"
    assert check_sms_backend_for_deploy() == []
