"""/metrics: refused without its token, and several workers' figures add up.

The outcomes each mutation is counted under are checked in this process (pytest
runs without PROMETHEUS_MULTIPROC_DIR, so the metrics are this process's own); the
token and the sums across workers through uvicorn with two workers.
"""

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector

from backend import metrics
from tests.conftest import error_codes
from tests.servers import (
    FAST_SIGN_IN,
    SEND,
    VERIFY,
    graphql,
    graphql_data,
    http,
    new_phone,
    served,
    start_server,
)

TOKEN = "metrics-token-for-the-test-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def count(metric: str, **labels) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


class Counted:
    """Differences of this process's counters across a block."""

    def __init__(self, *samples: tuple[str, dict]):
        self.samples = samples

    def __enter__(self):
        self.before = [count(name, **labels) for name, labels in self.samples]
        return self

    def __exit__(self, *exc):
        self.after = [count(name, **labels) for name, labels in self.samples]

    @property
    def added(self) -> list[float]:
        return [after - before for before, after in zip(self.before, self.after, strict=True)]


SENT = "otp_codes_sent_total"
VERIFIED = "otp_verifications_total"
ACTIVATED = "invite_activations_total"


def test_every_mutation_outcome_is_counted(api, settings, make_user):
    settings.OTP_RESEND_COOLDOWN = 60
    phone = "+375291234567"
    with Counted(
        (SENT, {"outcome": "delivered"}),
        (SENT, {"outcome": "rate_limited"}),
        (SENT, {"outcome": "invalid_phone"}),
        (VERIFIED, {"outcome": "invalid_code"}),
        (VERIFIED, {"outcome": "new_user"}),
        (VERIFIED, {"outcome": "signed_in"}),
        (VERIFIED, {"outcome": "code_expired"}),
        (ACTIVATED, {"outcome": "self_invite"}),
        (ACTIVATED, {"outcome": "activated"}),
    ) as counted:
        code = api.send(phone)["debugCode"]
        assert error_codes(api.send(phone)) == ["RATE_LIMITED"]
        assert error_codes(api.send("12")) == ["INVALID_PHONE"]
        assert error_codes(api.verify(phone, "0000" if code != "0000" else "1111"))
        signed_in = api.verify(phone, code)
        assert signed_in["isNewUser"] is True
        assert error_codes(api.verify(phone, code)) == ["CODE_EXPIRED"]  # single use
        settings.OTP_RESEND_COOLDOWN = 0
        assert api.verify(phone, api.send(phone)["debugCode"])["isNewUser"] is False
        own_code = signed_in["profile"]["inviteCode"]
        assert error_codes(api.activate(signed_in["token"], own_code)) == ["SELF_INVITE"]
        _, other_token = make_user()
        assert api.activate(other_token, own_code)["userErrors"] == []
    assert counted.added == [2, 1, 1, 1, 1, 1, 1, 1, 1]


def test_operation_names_are_bounded(monkeypatch):
    monkeypatch.setattr(metrics, "_operations", set())
    monkeypatch.setattr(metrics, "MAX_OPERATIONS", 3)
    assert metrics.operation_label(None) == "anonymous"
    assert metrics.operation_label("SignIn") == "SignIn"
    assert metrics.operation_label("x" * 65) == "other"
    assert metrics.operation_label("drop table; --") == "other"
    assert metrics.operation_label("Ünïcode") == "other"
    assert metrics.operation_label("Me") == "Me"
    assert metrics.operation_label("Refresh") == "Refresh"
    assert metrics.operation_label("OneTooMany") == "other"
    assert metrics.operation_label("SignIn") == "SignIn"  # names already seen stay


# Served


def scrape(url: str, headers: dict | None = None):
    return asyncio.run(http(url, "GET", "/metrics", headers=headers, timeout=10))


def samples(text: bytes) -> dict[str, float]:
    """`name{labels}` -> value of a Prometheus text exposition."""
    found = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def per_worker(directory: Path, metric_key: str) -> dict[int, float]:
    """What each worker's own file holds for one sample, by worker pid: which worker
    served what, so that the test knows both did."""
    found = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                if f"{sample.name}{{{labels}}}" == metric_key:
                    found[pid] = sample.value
    return found


def worker_pids(directory: Path) -> set[int]:
    """The workers that have started serving: each sets its `server_workers` gauge."""
    return {int(path.stem.rpartition("_")[2]) for path in directory.glob("gauge_livesum_*.db")}


def until(condition, what: str, seconds: float = 60):
    """Poll `condition` until it holds (the server reports each step in its files and
    /metrics); fail, saying what, if it never does."""
    deadline = time.monotonic() + seconds
    while not (held := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)
    return held


@contextlib.contextmanager
def stopped(pid: int):
    """The worker `pid` stopped (SIGSTOP) for the block: it accepts no connection, so
    every new one goes to the other worker."""
    os.kill(pid, signal.SIGSTOP)
    try:
        until(
            lambda: Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T",
            f"worker {pid} stopped",
        )
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@served
def test_metrics_is_not_there_without_metrics_token():
    with start_server({"METRICS_TOKEN": ""}) as server:
        assert scrape(server.url).status == 404
        assert scrape(server.url, BEARER).status == 404


@served
def test_metrics_needs_its_token_and_adds_up_two_workers(tmp_path):
    directory = tmp_path / "metrics"
    env = {
        **FAST_SIGN_IN,
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        # uvicorn's supervisor kills a worker that does not answer its ping in time;
        # the one stopped below answers when it is let go.
        "UVICORN_TIMEOUT_WORKER_HEALTHCHECK": "120",
    }
    delivered = 'otp_codes_sent_total{outcome="delivered"}'
    with start_server(env, workers=2) as server:
        assert scrape(server.url).status == 401
        assert scrape(server.url, {"Authorization": f"Basic {TOKEN}"}).status == 401
        assert scrape(server.url, {"Authorization": "Bearer not-the-token"}).status == 403
        assert scrape(server.url, {"Authorization": f"Bearer {TOKEN}x"}).status == 403
        # ALLOWED_HOSTS holds for /metrics too: only the probes are exempt.
        foreign = asyncio.run(
            http(server.url, "GET", "/metrics", headers={**BEARER, "Host": "10.1.2.3:8000"})
        )
        assert foreign.status == 400

        def send(n: int) -> None:
            for _ in range(n):  # one connection each
                sent = asyncio.run(graphql_data(server.url, SEND, {"phone": new_phone()}))
                assert sent["sendCode"]["userErrors"] == [], sent

        workers = until(
            lambda: len(worker_pids(directory)) == 2 and worker_pids(directory),
            "both workers serving",
        )
        send(1)
        [first] = per_worker(directory, delivered)
        [other] = workers - {first}
        with stopped(first):
            send(3)
        assert per_worker(directory, delivered) == {first: 1, other: 3}

        wrong = asyncio.run(graphql(server.url, VERIFY, {"phone": new_phone(), "code": "0000"}))
        assert wrong.json()["data"]["verifyCode"]["userErrors"][0]["code"] == "CODE_EXPIRED"

        answer = scrape(server.url, BEARER)
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/plain; version=")
        figures = samples(answer.body)
        assert figures[delivered] == 4  # whichever worker answered the scrape
        assert figures['otp_verifications_total{outcome="code_expired"}'] == 1
        assert figures["server_workers"] == 2
        operation_count = 'graphql_request_duration_seconds_count{operation="anonymous"}'
        assert figures[operation_count] == 5

        # A worker that dies: its replacement serves, its sends still count, and it
        # is no longer counted as serving.
        os.kill(first, signal.SIGKILL)
        until(lambda: len(worker_pids(directory) - {first}) == 2, "a replacement serving")
        figures = until(
            lambda: (
                (f := samples(scrape(server.url, BEARER).body)).get("server_workers") == 2 and f
            ),
            "the dead worker no longer counted",
        )
        assert figures[delivered] == 4
