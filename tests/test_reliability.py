"""One user, a hung database, a hostile query or a slow client must not take a worker down.

Each test runs uvicorn as operators do (tests/servers.py) and talks HTTP to it. They
collect what they saw before asserting, so a failure lists every broken expectation
with the figures measured; run with `-s` to see the figures of a passing run too.
Bodies that are not a GraphQL request are tests/test_api_errors.py's, the body size
limit tests/test_edge.py's.
"""

import asyncio
import secrets
import signal
import threading
import time

import psycopg
import pytest
from django.db import connection

from tests.servers import (
    FAST_SIGN_IN,
    ME,
    SEND,
    Response,
    address,
    graphql,
    http,
    new_phone,
    served,
    sign_in,
    sign_in_and_me,
    start_server,
    throwaway_postgres,
    top_error_code,
    verify_code,
)

UNAVAILABLE = "SERVICE_UNAVAILABLE"


def report(name: str, figures: dict) -> None:
    """Print the measured figures (shown with -s, and under a failure)."""
    print(f"\n[{name}] " + ", ".join(f"{key}={value}" for key, value in figures.items()))


def check(problems: list[str], figures: dict) -> None:
    shown = problems if len(problems) <= 12 else [*problems[:10], f"... {len(problems) - 10} more"]
    assert not problems, "\n".join([*shown, f"figures: {figures}"])


def unavailable_or_data(response: Response) -> str | None:
    """'data' or 'refused' for an acceptable answer under load; None for anything else."""
    if response.status != 200 or not response.is_json:
        return None
    answer = response.json()
    if not isinstance(answer, dict):
        return None
    errors = answer.get("errors") or []
    if not errors and answer.get("data"):
        return "data"
    codes = {(error.get("extensions") or {}).get("code") for error in errors}
    return "refused" if codes == {UNAVAILABLE} else None


def elapsed(response) -> float | None:
    return round(response.elapsed, 2) if isinstance(response, Response) else None


# ---------------------------------------------------------------------------------------
# 1. A burst from one signed-in user is load, not an outage.

BURST_QUERY = "{ a: me { referrals { totalCount } } b: me { referrals { totalCount } } }"
BURST_SIZE = 300
POOL_SIZE = 4


class ConnectionSampler:
    """Counts, every 0.1 s from a thread, the server's connections to the test database.

    Made before the server starts: the connections open then (this process's own, and
    any an earlier test left) are not the server's and are not counted.
    """

    def __init__(self):
        db = connection.settings_dict
        self.params = {
            "host": db["HOST"] or "127.0.0.1",
            "port": db["PORT"] or 5432,
            "user": db["USER"],
            "password": db["PASSWORD"] or None,
            "dbname": db["NAME"],
            "autocommit": True,
            "application_name": "reliability-sampler",
        }
        with psycopg.connect(**self.params) as conn:
            self.before = [
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                )
            ]
        self.counts: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self, conn) -> int:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND application_name <> 'reliability-sampler'"
            " AND pid <> ALL(%s)",
            [self.before],
        ).fetchone()[0]

    def _run(self):
        with psycopg.connect(**self.params) as conn:
            while not self._stop.wait(0.1):
                self.counts.append(self.count(conn))

    def sustained_peak(self) -> int:
        """The most connections seen in two samples in a row (0.1 s apart).

        A backend that is exiting can still be listed beside the one replacing it for
        a moment; a connection held is seen twice.
        """
        pairs = zip(self.counts, self.counts[1:], strict=False)
        return max((min(pair) for pair in pairs), default=max(self.counts, default=0))

    def now(self) -> int:
        with psycopg.connect(**self.params) as conn:
            return self.count(conn)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


async def recover(url: str, seconds: float) -> tuple[float | None, str]:
    """Seconds until /readyz is 200 and a new person can sign in and see `me`; None if not."""
    started = time.monotonic()
    deadline = started + seconds
    last = "nothing tried"
    while (left := deadline - time.monotonic()) > 0:
        step = "/readyz"
        try:
            ready = await http(url, "GET", "/readyz", timeout=left)
            if ready.status != 200:
                last = f"/readyz answered {ready!r}"
            else:
                step = "a sign-in after /readyz said 200"
                left = max(deadline - time.monotonic(), 0.1)
                await sign_in_and_me(url, new_phone(), timeout=left)
                return time.monotonic() - started, "recovered"
        except (AssertionError, OSError, TimeoutError) as error:
            last = f"{step}: {type(error).__name__} {error or '(no answer in time)'}"
        await asyncio.sleep(0.2)
    return None, last


@served
def test_a_burst_from_one_user_is_load_not_an_outage():
    """300 concurrent double-`me` queries on a pool of 4: refusals, never a broken worker."""
    problems, figures = [], {"requests": BURST_SIZE, "pool_size": POOL_SIZE}
    env = {**FAST_SIGN_IN, "DATABASE_POOL_SIZE": str(POOL_SIZE)}
    with ConnectionSampler() as sampler, start_server(env) as server:

        async def burst():
            token = await sign_in(server.url, new_phone())
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    graphql(server.url, BURST_QUERY, token=token, timeout=60)
                    for _ in range(BURST_SIZE)
                ),
                return_exceptions=True,
            )
            figures["burst_seconds"] = round(time.monotonic() - started, 2)
            answered = [answer for answer in answers if isinstance(answer, Response)]
            figures["slowest_answer_s"] = max(map(elapsed, answered), default=None)
            kinds = {"data": 0, "refused": 0}
            for answer in answers:
                kind = None if isinstance(answer, BaseException) else unavailable_or_data(answer)
                if kind is None:
                    problems.append(f"burst answer neither data nor {UNAVAILABLE}: {answer!r}")
                else:
                    kinds[kind] += 1
            figures.update(kinds)
            seconds, state = await recover(server.url, 10)
            figures["recovery_seconds"] = None if seconds is None else round(seconds, 2)
            if seconds is None:
                problems.append(f"not serving again within 10 s of the burst: {state}")

        asyncio.run(burst())
        figures["server_connections_peak"] = sampler.sustained_peak()
        figures["server_connections_after"] = sampler.now()
    held = max(figures["server_connections_peak"], figures["server_connections_after"])
    if held > POOL_SIZE:
        problems.append(f"the server held {held} connections, more than the pool's {POOL_SIZE}")
    report("burst", figures)
    check(problems, figures)


# ---------------------------------------------------------------------------------------
# 2. A hung database is noticed within seconds, and the service recovers when it thaws.


@pytest.fixture(scope="module")
def cluster():
    with throwaway_postgres() as cluster:
        yield cluster


@served
def test_a_frozen_database_is_refused_within_seconds_and_recovered_from(cluster):
    """SIGSTOP on PostgreSQL: GraphQL says SERVICE_UNAVAILABLE and /readyz 503 within 10 s,
    /healthz stays prompt; after SIGCONT the service serves again within 20 s."""
    problems, figures = [], {}
    with start_server({**FAST_SIGN_IN, "DATABASE_URL": cluster.url}) as server:
        url = server.url

        async def scenario():
            token = await sign_in(url, new_phone())
            with cluster.frozen():
                health: list[Response | BaseException] = []
                requests = asyncio.gather(
                    graphql(url, ME, token=token, timeout=12),
                    graphql(url, SEND, {"phone": new_phone()}, timeout=12),
                    http(url, "GET", "/readyz", timeout=12),
                    return_exceptions=True,
                )
                while not requests.done():
                    try:
                        health.append(await http(url, "GET", "/healthz", timeout=3))
                    except (OSError, TimeoutError) as error:
                        health.append(error)
                    await asyncio.sleep(0.25)
                me, send, ready = await requests
            figures.update(me_s=elapsed(me), send_code_s=elapsed(send), readyz_s=elapsed(ready))
            for name, answer in (("me", me), ("sendCode", send)):
                if not isinstance(answer, Response):
                    problems.append(f"{name} while frozen: no answer within 12 s ({answer!r})")
                elif answer.elapsed > 10 or answer.status != 200:
                    problems.append(f"{name} while frozen: {answer!r} after {answer.elapsed:.1f} s")
                elif top_error_code(answer) != UNAVAILABLE:
                    problems.append(f"{name} while frozen: not {UNAVAILABLE}: {answer!r}")
            if not isinstance(ready, Response) or ready.status != 503 or ready.elapsed > 10:
                problems.append(f"/readyz while frozen: want 503 within 10 s, got {ready!r}")
            slowest = max((h.elapsed for h in health if isinstance(h, Response)), default=None)
            figures.update(
                healthz_checks=len(health), healthz_slowest_s=slowest and round(slowest, 3)
            )
            bad = [h for h in health if not isinstance(h, Response) or h.status != 200]
            if bad or slowest is None or slowest > 1:
                problems.append(f"/healthz while frozen: slowest {slowest} s, failed {bad!r}")
            seconds, state = await recover(url, 20)
            figures["recovery_after_thaw_s"] = None if seconds is None else round(seconds, 2)
            if seconds is None:
                problems.append(f"not serving again within 20 s of the thaw: {state}")

        asyncio.run(scenario())
    report("frozen database", figures)
    check(problems, figures)


# ---------------------------------------------------------------------------------------
# 3 and 4 share one server with a 2 s read timeout.


@pytest.fixture(scope="module")
def api_server(django_db_setup):
    with start_server({**FAST_SIGN_IN, "REQUEST_READ_TIMEOUT": "2"}) as server:
        yield server


def hostile_query() -> str:
    """494 copies of one field, under the 2,000-token limit, with a name no cache has seen."""
    return f"query Q{secrets.token_hex(8)} {{ " + " ".join(["me { id }"] * 494) + " }"


def refused_cheaply(response, bound: float) -> str | None:
    """What is wrong with the answer to a hostile query, or None."""
    if not isinstance(response, Response):
        return f"no answer: {response!r}"
    if response.elapsed > bound:
        return f"answered after {response.elapsed:.2f} s (bound {bound} s)"
    if response.status == 400:
        return None
    if response.status == 200 and response.is_json and response.json().get("errors"):
        return None
    return f"neither a GraphQL error nor a 400: {response!r}"


@served
def test_a_hostile_query_is_refused_cheaply_and_does_not_block_others(api_server):
    """A 5 KB query of 494 repeated fields: answered within 1.5 s, /healthz within 1 s."""
    url, problems, figures = api_server.url, [], {}

    async def scenario():
        alone = await graphql(url, hostile_query(), timeout=20)
        pair = [asyncio.ensure_future(graphql(url, hostile_query(), timeout=20)) for _ in range(2)]
        await asyncio.sleep(0.05)
        health = await asyncio.wait_for(http(url, "GET", "/healthz", timeout=20), 20)
        answers = [alone, *await asyncio.gather(*pair, return_exceptions=True)]
        figures["hostile_s"] = [elapsed(answer) for answer in answers]
        figures["healthz_s"] = elapsed(health)
        for answer in answers:
            if error := refused_cheaply(answer, 1.5):
                problems.append(f"hostile query: {error}")
        if health.status != 200 or health.elapsed > 1:
            problems.append(f"/healthz beside two hostile queries: {health!r} in {health.elapsed}")

    asyncio.run(scenario())
    report("hostile query", figures)
    check(problems, figures)


# ---------------------------------------------------------------------------------------
# 4. A client that sends its request slowly is cut off.


def request_head(content_length: int) -> bytes:
    return (
        "POST /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


SLOW_CLIENTS = {
    "half-a-head": b"POST /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl",
    "head-and-half-a-body": request_head(100) + b'{"query": "{ me { id } }", "variables": {"a": 1',
}


@served
@pytest.mark.parametrize("sent", SLOW_CLIENTS.values(), ids=SLOW_CLIENTS.keys())
def test_a_slow_client_is_cut_off(api_server, sent):
    """After REQUEST_READ_TIMEOUT=2 s without the rest: closed, or a 408; within 5 s."""

    async def scenario():
        reader, writer = await asyncio.open_connection(*address(api_server.url))
        started = time.monotonic()
        try:
            writer.write(sent)
            await writer.drain()
            received = await asyncio.wait_for(reader.read(65536), 5)
        except TimeoutError:
            return None, "still open after 5 s"
        except ConnectionError:
            received = b""
        finally:
            writer.close()
        seconds = time.monotonic() - started
        if not received or received.startswith(b"HTTP/1.1 408"):
            return seconds, "cut off"
        return seconds, f"answered instead: {received[:200]!r}"

    seconds, outcome = asyncio.run(scenario())
    report("slow client", {"seconds": seconds and round(seconds, 2), "outcome": outcome})
    assert outcome == "cut off", outcome


# ---------------------------------------------------------------------------------------
# 5. SIGTERM lets sends in flight finish, and their codes work on the next server.


@served
def test_sigterm_finishes_the_sends_in_flight_and_their_codes_work_afterwards():
    """50 sends with a 1 s delivery, SIGTERM after 0.3 s: all 50 answered with a code, a clean
    exit, and every code verifies on the next server (codes live in the database)."""
    phones = [new_phone() for _ in range(50)]
    problems, figures = [], {}
    with start_server({**FAST_SIGN_IN, "SMS_SIMULATED_DELAY": "1"}) as server:

        async def sends_then_sigterm():
            sends = [
                asyncio.ensure_future(graphql(server.url, SEND, {"phone": p}, timeout=30))
                for p in phones
            ]
            await asyncio.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            answers = await asyncio.gather(*sends, return_exceptions=True)
            returncode = await asyncio.to_thread(server.process.wait, 30)
            figures["exit_seconds_after_sigterm"] = round(time.monotonic() - started, 2)
            return answers, returncode

        answers, returncode = asyncio.run(sends_then_sigterm())
    figures["exit_code"] = returncode
    # uvicorn re-raises the signal once its graceful shutdown is done, so a clean stop is
    # 0 or -SIGTERM with its last log line; a SIGTERM that killed it outright lacks that line.
    finished = "Finished server process" in server.log
    if not (returncode == 0 or (returncode == -signal.SIGTERM and finished)):
        problems.append(f"no clean exit: status {returncode}, log tail:\n{server.log[-2000:]}")
    codes = {}
    for phone, answer in zip(phones, answers, strict=True):
        answered = isinstance(answer, Response) and answer.status == 200 and answer.is_json
        sent = (answer.json().get("data") or {}).get("sendCode") if answered else None
        if sent and sent.get("debugCode"):
            codes[phone] = sent["debugCode"]
        else:
            problems.append(f"sendCode for {phone} not answered with a code: {answer!r}")
    figures["answered_with_a_code"] = len(codes)

    with start_server(FAST_SIGN_IN) as server:

        async def verify_all():
            return await asyncio.gather(
                *(verify_code(server.url, phone, code) for phone, code in codes.items()),
                return_exceptions=True,
            )

        verified = asyncio.run(verify_all())
    failures = [result for result in verified if not isinstance(result, str)]
    figures["verified"] = len(verified) - len(failures)
    problems += [f"verifyCode after the restart: {failure!r}" for failure in failures]
    report("sigterm", figures)
    check(problems, figures)
