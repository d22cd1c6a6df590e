"""The domain's own Prometheus metrics: what became of the SMS it sent.

Defined here with prometheus-client; /metrics (backend/metrics.py) exposes them with the
rest, every worker's figures added up.
"""

from prometheus_client import Counter, Histogram

SMS_DELIVERY = Histogram(
    "sms_delivery_duration_seconds",
    "Time the SMS backend took to accept or refuse a code, by backend and outcome.",
    ["backend", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10),
)
DELIVERIES = Counter(
    "sms_deliveries",
    "Deliveries reaching a status (sent, delivered, undelivered, failed, unknown), by "
    "the number's country.",
    ["status", "country"],
)
RECEIPT_LATENCY = Histogram(
    "sms_receipt_latency_seconds",
    "Time from a send to a provider's receipt that moved its status, by that status.",
    ["status"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
)
PREFIX_BLOCKS = Counter(
    "sms_prefix_blocks",
    "Number prefixes blocked by the SMS pumping rule, by prefix.",
    ["prefix"],
)
BLOCKED_SENDS = Counter(
    "sms_sends_refused_for_pumping",
    "Sends refused because the number's prefix is blocked for SMS pumping.",
)


def observe_delivery(backend: str, outcome: str, seconds: float) -> None:
    """One delivery attempt: `backend` is SMS_BACKEND, `outcome` "delivered" or the code."""
    SMS_DELIVERY.labels(backend=backend, outcome=outcome).observe(seconds)


def count_status(status: str, country: str | None) -> None:
    DELIVERIES.labels(status=status, country=country or "unknown").inc()


ACTIVATIONS = Counter(
    "referral_activations",
    "Invite codes activated, by how: sign_in (verifyCode with inviteCode) or activate.",
    ["via"],
)
FLAGGED = Counter(
    "referral_flagged_activations",
    "Activations flagged for review, by fraud signal (same_network, burst, sequential, "
    "dormant); one activation may count under several.",
    ["signal"],
)
REVIEWS = Counter(
    "referral_reviews",
    "Flagged activations decided by staff, by decision (confirmed, rejected).",
    ["decision"],
)


def count_activation(via: str, signals: list[str]) -> None:
    ACTIVATIONS.labels(via=via).inc()
    for signal in signals:
        FLAGGED.labels(signal=signal).inc()
