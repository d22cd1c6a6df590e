"""A production start, `make serve`, writes JSON lines only, from its first line to its last.

The test runs the Makefile's own `serve` target against the test database: migrate,
collectstatic and the catalogues, then uvicorn, started and stopped as a supervisor
would (SIGTERM to the server).
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers import PROJECT_ROOT, free_port, get, served, server_env

INSTALLED = PROJECT_ROOT / ".venv" / "bin" / ".installed"
MAKE = shutil.which("make")


def _child(pid: int) -> int | None:
    """The first child process of `pid` (make's recipe shell, which execs uvicorn)."""
    with contextlib.suppress(OSError, ValueError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0]) if children else None
    return None


def _serve_until_healthy(env: dict, timeout: float = 90) -> tuple[int, str]:
    """`make serve` until /healthz answers, then SIGTERM to uvicorn: make's status and output."""
    port = free_port()
    env = {**env, "PORT": str(port), "WORKERS": "1"}
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # a top-level make, as operators run it
        env.pop(name, None)
    make = subprocess.Popen(
        [MAKE, "serve"],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and make.poll() is None:
            with contextlib.suppress(OSError, TimeoutError):
                if get(f"http://127.0.0.1:{port}", "/healthz", timeout=1).status == 200:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"make serve did not answer /healthz:\n{make.communicate(timeout=5)[0]}")
        uvicorn = _child(make.pid)
        assert uvicorn is not None
        os.kill(uvicorn, signal.SIGTERM)
        output, _ = make.communicate(timeout=30)
        return make.returncode, output
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(make.pid, signal.SIGKILL)
        make.wait(timeout=10)


@pytest.mark.skipif(
    not INSTALLED.exists() or MAKE is None,
    reason="needs make and the project's .venv (make test builds it)",
)
@served
def test_make_serve_writes_json_lines_only(tmp_path):
    env = server_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    env.pop("DEBUG")  # make serve as documented: DEBUG off by default
    _, output = _serve_until_healthy(env)
    # uvicorn ends by raising the SIGTERM it handled, so that its supervisor sees why it
    # stopped; make then says so in its own words, its one line (and the last).
    lines = [line for line in output.splitlines() if line.strip()]
    if lines[-1].startswith("make: *** ") and lines[-1].endswith(" Terminated"):
        lines.pop()
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not_json == [], output
    records = [json.loads(line) for line in lines]
    messages = [(record["logger"], record["message"]) for record in records]
    assert ("manage.migrate", "Operations to perform:") in messages  # migrate, as JSON
    # uvicorn's lifespan handshake is answered, at start and at shutdown.
    assert ("uvicorn.error", "Application startup complete.") in messages
    assert ("uvicorn.error", "Application shutdown complete.") in messages
    assert not [message for _, message in messages if "lifespan" in message]
