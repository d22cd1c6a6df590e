"""Behind a load balancer: the proxy rule for the scheme, HSTS, the admin login, hosts,
HEAD, the /admin redirect, the favicon, the body size limit, and `check --deploy` with
production settings.

Each served test runs uvicorn as operators do (tests/servers.py) on 127.0.0.1, so a
"trusted proxy" is TRUSTED_PROXIES=127.0.0.1 and an untrusted peer is 127.0.0.1 when
TRUSTED_PROXIES names another network.
"""

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from django.conf import settings

from tests.servers import PROJECT_ROOT, address, read_response, served, start_server
from users.models import User

HOST = "api.example.test"
ORIGIN = f"https://{HOST}"
ADMIN_PHONE = "+375291234567"
ADMIN_PASSWORD = "a-long-admin-password"
FROM_PROXY = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
YEAR = 365 * 24 * 3600


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]  # names in lower case, repeated names kept
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def cookies(self) -> dict[str, str]:
        """Set-Cookie lines by cookie name."""
        lines = [value for key, value in self.headers if key == "set-cookie"]
        return {line.partition("=")[0]: line for line in lines}

    def cookie_value(self, name: str) -> str:
        return self.cookies()[name].partition("=")[2].partition(";")[0]


async def _exchange(url: str, method: str, path: str, headers: dict, body: bytes) -> Answer:
    host, port = address(url)
    head = [f"{method} {path} HTTP/1.1", "Connection: close"]
    if "Host" not in headers:
        head.append(f"Host: {host}:{port}")
    head += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        head.append(f"Content-Length: {len(body)}")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        raw = await reader.read()  # Connection: close: the server closes after answering
    finally:
        writer.close()
    top, _, content = raw.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    pairs = [line.partition(":") for line in lines]
    answer_headers = [(name.strip().lower(), value.strip()) for name, _, value in pairs]
    if ("transfer-encoding", "chunked") in answer_headers:
        content = _unchunk(content)
    return Answer(int(status_line.split()[1]), answer_headers, content)


def _unchunk(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]


def request(url, method="GET", path="/", headers=None, body=b"") -> Answer:
    """One request on its own connection, with exactly these headers (Host included)."""
    return asyncio.run(asyncio.wait_for(_exchange(url, method, path, headers or {}, body), 30))


def login_form(url: str, headers: dict) -> tuple[Answer, str, str]:
    """GET /admin/login/: the answer, the CSRF cookie and the form's csrfmiddlewaretoken."""
    form = request(url, "GET", "/admin/login/?next=/admin/", headers)
    assert form.status == 200, form
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.body)
    assert token, form.body[:500]
    return form, form.cookie_value("csrftoken"), token.group(1).decode()


def post_login(url: str, headers: dict, cookie: str, token: str) -> Answer:
    body = urlencode(
        {"csrfmiddlewaretoken": token, "username": ADMIN_PHONE, "password": ADMIN_PASSWORD}
    ).encode()
    form_headers = {
        **headers,
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={cookie}",
    }
    return request(url, "POST", "/admin/login/?next=/admin/", form_headers, body)


@served
def test_admin_login_through_a_trusted_proxy_saying_https_gets_hsts_and_secure_cookies():
    User.objects.create_superuser(ADMIN_PHONE, ADMIN_PASSWORD)
    env = {"ALLOWED_HOSTS": HOST, "TRUSTED_PROXIES": "127.0.0.1", "CSRF_TRUSTED_ORIGINS": ORIGIN}
    with start_server(env) as server:
        form, cookie, token = login_form(server.url, FROM_PROXY)
        assert form.header("strict-transport-security") == f"max-age={YEAR}; includeSubDomains"
        assert "; secure" in form.cookies()["csrftoken"].lower()

        browser = {**FROM_PROXY, "Origin": ORIGIN, "Referer": f"{ORIGIN}/admin/login/"}
        signed_in = post_login(server.url, browser, cookie, token)
        assert signed_in.status == 302, signed_in.body[:300]
        assert signed_in.header("location") == "/admin/"
        assert signed_in.header("strict-transport-security")
        session = signed_in.cookies()["sessionid"]
        assert "; secure" in session.lower() and "; httponly" in session.lower()

        admin = request(
            server.url,
            "GET",
            "/admin/",
            {**FROM_PROXY, "Cookie": f"sessionid={signed_in.cookie_value('sessionid')}"},
        )
        assert admin.status == 200 and b"Site administration" in admin.body

        # Django takes the request for https: a form post without Origin then needs a
        # Referer (https only), and is refused without one.
        bare = post_login(server.url, FROM_PROXY, cookie, token)
        assert bare.status == 403 and b"Referer" in bare.body


@served
def test_the_same_headers_from_an_untrusted_peer_do_not_make_the_request_secure():
    User.objects.create_superuser(ADMIN_PHONE, ADMIN_PASSWORD)
    env = {"ALLOWED_HOSTS": HOST, "TRUSTED_PROXIES": "10.0.0.0/8", "CSRF_TRUSTED_ORIGINS": ORIGIN}
    with start_server(env) as server:
        form, cookie, token = login_form(server.url, FROM_PROXY)
        assert form.header("strict-transport-security") is None
        # Plain http to Django: no Referer is asked for, so this post goes through
        # (the same one is refused behind a trusted proxy saying https, above).
        signed_in = post_login(server.url, FROM_PROXY, cookie, token)
        assert signed_in.status == 302, signed_in.body[:300]
        assert signed_in.header("strict-transport-security") is None
        # Its X-Request-ID is not believed either.
        answer = request(server.url, "GET", "/healthz", {**FROM_PROXY, "X-Request-ID": "lb-1"})
        assert answer.header("x-request-id") not in (None, "lb-1")


@served
def test_a_foreign_host_is_refused_everywhere_but_the_probes():
    static_file = "/static/client/style.css"
    env = {"ALLOWED_HOSTS": "127.0.0.1,localhost"}
    with start_server(env) as server:
        own = {"Host": "localhost"}
        foreign = {"Host": "evil.example"}
        post = {"Content-Type": "application/json"}
        query = b'{"query": "{ __typename }"}'
        assert request(server.url, "GET", static_file, own).status == 200
        assert request(server.url, "POST", "/graphql/", {**own, **post}, query).status == 200
        refused = {
            "GET /": request(server.url, "GET", "/", foreign).status,
            "GET /graphql/": request(server.url, "GET", "/graphql/", foreign).status,
            "POST /graphql/": request(
                server.url, "POST", "/graphql/", {**foreign, **post}, query
            ).status,
            "GET /admin/login/": request(server.url, "GET", "/admin/login/", foreign).status,
            "GET /admin": request(server.url, "GET", "/admin", foreign).status,
            f"GET {static_file}": request(server.url, "GET", static_file, foreign).status,
            "GET /favicon.ico": request(server.url, "GET", "/favicon.ico", foreign).status,
        }
        assert refused == dict.fromkeys(refused, 400)
        probes = {
            f"{method} {path}": request(server.url, method, path, foreign).status
            for method in ("GET", "HEAD")
            for path in ("/healthz", "/readyz")
        }
        assert probes == dict.fromkeys(probes, 200)


@served
def test_a_foreign_host_is_a_json_400_and_one_warning_line_without_a_traceback():
    env = {"ALLOWED_HOSTS": "127.0.0.1,localhost"}
    post = {"Host": "scanner.example", "Content-Type": "application/json"}
    with start_server(env) as server:
        answers = [
            request(server.url, "POST", "/graphql/", post, b'{"query": "{ __typename }"}'),
            request(server.url, "GET", "/graphql/", {"Host": "scanner.example"}),
            request(server.url, "GET", "/", {"Host": "203.0.113.9"}),
        ]
        log = server.log  # each line is written before its answer is sent
    for answer in answers:
        assert answer.status == 400, answer.body[:300]
        assert answer.header("content-type") == "application/json"
        [error] = json.loads(answer.body)["errors"]
        assert error["extensions"] == {"code": "BAD_REQUEST"} and "Host" in error["message"]
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    loud = [  # written while serving a request (the start's demo-backend warning is not)
        line
        for line in lines
        if line["level"] in ("WARNING", "ERROR", "CRITICAL") and "request_id" in line
    ]
    assert [(line["level"], line["logger"]) for line in loud] == [
        ("WARNING", "django.security.DisallowedHost")
    ] * 3, loud
    assert "'scanner.example'" in loud[0]["message"] and "'203.0.113.9'" in loud[2]["message"]
    assert not any("exception" in line for line in loud)
    assert "Traceback" not in log


@served
def test_head_redirects_and_favicon():
    with start_server({"ALLOWED_HOSTS": "127.0.0.1,localhost"}) as server:
        own = {"Host": "localhost"}
        for path in ("/", "/healthz", "/readyz"):
            get, head = (request(server.url, method, path, own) for method in ("GET", "HEAD"))
            assert (get.status, head.status) == (200, 200), path
            assert head.body == b"" and get.body, path
            assert head.header("content-type") == get.header("content-type"), path

        admin = request(server.url, "GET", "/admin", own)
        assert admin.status == 301 and admin.header("location") == "/admin/"
        assert request(server.url, "GET", "/admin/", own).status == 302  # to its login page

        favicon = request(server.url, "GET", "/favicon.ico", own)
        assert favicon.status == 302
        icon_url = favicon.header("location")
        assert re.fullmatch(r"/static/client/icon\.[0-9a-f]{12}\.svg", icon_url), icon_url
        icon = request(server.url, "GET", icon_url, own)
        assert icon.status == 200 and icon.header("content-type") == "image/svg+xml"
        assert icon.body.startswith(b"<svg")
        assert "max-age=315360000" in icon.header("cache-control")  # hashed: kept a year+


@served
def test_a_body_announced_too_large_is_refused_before_it_is_read():
    """Content-Length: 400,000,000 and 11 bytes of it sent: a 413 at once. A server that
    waited for the body would answer nothing until the read timeout cut it off."""
    head = (
        "POST /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 400000000\r\n\r\n"
    )

    async def send_the_start_of_it(url):
        reader, writer = await asyncio.open_connection(*address(url))
        try:
            writer.write(head.encode() + b'{"query": "')
            await writer.drain()
            return await asyncio.wait_for(read_response(reader), 30)
        finally:
            writer.close()

    with start_server({"REQUEST_READ_TIMEOUT": "60"}) as server:
        answer = asyncio.run(send_the_start_of_it(server.url))
    assert answer.status == 413, answer
    [error] = answer.json()["errors"]
    assert error["extensions"] == {"code": "PAYLOAD_TOO_LARGE"}
    assert error["message"] == f"The request body is larger than {settings.MAX_REQUEST_BODY} bytes."


# `manage.py check --deploy`

PRODUCTION = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "api.example.com",
    "DATABASE_URL": "postgres://app@db.internal:5432/app",
}
PROVIDERS = {
    "twilio": {
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
        "TWILIO_AUTH_TOKEN": "0123456789abcdef" * 2,
        "TWILIO_MESSAGING_SERVICE_SID": "MG" + "0123456789abcdef" * 2,
    },
    "webhook": {
        "SMS_BACKEND": "webhook",
        "SMS_WEBHOOK_URL": "https://sms.example.com/send",
        "SMS_WEBHOOK_SECRET": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    },
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_check_deploy_reports_no_issues_with_production_settings(provider):
    env = {
        "PATH": os.environ["PATH"],
        "SECRET_KEY": secrets.token_urlsafe(50),
        **PRODUCTION,
        **PROVIDERS[provider],
    }
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "System check identified no issues" in checked.stdout, checked.stdout


def test_check_deploy_still_warns_of_what_the_operator_must_fix():
    """The checks silenced in settings are those the deployment answers otherwise (the
    admin's middleware, TLS at the load balancer); the rest still speak, e.g. HSTS
    turned off, or a short secret key."""
    env = {
        "PATH": os.environ["PATH"],
        "SECRET_KEY": "short",
        "SECURE_HSTS_SECONDS": "0",
        **PRODUCTION,
        **PROVIDERS["webhook"],
    }
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    warned = checked.stdout + checked.stderr
    assert "(security.W004)" in warned and "(security.W009)" in warned, warned
