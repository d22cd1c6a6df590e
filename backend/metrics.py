"""Prometheus metrics: the objects, the few functions that record them, and /metrics.

Several uvicorn workers add up: prometheus-client's multiprocess mode keeps each
worker's figures in files under PROMETHEUS_MULTIPROC_DIR, and /metrics, whichever
worker answers it, sums the files of every worker, the dead ones' too (a counter
must not go down when a worker is replaced), except their live gauges. The directory
must be emptied before the server starts (`make serve` and `make run` do). Without
it, each worker counts alone, which is right for one worker.

What is recorded, and where:
- each mutation's outcome: schema/errors.py, where the outcomes are made;
- what became of each SMS: the domain's own metrics (users/metrics.py);
- request duration per GraphQL operation name: `observe_request`, by backend/edge.py;
- requests answered at once because their user or address had too many in flight:
  `record_shed`, by backend/edge.py.

Operation names are the client's text: a label is made only of a name of at most 64
characters from [A-Za-z0-9_], and of at most MAX_OPERATIONS names per worker; the
rest (a name that is not a string among them) are "other", operations without a name
"anonymous".
"""

import asyncio
import hmac
import os
import re
from contextlib import suppress
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MAX_OPERATIONS = 100
OPERATION_NAME = re.compile(r"[A-Za-z0-9_]{1,64}", re.ASCII)

GRAPHQL_REQUEST = Histogram(
    "graphql_request_duration_seconds",
    "Time from a GraphQL request's arrival to its answer, by operation name.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SHED = Counter(
    "requests_shed",
    "Requests answered SERVICE_UNAVAILABLE at once because their user or client address "
    "already had MAX_IN_FLIGHT_PER_USER or MAX_IN_FLIGHT_PER_ADDRESS in flight on a "
    "worker, by bound (user, address).",
    ["bound"],
)
WEBSOCKETS = Gauge(
    "websocket_connections",
    "WebSocket connections open (graphql-transport-ws on /graphql/), authenticated or not.",
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS = Gauge(
    "graphql_subscriptions_open",
    "GraphQL subscriptions running, by field (referralAdded).",
    ["subscription"],
    multiprocess_mode="livesum",
)
WORKERS = Gauge("server_workers", "Worker processes serving.", multiprocess_mode="livesum")

_operations: set[str] = set()


def valid_operation_name(name: object) -> str | None:
    """`name` if it is one a label or a log line may hold, else None.

    The name is the client's JSON: it may be a number, a list or an object.
    """
    return name if isinstance(name, str) and OPERATION_NAME.fullmatch(name) else None


def operation_label(name: object) -> str:
    """The label for operation `name`: itself, "anonymous" or "other" (module docstring)."""
    if name is None or name == "":
        return "anonymous"
    valid = valid_operation_name(name)
    if valid is None:
        return "other"
    if valid in _operations:
        return valid
    if len(_operations) >= MAX_OPERATIONS:
        return "other"
    _operations.add(valid)
    return valid


def record_shed(bound: str) -> None:
    """One request refused at once by the in-flight bound `bound` ("user" or "address")."""
    SHED.labels(bound=bound).inc()


def observe_request(operation: str | None, seconds: float) -> None:
    """One GraphQL request's duration, by its (bounded) operation name."""
    GRAPHQL_REQUEST.labels(operation=operation_label(operation)).observe(seconds)


# Workers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_workers(directory: str) -> None:
    """mark_process_dead for every worker whose files are here but which has gone.

    uvicorn's supervisor, which replaces a worker that died, runs no code of ours, and
    a worker stopped by a signal runs no exit handler (uvicorn re-raises the signal),
    so this is done when the figures are read. Counters and histograms of dead workers
    stay in the sums; only their live gauges go.
    """
    pids = {path.stem.rpartition("_")[2] for path in Path(directory).glob("*.db")}
    for pid in pids:
        if pid.isdigit() and not _alive(int(pid)):
            with suppress(FileNotFoundError):  # another worker's scrape removed them first
                multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def worker_started() -> None:
    """Called once by the ASGI application of each worker (backend/edge.py)."""
    WORKERS.set(1)


# /metrics


def exposition() -> bytes:
    """Every worker's figures in the Prometheus text format."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        directory = settings.PROMETHEUS_MULTIPROC_DIR
        forget_dead_workers(directory)
        multiprocess.MultiProcessCollector(registry, directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@require_safe
async def metrics(request: HttpRequest) -> HttpResponse:
    """/metrics: 404 unless METRICS_TOKEN is set; then 401 without a Bearer token, 403
    with another one."""
    expected = settings.METRICS_TOKEN
    if not expected:
        raise Http404
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        response = HttpResponse("Authorization: Bearer <METRICS_TOKEN> is needed.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(token.strip().encode("latin-1"), expected.encode()):
        return HttpResponse("This token is not METRICS_TOKEN.\n", status=403)
    body = await asyncio.to_thread(exposition)  # reads every worker's files
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
