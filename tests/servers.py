"""Real servers for the tests that need one: uvicorn as operators run it, a throwaway
PostgreSQL cluster to freeze, and a small asyncio HTTP/1.1 client that can send a few
hundred requests at once or exactly the bytes a test wants.

Everything listens on 127.0.0.1 on a port the OS picks and is stopped by the context
manager that started it, whatever the test did.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings
from django.db import connection

from backend import embedded

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Sign-ins as fast as the service allows: no delivery wait, no cooldown, no address
# limit, and no SMS pumping rule (tests send many codes they never use).
FAST_SIGN_IN = {
    "SMS_SIMULATED_DELAY": "0",
    "OTP_RESEND_COOLDOWN": "0",
    "OTP_MAX_SENDS_PER_PHONE": "1000",
    "OTP_MAX_DELIVERIES_PER_PHONE": "1000",
    "OTP_MAX_SENDS_PER_IP": "1000",
    "SMS_PUMPING_MIN_SENDS": "0",
}


def served(test):
    """Mark a test that runs a server against the test database. The server is another
    process, so the test's data must be committed (a transactional test)."""
    return pytest.mark.django_db(transaction=True)(test)


# Debian's Chromium for the browser tests, started as this machine allows: headless, and
# without the background requests its closed network would refuse (Playwright drives it;
# its own browser download cannot work here).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def this_database_url() -> str:
    """The URL of the database this test process uses (pytest-django's test database),
    on a TCP address or a Unix socket's directory (the embedded PostgreSQL's)."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    host = quote(connection.get_connection_params().get("host") or "127.0.0.1", safe="")
    return f"postgres://{db['USER']}{password}@{host}{port}/{db['NAME']}"


# ---------------------------------------------------------------------------------------
# uvicorn


def server_command(port: int, workers: int, *, proxy_headers: bool = False) -> list[str]:
    """How the service is launched: the one place to change it.

    `proxy_headers=True` leaves out --no-proxy-headers, to prove that uvicorn's own
    default cannot let clients pick their address (tests/test_serving.py).
    """
    command = [sys.executable, "-m", "uvicorn", "backend.asgi:application"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    command += ["--loop", "uvloop", "--http", "backend.server:HttpProtocol", "--no-access-log"]
    command += ["--log-config", "backend/uvicorn-logging.json"]
    return command if proxy_headers else [*command, "--no-proxy-headers"]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path
    _log: str | None = field(default=None, repr=False)

    @property
    def log(self) -> str:
        """What the server wrote to stderr and stdout (so far, or all of it after stop)."""
        if self._log is not None:
            return self._log
        return self.log_path.read_text(errors="replace")


def server_env(env: dict) -> dict:
    """The environment of a served process: production-like settings, then `env`; a
    variable that `env` sets to None is left out."""
    defaults = {
        "DEBUG": "0",
        "GRAPHIQL": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "SMS_BACKEND": "simulated",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": this_database_url(),
    }
    merged = {**os.environ, **defaults, **env}
    return {name: value for name, value in merged.items() if value is not None}


@contextlib.contextmanager
def start_server(
    env: dict,
    workers: int = 1,
    *,
    proxy_headers: bool = False,
    timeout: float = 30.0,
    fails: bool = False,
):
    """Run uvicorn with `env` on a free port until the block ends; yields a Server.

    Waits until /healthz answers 200; with `fails`, until the server has stopped, as
    one that refuses to start does (its status is `server.process.returncode`, what it
    said `server.log`), and raises if it is still running after `timeout` seconds.
    On exit: SIGTERM, then SIGKILL to the whole process group (workers included) if it
    has not stopped within 10 s.
    """
    port = free_port()
    with tempfile.NamedTemporaryFile("w+b", prefix="uvicorn-", suffix=".log", delete=False) as f:
        log_path = Path(f.name)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            server_command(port, workers, proxy_headers=proxy_headers),
            cwd=PROJECT_ROOT,
            env=server_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so workers can be killed with it
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        if fails:
            _wait_until_stopped(server, timeout)
        else:
            _wait_until_healthy(server, timeout)
        yield server
    finally:
        _stop(process)
        server._log = log_path.read_text(errors="replace")
        log_path.unlink(missing_ok=True)


def _wait_until_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log}")
        try:
            if get(server.url, "/healthz", timeout=1).status == 200:
                return
        except (OSError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server did not answer /healthz within {timeout} s:\n{server.log}")


def _wait_until_stopped(server: Server, timeout: float) -> None:
    try:
        server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"the server was still running after {timeout} s, not refusing to start:\n{server.log}"
        ) from None


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the group: a worker left behind, if any
    process.wait(timeout=10)


# ---------------------------------------------------------------------------------------
# HTTP/1.1 client


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    elapsed: float = 0.0

    def json(self):
        return json.loads(self.body)

    @property
    def is_json(self) -> bool:
        if not self.headers.get("content-type", "").startswith("application/json"):
            return False
        try:
            self.json()
        except ValueError:
            return False
        return True

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


async def read_response(reader: asyncio.StreamReader) -> Response:
    """One response: status line, headers, then a body by Content-Length, chunks or EOF."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before a response")
    status = int(status_line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return Response(status, headers, body)


async def http(url, method="GET", path="/", body=b"", headers=None, timeout=30.0) -> Response:
    """One request on its own connection. Raises TimeoutError after `timeout` seconds."""
    host, port = address(url)
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    if body or method == "POST":
        head.append(f"Content-Length: {len(body)}")
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    started = time.monotonic()

    async def exchange():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            return await read_response(reader)
        finally:
            writer.close()

    response = await asyncio.wait_for(exchange(), timeout)
    response.elapsed = time.monotonic() - started
    return response


def get(url, path, timeout=10.0) -> Response:
    """A GET from synchronous code."""
    return asyncio.run(http(url, "GET", path, timeout=timeout))


async def graphql(url, query, variables=None, *, token=None, headers=None, timeout=30.0):
    """POST one GraphQL operation as JSON; the Response."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    return await http(url, "POST", "/graphql/", body, headers, timeout)


async def graphql_data(url, query, variables=None, **kwargs) -> dict:
    """The `data` of a GraphQL answer that must be a 200 without errors."""
    response = await graphql(url, query, variables, **kwargs)
    assert response.status == 200 and response.is_json, response
    answer = response.json()
    assert not answer.get("errors"), answer
    return answer["data"]


SEND = """mutation($phone: String!) { sendCode(phone: $phone) {
  debugCode userErrors { code message } } }"""
VERIFY = """mutation($phone: String!, $code: String!) { verifyCode(phone: $phone, code: $code) {
  token refreshToken userErrors { code message } } }"""
ME = "{ me { id phone referrals { totalCount } } }"


async def send_code(url, phone, timeout=30.0) -> str:
    sent = (await graphql_data(url, SEND, {"phone": phone}, timeout=timeout))["sendCode"]
    assert sent["userErrors"] == [] and sent["debugCode"], sent
    return sent["debugCode"]


async def verify_code(url, phone, code, timeout=30.0) -> str:
    variables = {"phone": phone, "code": code}
    verified = (await graphql_data(url, VERIFY, variables, timeout=timeout))["verifyCode"]
    assert verified["userErrors"] == [] and verified["token"], verified
    return verified["token"]


async def sign_in(url, phone, timeout=30.0) -> str:
    """sendCode, then verifyCode with the debugCode; the access token."""
    code = await send_code(url, phone, timeout)
    return await verify_code(url, phone, code, timeout)


async def sign_in_and_me(url, phone, timeout=30.0) -> dict:
    """A whole sign-in, then `me` with its token: what a person does first."""
    token = await sign_in(url, phone, timeout)
    return (await graphql_data(url, ME, token=token, timeout=timeout))["me"]


def top_error_code(response: Response) -> str | None:
    """extensions.code of the first top-level error of a JSON answer, else None."""
    if not response.is_json:
        return None
    errors = response.json().get("errors") if isinstance(response.json(), dict) else None
    if not errors:
        return None
    return (errors[0].get("extensions") or {}).get("code")


_phone_counter = iter(range(10_000_000))


def new_phone() -> str:
    """A valid Belarusian mobile number no other call in this process has used."""
    return f"+37544{(os.getpid() * 7919 + next(_phone_counter)) % 10_000_000:07d}"


# ---------------------------------------------------------------------------------------
# A throwaway PostgreSQL cluster


def postgres_bindir() -> Path:
    """The embedded PostgreSQL's initdb and postgres: the same server everywhere."""
    return embedded.binaries()


def _children(pids: set[int]) -> set[int]:
    """Every process whose parent is in `pids`, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])  # after "pid (comm) state"
        if ppid in pids:
            found.add(int(entry.name))
    return found


@dataclass
class Cluster:
    """A PostgreSQL cluster of this test run's own, on 127.0.0.1:port, trust auth."""

    bindir: Path
    directory: Path
    port: int
    database: str = "app"
    user: str = "postgres"
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _family(self) -> list[int]:
        """The postmaster and all its descendants, postmaster first."""
        family, generation = [self.process.pid], {self.process.pid}
        while generation := _children(generation) - set(family):
            family += sorted(generation)
        return family

    def freeze(self) -> None:
        """SIGSTOP to the postmaster, then to every process under it: a hung database."""
        stopped: set[int] = set()
        for _ in range(3):  # a child forked while we looked is caught on the next pass
            for pid in self._family():
                if pid not in stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                    stopped.add(pid)

    def thaw(self) -> None:
        for pid in reversed(self._family()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def start(self) -> None:
        """Start the postmaster on this cluster's data and port (it appends to the log)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.bindir / "postgres",
                    "-D",
                    self.directory / "data",
                    "-p",
                    str(self.port),
                    f"--unix_socket_directories={self.directory}",
                    *POSTGRES_OPTIONS,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_as_postgres(),
            )

    def wait_until_accepting(self, timeout: float = 30.0) -> None:
        """Until the server takes a connection (it has started or restarted)."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user=self.user,
                    dbname="postgres",
                    connect_timeout=2,
                ).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.log_path.read_text()
                    raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
                time.sleep(0.1)

    def restart(self) -> None:
        """What `pg_ctl restart` does: a fast shutdown, then a start on the same data and
        port; every connection the server had is closed."""
        _stop_postgres(self.process)
        self.start()
        self.wait_until_accepting()

    @contextlib.contextmanager
    def frozen(self):
        self.freeze()
        try:
            yield
        finally:
            self.thaw()


INITDB_OPTIONS = ["-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
# Local only, and fast: nothing in it needs to survive a crash.
POSTGRES_OPTIONS = [
    "--listen_addresses=127.0.0.1",
    "--fsync=off",
    "--synchronous_commit=off",
    "--full_page_writes=off",
    "--shared_buffers=16MB",
    "--max_connections=60",
]


def _as_postgres() -> dict:
    """Popen arguments that run initdb and postgres as the embedded PostgreSQL's own
    account when we are root (PostgreSQL refuses to run as root)."""
    account = embedded.server_account()
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def throwaway_postgres(migrate_env: dict | None = None):
    """initdb, start, create a database and migrate it; stop and delete it all at the end."""
    bindir = postgres_bindir()
    directory = Path(tempfile.mkdtemp(prefix="pg-throwaway-"))
    account = embedded.server_account()
    if account is not None:
        os.chown(directory, account.pw_uid, account.pw_gid)
    cluster = Cluster(bindir=bindir, directory=directory, port=free_port())
    try:
        subprocess.run(
            [bindir / "initdb", "-D", directory / "data", "-U", cluster.user, *INITDB_OPTIONS],
            capture_output=True,
            check=True,
            **_as_postgres(),
        )
        cluster.start()
        _create_database(cluster)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=PROJECT_ROOT,
            env=server_env({"DATABASE_URL": cluster.url, **(migrate_env or {})}),
            capture_output=True,
            check=True,
        )
        yield cluster
    finally:
        if cluster.process is not None:
            cluster.thaw()
            _stop_postgres(cluster.process)
        shutil.rmtree(directory, ignore_errors=True)


def _create_database(cluster: Cluster) -> None:
    import psycopg

    cluster.wait_until_accepting()
    with psycopg.connect(
        host="127.0.0.1", port=cluster.port, user=cluster.user, dbname="postgres", autocommit=True
    ) as admin:
        admin.execute(f'CREATE DATABASE "{cluster.database}"')


def _stop_postgres(process: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL to its group."""
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGQUIT, 5)):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
