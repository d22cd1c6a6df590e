"""Hostile load: what one client can make a worker hold or do.

Each test runs uvicorn as operators do (tests/servers.py) and talks to it over raw
sockets where the point is what goes over the wire. Memory is the worker's resident
set (/proc/<pid>/status; with one worker uvicorn's own process is the worker), read
after the server has answered or closed, never after a guessed pause. Run with `-s`
to see the figures of a passing run too.
"""

import asyncio
import base64
import json
import select
import socket
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.servers import (
    FAST_SIGN_IN,
    Response,
    address,
    graphql,
    http,
    new_phone,
    read_response,
    served,
    sign_in,
    start_server,
    top_error_code,
)

UNAVAILABLE = "SERVICE_UNAVAILABLE"


def report(name: str, figures: dict) -> None:
    """Print the measured figures (shown with -s, and under a failure)."""
    print(f"\n[{name}] " + ", ".join(f"{key}={value}" for key, value in figures.items()))


def rss_mb(pid: int) -> float:
    """The resident set of process `pid`, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise AssertionError(f"no VmRSS for {pid}")


def log_lines(log: str) -> list[dict]:
    """The server's JSON log lines (DEBUG off)."""
    lines = []
    for line in log.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append({"level": "?", "message": line})
    return lines


def errors_in(log: str) -> list[str]:
    """Lines at ERROR or above, and any traceback: none are expected here."""
    found = [
        line["message"][:300]
        for line in log_lines(log)
        if line.get("level") in ("ERROR", "CRITICAL") or "exception" in line
    ]
    return found + (["a traceback"] if "Traceback" in log else [])


async def exchange(url: str, raw: bytes, *, local: str | None = None, timeout=30.0) -> Response:
    """Send exactly `raw` on a new connection (from address `local`), read one answer."""
    host, port = address(url)
    started = time.monotonic()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(local, 0) if local else None), timeout
    )
    try:
        writer.write(raw)
        await writer.drain()
        response = await asyncio.wait_for(read_response(reader), timeout)
    finally:
        writer.close()
    response.elapsed = time.monotonic() - started
    return response


def post(url: str, body: dict, token: str | None = None) -> bytes:
    """The bytes of a GraphQL POST with `body` as JSON."""
    data = json.dumps(body).encode()
    host, port = address(url)
    head = [
        "POST /graphql/ HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


# ---------------------------------------------------------------------------------------
# 2. The request head is bounded while it is read.

PAD_MIB = 16
PAD_CLIENTS = 20


async def send_huge_header(url: str) -> Response | str:
    """GET /healthz with a PAD_MIB MiB header, written while the answer is read."""
    host, port = address(url)
    reader, writer = await asyncio.open_connection(host, port)
    pad = b"a" * (256 * 1024)

    async def write() -> None:
        try:
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nX-Pad: ".encode())
            for _ in range(PAD_MIB * 4):
                writer.write(pad)
                await writer.drain()
            writer.write(b"\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass  # the server stopped reading: it has answered

    writing = asyncio.ensure_future(write())
    try:
        return await asyncio.wait_for(read_response(reader), 30)
    except (ConnectionError, TimeoutError, asyncio.IncompleteReadError) as error:
        return f"no answer: {error!r}"
    finally:
        writing.cancel()
        writer.close()


@served
def test_a_huge_header_is_refused_while_it_is_read_and_does_not_grow_the_worker():
    """20 clients each send a 16 MiB header: each is answered 431, the worker stays small."""
    figures: dict = {"clients": PAD_CLIENTS, "header_mib": PAD_MIB}
    with start_server({}) as server:
        pid = server.process.pid
        asyncio.run(http(server.url, "GET", "/healthz"))
        figures["rss_before_mb"] = rss_mb(pid)

        async def flood():
            return await asyncio.gather(*(send_huge_header(server.url) for _ in range(PAD_CLIENTS)))

        started = time.monotonic()
        answers = asyncio.run(flood())
        figures["seconds"] = round(time.monotonic() - started, 2)
        figures["rss_after_mb"] = rss_mb(pid)
        healthy = asyncio.run(http(server.url, "GET", "/healthz"))
    figures["statuses"] = sorted({getattr(a, "status", a) for a in answers}, key=str)
    growth = figures["rss_after_mb"] - figures["rss_before_mb"]
    report("huge header", figures)
    assert all(isinstance(a, Response) and a.status == 431 for a in answers), figures
    assert b"more than 65536 bytes" in answers[0].body, answers[0]
    assert growth < 32, f"the worker grew by {growth:.0f} MB: {figures}"
    assert healthy.status == 200
    assert not errors_in(server.log), errors_in(server.log)
    refused = [line for line in log_lines(server.log) if line.get("status") == 431]
    assert len(refused) == PAD_CLIENTS, "one access line per refused request"


@served
def test_too_many_headers_are_refused_and_a_normal_head_is_not():
    with start_server({}) as server:
        host, port = address(server.url)
        start = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"

        def head(count: int) -> bytes:
            return (start + "".join(f"X-H{i}: 1\r\n" for i in range(count)) + "\r\n").encode()

        many = asyncio.run(exchange(server.url, head(20_000)))
        some = asyncio.run(exchange(server.url, head(150)))
        normal = asyncio.run(exchange(server.url, head(60)))
        long_url = asyncio.run(
            exchange(
                server.url,
                f"GET /healthz?{'a' * 50_000} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Connection: close\r\n\r\n".encode(),
            )
        )
    report("headers", {"20000": many, "150": some, "60": normal, "50 KB URL": long_url.status})
    assert many.status == 431 and b"more than 100 headers" in many.body, many
    assert some.status == 431 and b"more than 100 headers" in some.body, some
    assert normal.status == 200, normal
    assert long_url.status == 200, long_url


# ---------------------------------------------------------------------------------------
# 3. Clients that never read: files streamed, answers not read dropped, GraphiQL's files
# only with GraphiQL.

GRAPHIQL_SCRIPT = "graphiql/graphiql-3.8.3/graphiql.min.js"
READERS = 100


def static_path(name: str) -> str:
    manifest = json.loads(Path(settings.STATIC_ROOT, "staticfiles.json").read_text())
    return f"{settings.STATIC_URL}{manifest['paths'][name]}"


def open_and_never_read(url: str, path: str) -> socket.socket:
    """A socket that asks for `path`, reads the answer's head and then nothing more."""
    host, port = address(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little room in the kernel
    sock.connect((host, port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    return sock


def read_head(sock: socket.socket) -> bytes:
    """The status line and headers (and whatever part of the body came with them)."""
    sock.settimeout(30)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(1024)
        if not chunk:
            break
        received += chunk
    return received


def wait_until_closed_by_server(socks: list[socket.socket], seconds: float) -> int:
    """How many of `socks` the server closed or reset within `seconds`, reading nothing."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    closed: set[int] = set()
    deadline = time.monotonic() + seconds
    while len(closed) < len(socks) and (left := deadline - time.monotonic()) > 0:
        for fd, events in poller.poll(left * 1000):
            if events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                closed.add(fd)
                poller.unregister(fd)
    return len(closed)


@served
def test_clients_that_never_read_are_dropped_and_files_are_streamed():
    """100 sockets ask for GraphiQL's 3.5 MB script and never read: the worker holds a
    chunk of it per socket, not the file, and drops them after RESPONSE_WRITE_TIMEOUT."""
    figures: dict = {"sockets": READERS}
    env = {"GRAPHIQL": "1", "RESPONSE_WRITE_TIMEOUT": "2", "MAX_IN_FLIGHT_PER_ADDRESS": "0"}
    with start_server(env) as server:
        pid = server.process.pid
        path = static_path(GRAPHIQL_SCRIPT)
        whole = asyncio.run(http(server.url, "GET", path))  # a reader gets it all
        figures["rss_before_mb"] = rss_mb(pid)
        socks = [open_and_never_read(server.url, path) for _ in range(READERS)]
        try:
            heads = [read_head(sock) for sock in socks]
            figures["rss_answering_mb"] = rss_mb(pid)
            figures["closed_by_server"] = wait_until_closed_by_server(socks, 15)
            figures["rss_after_mb"] = rss_mb(pid)
        finally:
            for sock in socks:
                sock.close()
        healthy = asyncio.run(http(server.url, "GET", "/healthz"))
    report("never read", figures)
    assert whole.status == 200 and len(whole.body) > 3_000_000, whole
    assert all(head.startswith(b"HTTP/1.1 200") for head in heads)
    growth = figures["rss_answering_mb"] - figures["rss_before_mb"]
    assert growth < 40, f"the worker grew by {growth:.0f} MB for {READERS} sockets: {figures}"
    assert figures["closed_by_server"] == READERS, figures
    assert figures["rss_after_mb"] - figures["rss_before_mb"] < 40, figures
    assert healthy.status == 200
    assert not errors_in(server.log), errors_in(server.log)


@served
def test_graphiql_files_are_not_served_with_graphiql_off():
    with start_server({"GRAPHIQL": "0"}) as server:
        script = asyncio.run(http(server.url, "GET", static_path(GRAPHIQL_SCRIPT)))
        plain = asyncio.run(http(server.url, "GET", f"{settings.STATIC_URL}{GRAPHIQL_SCRIPT}"))
        client = asyncio.run(http(server.url, "GET", static_path("client/app.js")))
    assert script.status == 404 and plain.status == 404, (script, plain)
    assert client.status == 200 and client.body, client


# ---------------------------------------------------------------------------------------
# 4. Caches keyed by the document are bounded by bytes.

DOCUMENTS = 30


def unknown_fields(n: int, tokens: int) -> str:
    """A document of `tokens` tokens, unique by `n`, each field unknown: validation stops
    at its 100th error, so it is cheap to refuse, but its syntax tree is about 600 bytes
    a token (a megabyte at 2,000) for 8 bytes of text."""
    return "{ " + " ".join(f"u{n}_{i}" for i in range(tokens - 2)) + " }"


def long_document(n: int) -> str:
    """A 245 KB text, nearly all of it a comment, unique by `n`."""
    return f"{{ me {{ id }} }} # {n} " + "x" * 245_000


@served
def test_unique_documents_do_not_grow_the_worker_past_the_cache_bounds():
    """30 documents of 1,990 tokens, 30 of 700 and 10 texts of 245 KB, each new: the
    worker keeps what its byte-bounded caches allow, not every document."""
    figures: dict = {"documents": DOCUMENTS * 2 + DOCUMENTS // 3}
    with start_server({"MAX_IN_FLIGHT_PER_ADDRESS": "0"}) as server:
        pid = server.process.pid

        async def send_all(documents):
            answers = []
            for start in range(0, len(documents), 10):
                batch = documents[start : start + 10]
                answers += await asyncio.gather(*(graphql(server.url, d) for d in batch))
            return answers

        asyncio.run(send_all([unknown_fields(n, 1990) for n in range(3)]))  # first uses
        figures["rss_before_mb"] = rss_mb(pid)
        started = time.monotonic()
        big = asyncio.run(send_all([unknown_fields(n, 1990) for n in range(100, 130)]))
        medium = asyncio.run(send_all([unknown_fields(n, 700) for n in range(200, 230)]))
        long = asyncio.run(send_all([long_document(n) for n in range(DOCUMENTS // 3)]))
        figures["seconds"] = round(time.monotonic() - started, 2)
        figures["rss_after_mb"] = rss_mb(pid)
        again = asyncio.run(graphql(server.url, unknown_fields(229, 700)))
    growth = figures["rss_after_mb"] - figures["rss_before_mb"]
    report("unique documents", figures)
    refused = [answer for answer in big + medium if answer.status == 200]
    assert len(refused) == 2 * DOCUMENTS and all(a.json()["errors"] for a in refused)
    assert all(top_error_code(answer) == "UNAUTHENTICATED" for answer in long), long[0]
    assert again.status == 200 and again.json()["errors"]
    assert growth < 30, f"the worker grew by {growth:.0f} MB: {figures}"


def test_the_document_cache_keeps_what_fits_and_evicts_the_oldest():
    from schema.limits import SizedCache

    cache: SizedCache[str, str] = SizedCache(max_bytes=100, max_entry_bytes=60)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # now the most recent
    cache.put("c", "C", 40)  # evicts b, the least recent
    assert cache.get("b") is None and cache.get("a") == "A" and cache.get("c") == "C"
    cache.put("big", "X", 61)  # over one entry's bound: never kept
    assert cache.get("big") is None and cache.bytes == 80


# ---------------------------------------------------------------------------------------
# 9. A cursor this server did not issue is the caller's mistake.

REFERRALS = """query($after: String) { me { referrals(first: 5, after: $after) {
  edges { cursor } pageInfo { endCursor } } } }"""
ACTIVATE = """mutation($code: String!) { activateInvite(inviteCode: $code) {
  userErrors { code } } }"""
PROFILE = "{ me { inviteCode } }"


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


CRAFTED_CURSORS = {
    "far-offset": cursor_of("9999-12-31T23:59:59-23:59|5"),
    "other-offset": cursor_of("2026-01-01T12:00:00+03:00|5"),
    "naive": cursor_of("2026-01-01T12:00:00|5"),
    "date-only": cursor_of("2026-01-01|5"),
    "id-past-bigint": cursor_of("2026-01-01T12:00:00+00:00|99999999999999999999"),
    "id-zero": cursor_of("2026-01-01T12:00:00+00:00|0"),
    "id-arabic-digits": cursor_of("2026-01-01T12:00:00+00:00|\u0665"),
    "id-spaced": cursor_of("2026-01-01T12:00:00+00:00| 5"),
    "no-id": cursor_of("2026-01-01T12:00:00+00:00"),
    "not-base64": "%%%",
    "not-utf8": base64.urlsafe_b64encode(b"\xff\xfe|5").decode(),
}


@served
def test_a_cursor_this_server_did_not_issue_is_bad_user_input():
    answers, pages = {}, {}
    with start_server(FAST_SIGN_IN) as server:

        async def scenario():
            inviter = await sign_in(server.url, new_phone())
            code = (await graphql(server.url, PROFILE, token=inviter)).json()["data"]["me"]
            for _ in range(2):
                invitee = await sign_in(server.url, new_phone())
                variables = {"code": code["inviteCode"]}
                await graphql(server.url, ACTIVATE, variables, token=invitee)
            first = (await graphql(server.url, REFERRALS, token=inviter)).json()
            pages["first"] = first
            cursor = first["data"]["me"]["referrals"]["edges"][0]["cursor"]
            after = await graphql(server.url, REFERRALS, {"after": cursor}, token=inviter)
            pages["after"] = after.json()
            for name, crafted in CRAFTED_CURSORS.items():
                answers[name] = await graphql(
                    server.url, REFERRALS, {"after": crafted}, token=inviter
                )

        asyncio.run(scenario())
    codes = {name: top_error_code(answer) for name, answer in answers.items()}
    report("cursors", codes)
    assert len(pages["first"]["data"]["me"]["referrals"]["edges"]) == 2, pages
    assert len(pages["after"]["data"]["me"]["referrals"]["edges"]) == 1, pages
    assert codes == dict.fromkeys(CRAFTED_CURSORS, "BAD_USER_INPUT"), codes
    assert not errors_in(server.log), errors_in(server.log)


# ---------------------------------------------------------------------------------------
# 10. An operationName that is not a string is the caller's mistake, and logged as one.

NOT_STRINGS = [5, True, 1.5, [1], {"a": 1}]


@served
def test_an_operation_name_that_is_not_a_string_is_a_clean_400():
    with start_server({}) as server:

        async def scenario():
            return [
                await exchange(server.url, post(server.url, {"query": "{ __typename }", **name}))
                for name in [{"operationName": value} for value in NOT_STRINGS]
            ]

        answers = asyncio.run(scenario())
    report("operationName", {repr(v): a for v, a in zip(NOT_STRINGS, answers, strict=True)})
    for answer in answers:
        assert answer.status == 400 and top_error_code(answer) == "BAD_REQUEST", answer
        assert "operationName" in answer.json()["errors"][0]["message"], answer
    assert not errors_in(server.log), errors_in(server.log)
    access = [line for line in log_lines(server.log) if line.get("logger") == "access"]
    assert [line["status"] for line in access if line["path"] == "/graphql/"] == [400] * len(
        NOT_STRINGS
    ), access


def test_an_operation_name_that_is_not_a_string_is_no_label():
    from backend import metrics

    for value in NOT_STRINGS:
        assert metrics.valid_operation_name(value) is None
        assert metrics.operation_label(value) == "other"


# ---------------------------------------------------------------------------------------
# 11. A WebSocket upgrade anywhere but /graphql/ (the subscriptions') is refused cleanly.


@served
def test_a_websocket_upgrade_elsewhere_is_refused_without_a_traceback():
    with start_server({}) as server:
        host, port = address(server.url)
        handshake = (
            f"GET /admin/ HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()

        async def upgrade():
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(handshake)
                await writer.drain()
                return await asyncio.wait_for(reader.read(), 10)  # until the server closes
            finally:
                writer.close()

        answer = asyncio.run(upgrade())
    report("websocket", {"answer": answer[:200]})
    assert answer.startswith(b"HTTP/1.1 403"), answer
    assert b"Traceback" not in answer and b"Internal Server Error" not in answer
    assert not errors_in(server.log), errors_in(server.log)


# ---------------------------------------------------------------------------------------
# 12. A burst from one client costs that client, not the queue.

BURST = 1000
FIFTEEN_ME = "{ " + " ".join(f"a{i}: me {{ referrals {{ totalCount }} }}" for i in range(15)) + " }"
ME = "{ me { id } }"


async def burst_beside_another(
    url: str, query: str, token: str, other: bytes, other_from: str | None
):
    """BURST `query` at once with `token` from 127.0.0.1; once the server has answered
    one of them, `other` is sent five times, one after another, from `other_from`."""
    raw = post(url, {"query": query}, token)
    burst = [asyncio.ensure_future(exchange(url, raw, timeout=60)) for _ in range(BURST)]
    await asyncio.wait(burst, return_when=asyncio.FIRST_COMPLETED)
    pending = sum(1 for request in burst if not request.done())
    others = [await exchange(url, other, local=other_from, timeout=60) for _ in range(5)]
    answers = await asyncio.gather(*burst, return_exceptions=True)
    return answers, others, pending


def burst_figures(answers, others, pending) -> dict:
    answered = [a for a in answers if isinstance(a, Response)]
    codes = [top_error_code(a) for a in answered]
    refused = sorted(a.elapsed for a in answered if top_error_code(a) == UNAVAILABLE)
    return {
        "data": sum(1 for a in answered if a.status == 200 and not a.json().get("errors")),
        "refused": len(refused),
        "other_codes": sorted({str(c) for c in codes if c not in (None, UNAVAILABLE)}),
        "failed": len(answers) - len(answered) + sum(1 for a in answered if a.status != 200),
        "refused_p50_s": round(refused[len(refused) // 2], 2) if refused else None,
        "pending_when_others_began": pending,
        "other_s": [round(o.elapsed, 2) for o in others],
    }


@served
def test_a_burst_from_one_user_is_shed_and_another_user_stays_prompt():
    """1,000 15-alias `me` at once from one signed-in user (the address bound off, so
    that the user bound is what is tested): all but a few refused at once, and another
    user's `me` meanwhile is answered."""
    with start_server({**FAST_SIGN_IN, "MAX_IN_FLIGHT_PER_ADDRESS": "0"}) as server:

        async def scenario():
            bursting = await sign_in(server.url, new_phone())
            other = await sign_in(server.url, new_phone())
            return await burst_beside_another(
                server.url, FIFTEEN_ME, bursting, post(server.url, {"query": ME}, other), None
            )

        answers, others, pending = asyncio.run(scenario())
    figures = burst_figures(answers, others, pending)
    report("burst from one user", figures)
    assert all(o.status == 200 and "errors" not in o.json() for o in others), others
    assert max(o.elapsed for o in others) < 6, figures  # generous: the machine may be loaded
    assert figures["failed"] == 0 and not figures["other_codes"], figures
    # Most of the burst is refused (how fast is in the report: a loaded machine slows it).
    assert figures["refused"] > BURST // 2, figures
    assert not errors_in(server.log), errors_in(server.log)


@served
def test_a_burst_from_one_address_is_shed_and_another_address_stays_prompt():
    """A burst of 15-alias `me` with a token that is not good (so no user to count it
    by): the address bound (16 here) sheds it, and a user from 127.0.0.2 stays prompt."""
    with start_server({**FAST_SIGN_IN, "MAX_IN_FLIGHT_PER_ADDRESS": "16"}) as server:

        async def scenario():
            other = post(server.url, {"query": ME}, await sign_in(server.url, new_phone()))
            return await burst_beside_another(
                server.url, FIFTEEN_ME, "not-a-token", other, "127.0.0.2"
            )

        answers, others, pending = asyncio.run(scenario())
    figures = burst_figures(answers, others, pending)
    report("burst from one address", figures)
    assert all(o.status == 200 and "errors" not in o.json() for o in others), others
    assert max(o.elapsed for o in others) < 6, figures  # generous: the machine may be loaded
    assert figures["failed"] == 0 and figures["other_codes"] == ["UNAUTHENTICATED"], figures
    # Most of the burst is refused (how fast is in the report: a loaded machine slows it).
    assert figures["refused"] > BURST // 2, figures
    assert not errors_in(server.log), errors_in(server.log)


@pytest.mark.parametrize("bound", ["user", "address"])
def test_the_in_flight_bounds_are_settings(bound):
    assert getattr(settings, f"MAX_IN_FLIGHT_PER_{bound.upper()}") > 0
