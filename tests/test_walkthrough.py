"""The walk-through with curl and python3 (docs/frontend.md, "The same with curl"), run
as a reader pastes it into a shell: the block is read from the document itself.

Against a running server it signs a person in, shows who they are, refreshes and signs
out; when it cannot go on (no server on that port, something that is not this API, a
refusal such as RATE_LIMITED) it stops with one line that says why, never a Python
traceback. Run with bash and with a POSIX sh (dash), since readers' shells differ.
"""

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.servers import free_port, served, start_server
from users.models import User

FRONTEND = (Path(__file__).parent.parent / "docs" / "frontend.md").read_text()
WALKTHROUGH = (
    FRONTEND.partition("## The same with curl")[2].partition("```sh\n")[2].partition("```")[0]
)

SHELLS = [shell for shell in ("bash", "sh") if shutil.which(shell)]
pytestmark = pytest.mark.skipif(
    not shutil.which("curl") or not shutil.which("python3"), reason="needs curl and python3"
)


def walk_through(shell: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which(shell), "-c", WALKTHROUGH],
        env={"PATH": os.environ["PATH"], "PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line(run: subprocess.CompletedProcess) -> str:
    """The stopped run's reason: its only line on stderr."""
    assert run.returncode != 0, run.stdout
    assert "Traceback" not in run.stderr + run.stdout
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


@served
@pytest.mark.parametrize("shell", SHELLS)
def test_the_walk_through_signs_in_and_out_and_then_stops_with_one_line(shell):
    with start_server({"SMS_SIMULATED_DELAY": "0"}) as server:
        port = int(server.url.rpartition(":")[2])
        run = walk_through(shell, port)
        # The same number again within a minute: the send is refused, and said so.
        again = walk_through(shell, port)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    answers = [json.loads(line) for line in run.stdout.splitlines()]
    assert [list(answer["data"]) for answer in answers] == [
        ["sendCode"],
        ["verifyCode"],
        ["me"],
        ["refreshToken"],
        ["revokeToken"],
    ]
    assert answers[1]["data"]["verifyCode"]["isNewUser"] is True
    assert answers[2]["data"]["me"]["phone"] == "+375297654321"
    assert answers[4]["data"]["revokeToken"] == {"revoked": True, "userErrors": []}
    assert User.objects.filter(phone="+375297654321").exists()

    assert one_line(again).startswith("sendCode: RATE_LIMITED: ")
    assert len(again.stdout.splitlines()) == 1  # the refused answer itself, and no more


@pytest.mark.parametrize("shell", SHELLS)
def test_with_no_server_on_the_port_it_says_so_in_one_line(shell):
    port = free_port()  # nothing listens there
    line = one_line(walk_through(shell, port))
    assert line == (
        f"No answer from http://127.0.0.1:{port}/graphql/ (curl exit 7): "
        f"is make run serving on port {port}?"
    )


class NotThisApi(BaseHTTPRequestHandler):
    """Another program on the port: HTML for every request."""

    def do_POST(self):
        body = b"<!doctype html>\n<title>Welcome</title>\n<h1>Another app</h1>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("shell", SHELLS)
def test_with_something_else_on_the_port_it_says_so_in_one_line(shell):
    other = ThreadingHTTPServer(("127.0.0.1", 0), NotThisApi)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        line = one_line(walk_through(shell, other.server_address[1]))
    finally:
        other.shutdown()
        other.server_close()
    assert line == (
        "sendCode: not an answer of this API: <!doctype html> <title>Welcome</title> "
        "<h1>Another app</h1>"
    )
