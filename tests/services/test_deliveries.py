"""users.services.deliveries called directly: what providers answered, and their receipts."""

import pytest

from users.models import Delivery
from users.services import deliveries


@pytest.fixture
def delivery(db):
    return Delivery.objects.create(
        phone="+375291234567", country="BY", prefix="+37529", provider="twilio"
    )


def status_of(delivery):
    delivery.refresh_from_db()
    return delivery.status


def test_record_status_moves_a_delivery_forward_only(delivery):
    assert deliveries.record_status(delivery_id=delivery.pk, status="sent", message_id="SM1")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.message_id) == ("sent", "SM1") and delivery.sent_at
    assert not deliveries.record_status(delivery_id=delivery.pk, status="unknown")  # back
    assert status_of(delivery) == "sent"


def test_record_receipt_of_an_unknown_message_changes_nothing(delivery):
    receipt = deliveries.record_receipt(provider="twilio", message_id="SM-other", status="failed")
    assert receipt == deliveries.Receipt(found=False, changed=False)
    assert status_of(delivery) == "queued"


def test_record_receipt_moves_its_message_forward_and_a_final_status_stays(delivery):
    deliveries.record_status(delivery_id=delivery.pk, status="sent", message_id="SM1")
    receipt = deliveries.record_receipt(provider="twilio", message_id="SM1", status="delivered")
    assert receipt == deliveries.Receipt(found=True, changed=True)
    late = deliveries.record_receipt(
        provider="twilio", message_id="SM1", status="undelivered", error="30003"
    )
    assert late == deliveries.Receipt(found=True, changed=False)  # final: sideways is refused
    assert status_of(delivery) == "delivered"
    other = deliveries.record_receipt(provider="webhook", message_id="SM1", status="failed")
    assert not other.found  # the id is the provider's own
