#!/usr/bin/env python
"""`make bench`: the service against its own floor, on PostgreSQL, in one run.

Creates the database `bench` (on the embedded PostgreSQL, or BENCH_DATABASE_URL), seeds
100,000 users of whom one has 1,000 referrals, starts one uvicorn worker with production
settings (DEBUG off) exactly as `make serve` does, and measures back to back:

- `me` over GraphQL against a plain Django JSON view doing the same token check and
  reads (bench/plain.py, mounted only by bench/settings.py), at 8 and 64 connections;
- 200 concurrent sendCode with the simulated 1 s delivery;
- verifyCode throughput with a delivery that does not wait;
- the worker's peak RSS and the time from start to its first answer;
- the CPU each request costs: the server's processes and the database's backends that
  serve its connections, read from /proc before and after each run. Unlike requests/s,
  CPU per request hardly moves when other work shares the machine, so two commits can
  be compared on a busy one.

Load comes from wrk where it is installed, else from the asyncio client below. Each
measurement runs twice so the noise shows. Numbers are ratios within this run; absolute
figures depend on the machine.
"""

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _database_url() -> str:
    """BENCH_DATABASE_URL, else the database `bench` on the embedded PostgreSQL, which
    this process then holds until it ends (backend/embedded)."""
    if os.environ.get("BENCH_DATABASE_URL"):
        return os.environ["BENCH_DATABASE_URL"]
    sys.path.insert(0, str(ROOT))
    from backend import embedded

    return embedded.url("bench")


DATABASE_URL = _database_url()
PORT = int(os.environ.get("BENCH_PORT", "8765"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
USERS = int(os.environ.get("BENCH_USERS", "100000"))
REFERRALS = 1000
LOG = Path(tempfile.gettempdir()) / "bench-server.log"
SECRET_KEY = "bench-secret-key-0123456789abcdef0123456789abcdef"
# As `make serve` runs it.
UVICORN = ["--loop", "uvloop", "--http", "backend.server:HttpProtocol", "--no-proxy-headers"]
UVICORN += ["--no-access-log", "--log-config", "backend/uvicorn-logging.json"]
UVICORN += ["--log-level", "warning"]
SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": "bench.settings",
    "DATABASE_URL": DATABASE_URL,
    "SECRET_KEY": SECRET_KEY,
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    # Sign-ins come from many people: the benchmark speaks as a load balancer that
    # forwards each request's client address, and the per-address limit stays on.
    "TRUSTED_PROXIES": "127.0.0.1",
    "OTP_RESEND_COOLDOWN": "0",
    "SMS_BACKEND": "simulated",
    "OTP_MAX_SENDS_TOTAL": "1000000",  # the benchmark sends thousands of codes an hour
    # Its bursts would be shed: one person's 64 connections, and thousands of sends from
    # few number ranges, are what a burst and an SMS pumping run look like. The pumping
    # rule still runs for every send, each number a range of its own.
    "MAX_IN_FLIGHT_PER_USER": "0",
    "MAX_IN_FLIGHT_PER_ADDRESS": "0",
    "SMS_PUMPING_PREFIX_DIGITS": "9",
}
ME_QUERY = """{ me { id phone inviteCode activatedInviteCode inviteActivatedAt dateJoined
  referrals(first: 50) { totalCount edges { cursor node { phone activatedAt } }
  pageInfo { hasNextPage endCursor } } } }"""
SEND = "mutation($p: String!) { sendCode(phone: $p) { phone debugCode userErrors { code } } }"
VERIFY = """mutation($p: String!, $c: String!) { verifyCode(phone: $p, code: $c) {
  token userErrors { code } } }"""


# Database


def create_database() -> None:
    name = DATABASE_URL.rsplit("/", 1)[1]
    admin_url = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, **SERVER_ENV},
        check=True,
    )


def seed() -> int:
    """100,000 users by COPY; the first has 1,000 referrals. Returns that user's id."""
    alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    codes: set[str] = set()
    rng = random.Random(42)
    while len(codes) < USERS:
        codes.add("".join(rng.choice(alphabet) for _ in range(6)))
    with psycopg.connect(DATABASE_URL) as conn:
        with conn.cursor().copy(
            "COPY users_user (phone, invite_code, password, is_superuser, is_staff, "
            "is_active, date_joined) FROM STDIN"
        ) as copy:
            for i, code in enumerate(codes):
                copy.write_row(
                    (f"+37533{i:07d}", code, "!", False, False, True, "2026-01-01T00:00:00Z")
                )
        inviter = conn.execute("SELECT min(id) FROM users_user").fetchone()[0]
        conn.execute(
            "UPDATE users_user SET invited_by_id = %s, "
            "invite_activated_at = '2026-02-01'::timestamptz + id * interval '1 second' "
            "WHERE id > %s AND id <= %s",
            [inviter, inviter, inviter + REFERRALS],
        )
        conn.execute("ANALYZE users_user")
    return inviter


def access_token(user_id: int) -> str:
    os.environ.update(SERVER_ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from users.models import User
    from users.services import tokens

    return tokens.issue(user=User.objects.get(pk=user_id)).token


# Server


class Server:
    """uvicorn, started as `make serve` starts it: one worker unless told otherwise."""

    def __init__(self, workers=1, **env):
        self.workers = workers
        self.env = {**os.environ, **SERVER_ENV, **env}

    def __enter__(self):
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                *(PYTHON, "-m", "uvicorn", "backend.asgi:application", "--port", str(PORT)),
                *("--workers", str(self.workers), *UVICORN),
            ],
            cwd=ROOT,
            env=self.env,
            stderr=LOG.open("a"),
        )
        while True:
            try:
                status, _ = asyncio.run(request("GET", "/healthz"))
                if status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - started > 30:
                raise RuntimeError("server did not answer within 30 s")
            time.sleep(0.01)
        self.first_answer = time.perf_counter() - started
        return self

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def peak_rss_mb(self) -> float:
        """The largest peak RSS among the serving processes (the workers under a supervisor)."""
        pids = [self.process.pid, *children(self.process.pid)]
        peaks = []
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            peaks += [int(line.split()[1]) for line in status.splitlines() if "VmHWM" in line]
        return max(peaks) / 1024

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)


def cpu_seconds(pids) -> float:
    """User and system CPU of these processes so far; a process that ended counts 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def database_backends() -> list[int]:
    """The PostgreSQL backends connected to the benchmark's database (the server's pool),
    when that server runs on this machine."""
    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchall()
    return [pid for (pid,) in rows if Path(f"/proc/{pid}").exists()]


class CpuMeter:
    """CPU ms per request of the server and of its database connections over one run."""

    def __init__(self, server):
        self.server = server

    def __enter__(self):
        self.app = cpu_seconds(self.server.pids())
        self.backends = database_backends()
        self.db = cpu_seconds(self.backends)
        return self

    def __exit__(self, *exc):
        self.app = cpu_seconds(self.server.pids()) - self.app
        # Backends opened during the run count from zero.
        after = set(self.backends) | set(database_backends())
        self.db = cpu_seconds(after) - self.db

    def per_request(self, requests: float) -> str:
        return f"{self.app * 1000 / requests:.2f} + {self.db * 1000 / requests:.2f}"


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


# HTTP client


def raw_request(method, path, body=b"", token=None, client=None) -> bytes:
    """One HTTP/1.1 request; `client` is the address a trusted proxy would forward."""
    headers = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{PORT}"]
    if token:
        headers.append(f"Authorization: Bearer {token}")
    if client:
        headers.append(f"X-Forwarded-For: {client}")
    if body:
        headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def graphql_body(query: str, **variables) -> bytes:
    return json.dumps({"query": query, "variables": variables}).encode()


async def read_response(reader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


async def request(method, path, body=b"", token=None):
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    try:
        writer.write(raw_request(method, path, body, token))
        return await read_response(reader)
    finally:
        writer.close()


async def _load(payload: bytes, connections: int, seconds: float):
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def connection():
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(payload)
            status, _ = await read_response(reader)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return len(latencies) / (time.perf_counter() - started), latencies, errors


def load(payload: bytes, connections: int, seconds: float = SECONDS) -> dict:
    """Requests/s, p50 and p99 (ms) for `payload` sent over `connections` keep-alive links."""
    if shutil.which("wrk"):
        return wrk_load(payload, connections, seconds)
    rps, latencies, errors = asyncio.run(_load(payload, connections, seconds))
    latencies.sort()
    return {
        "rps": rps,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": errors,
        "requests": len(latencies),
    }


def wrk_load(payload: bytes, connections: int, seconds: float) -> dict:
    head, _, body = payload.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    method, path, _ = lines[0].split(" ")
    headers = dict(line.split(": ", 1) for line in lines[1:] if not line.startswith("Host"))
    headers.pop("Content-Length", None)
    script = "\n".join(
        [f"wrk.method = {json.dumps(method)}", f"wrk.body = {json.dumps(body.decode())}"]
        + [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
        + [
            "done = function(summary, latency, requests)",
            '  io.write(string.format("JSON %d %d %f %f %d\\n", summary.requests, '
            "summary.duration, latency:percentile(50), latency:percentile(99), "
            "summary.errors.status + summary.errors.connect + summary.errors.read))",
            "end",
        ]
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        out = subprocess.run(
            [
                "wrk",
                "-t",
                "1",
                "-c",
                str(connections),
                "-d",
                f"{max(1, round(seconds))}s",  # wrk takes whole seconds only
                "-s",
                lua.name,
                f"http://127.0.0.1:{PORT}{path}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    fields = next(line for line in out.splitlines() if line.startswith("JSON")).split()
    requests, micros, p50, p99, errors = map(float, fields[1:])
    return {
        "rps": requests / (micros / 1e6),
        "p50": p50 / 1000,
        "p99": p99 / 1000,
        "errors": errors,
        "requests": requests,
    }


async def _burst(bodies, concurrency, path="/graphql/") -> tuple[float, list[dict]]:
    """POST every GraphQL body, at most `concurrency` at once, each from its own address."""
    bodies = [
        (body, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}") for i, body in enumerate(bodies)
    ]
    queue = list(reversed(bodies))
    answers: list[dict] = []

    async def connection():
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        while queue:
            body, client = queue.pop()
            writer.write(raw_request("POST", path, body, client=client))
            _, body = await read_response(reader)
            answers.append(json.loads(body))
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(min(concurrency, len(bodies)))))
    return time.perf_counter() - started, answers


def burst(bodies, concurrency, path="/graphql/"):
    return asyncio.run(_burst(bodies, concurrency, path))


# The run


def check_same_answer(token: str) -> None:
    _, graphql = asyncio.run(request("POST", "/graphql/", graphql_body(ME_QUERY), token))
    _, plain = asyncio.run(request("GET", "/bench/plain-me", token=token))
    graphql_me, plain_me = json.loads(graphql)["data"]["me"], json.loads(plain)["data"]["me"]
    total = graphql_me["referrals"]["totalCount"]
    assert total == min(REFERRALS, USERS - 1), total
    assert len(graphql_me["referrals"]["edges"]) == len(plain_me["referrals"]["edges"]) == 50
    assert graphql_me["phone"] == plain_me["phone"]


def main() -> None:
    rows: list[tuple[str, str]] = []
    print(f"seeding {USERS:,} users into {DATABASE_URL} ...", flush=True)
    create_database()
    inviter = seed()
    token = access_token(inviter)
    graphql_me = raw_request("POST", "/graphql/", graphql_body(ME_QUERY), token)
    plain_me = raw_request("GET", "/bench/plain-me", token=token)
    client = "wrk" if shutil.which("wrk") else "asyncio client"

    def me(server, label, connections_list):
        # Warm up at full concurrency: every database thread's connection prepares its
        # statements after a few uses, and the first seconds of a server are slower.
        for connections in connections_list:
            load(graphql_me, connections, 2)
            load(plain_me, connections, 2)
        for run in (1, 2):
            for connections in connections_list:
                with CpuMeter(server) as plain_cpu:
                    plain = load(plain_me, connections)
                with CpuMeter(server) as graphql_cpu:
                    graphql = load(graphql_me, connections)
                assert not plain["errors"] and not graphql["errors"], (plain, graphql)
                rows.append(
                    (
                        f"me, {connections} connections{label}, run {run}: req/s plain / GraphQL",
                        f"{plain['rps']:.0f} / {graphql['rps']:.0f}  "
                        f"ratio {graphql['rps'] / plain['rps']:.2f}",
                    )
                )
                rows.append(
                    (
                        f"me, {connections} connections{label}, run {run}: p50 / p99 ms "
                        "plain | GraphQL",
                        f"{plain['p50']:.1f} / {plain['p99']:.1f} | "
                        f"{graphql['p50']:.1f} / {graphql['p99']:.1f}",
                    )
                )
                plain_ms = plain_cpu.per_request(plain["requests"])
                graphql_ms = graphql_cpu.per_request(graphql["requests"])
                rows.append(
                    (
                        f"me, {connections} connections{label}, run {run}: CPU ms per request "
                        "(app + database) plain | GraphQL",
                        f"{plain_ms} | {graphql_ms}",
                    )
                )

    def sends(server, label, prefix):
        for run in (1, 2):
            floor, _ = burst([b"{}"] * 200, 200, "/bench/plain-wait")
            bodies = [graphql_body(SEND, p=f"+37529{prefix}{run}{i:05d}") for i in range(200)]
            with CpuMeter(server) as cpu:
                wall, answers = burst(bodies, 200)
            failed = [a for a in answers if not (a.get("data") or {}).get("sendCode")]
            if failed:
                print("failed:", len(failed), failed[0], flush=True)
            sent = sum(1 for a in answers if a not in failed and a["data"]["sendCode"]["debugCode"])
            rows.append(
                (
                    f"200 concurrent sendCode{label} / the floor, run {run}",
                    f"{wall:.2f} s / {floor:.2f} s  ratio {wall / floor:.2f} ({sent} sent)",
                )
            )
            rows.append(
                (
                    f"sendCode{label}, run {run}: CPU ms per send (app + database)",
                    cpu.per_request(len(bodies)),
                )
            )

    with Server() as server:
        rows.append(("time from start to first answer (s)", f"{server.first_answer:.2f}"))
        check_same_answer(token)
        me(server, "", (8, 64))
        sends(server, "", 1)
        rows.append(("peak RSS of the worker (MB), 1 s delivery", f"{server.peak_rss_mb():.0f}"))

    with Server(workers=2) as server:
        me(server, ", 2 workers", (64,))
        sends(server, ", 2 workers", 2)
        rows.append(("peak RSS of a worker (MB), 2 workers", f"{server.peak_rss_mb():.0f}"))

    with Server(SMS_SIMULATED_DELAY="0") as server:
        for run in (1, 2):
            phones = [f"+375293{run}{i:05d}" for i in range(1000)]
            _, sent = burst([graphql_body(SEND, p=p) for p in phones], 64)
            codes = {
                s["data"]["sendCode"]["phone"]: s["data"]["sendCode"]["debugCode"] for s in sent
            }
            with CpuMeter(server) as cpu:
                wall, answers = burst([graphql_body(VERIFY, p=p, c=codes[p]) for p in phones], 64)
            ok = sum(1 for a in answers if a["data"]["verifyCode"]["token"])
            rows.append(
                (
                    f"verifyCode (first sign-ins), 64 at once, run {run}",
                    f"{len(phones) / wall:.0f} /s ({ok} signed in)",
                )
            )
            rows.append(
                (
                    f"verifyCode, run {run}: CPU ms per first sign-in (app + database)",
                    cpu.per_request(len(phones)),
                )
            )
        rows.append(
            ("peak RSS of the worker (MB), no delivery wait", f"{server.peak_rss_mb():.0f}")
        )

    width = max(len(name) for name, _ in rows)
    print(f"\nuvicorn as `make serve` runs it, DEBUG off, PostgreSQL; load: {client}")
    print(f"{os.cpu_count()} cores; {SECONDS:.0f} s per load run\n")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
