"""The ASGI entry point served by uvicorn as operators run it."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.db import connection

from tests.conftest import SEND, concurrent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(port, query, variables, **headers):
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql/",
        body,
        {"Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@concurrent
def test_uvicorn_with_its_defaults_does_not_let_clients_pick_their_address():
    """uvicorn trusts X-Forwarded-For from loopback by default; the service must not."""
    db = connection.settings_dict
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "OTP_MAX_SENDS_PER_IP": "2",
        "OTP_RESEND_COOLDOWN": "0",
        "SMS_SIMULATED_DELAY": "0",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        answers = [
            post(port, SEND, {"phone": f"+37529123456{i}"}, **{"X-Forwarded-For": f"9.9.9.{i}"})
            for i in range(3)
        ]
    finally:
        server.terminate()
        server.wait(timeout=10)
    codes = [[e["code"] for e in a["data"]["sendCode"]["userErrors"]] for a in answers]
    assert codes == [[], [], ["RATE_LIMITED"]]
