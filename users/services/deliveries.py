"""The delivery log: what the provider answered for each SMS, and its receipts after.

The status rules (forward only) and the SMS pumping rule are SQL, in
users/sql/deliveries.sql; these call them and count what changed.
"""

from dataclasses import dataclass

from users import metrics, sql
from users.services.unit import retrying


@retrying
def record_status(*, delivery_id: int, status: str, message_id: str | None = None) -> bool:
    """What the provider answered for the SMS of `delivery_id`; whether the status moved."""
    changed, country, _seconds = sql.call(
        "users_delivery_status", id=delivery_id, status=status, message_id=message_id, error=None
    )
    if changed:
        metrics.count_status(status, country)
    return bool(changed)


@dataclass(frozen=True)
class Receipt:
    found: bool  # the message is one this service sent
    changed: bool  # its status moved forward


@retrying
def record_receipt(*, provider: str, message_id: str, status: str, error: str = "") -> Receipt:
    """A provider's receipt for its message `message_id`: the status only moves forward."""
    found, changed, country, seconds = sql.call(
        "users_delivery_receipt",
        provider=provider,
        message_id=message_id,
        status=status,
        error=error[:40] or None,
    )
    if changed:
        metrics.count_status(status, country)
        metrics.RECEIPT_LATENCY.labels(status=status).observe(seconds)
    return Receipt(found=bool(found), changed=bool(changed))
