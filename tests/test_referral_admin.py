"""The referral program in the admin: the review queue, reject and confirm, the
dashboard and the CSV export; reject under concurrent transactions on PostgreSQL."""

import asyncio
import csv
import io
import time
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.db.models import F
from django.test import Client
from django.utils import timezone

from tests.conftest import at_once, concurrent
from users.errors import DomainError, ErrorCode
from users.models import Activation, SignInEvent, User
from users.services import invites, referrals

QUEUE = "/admin/users/activation/"


def staff_client(phone="+375297000000"):
    staff = User.objects.create_superuser(phone, "a-long-admin-password")
    client = Client()
    client.force_login(staff)
    return client, staff


def referral(referrer, phone, network="192.0.2.0/24"):
    referee = User.objects.create_user(phone)
    invites.activate_invite(user_id=referee.pk, invite_code=referrer.invite_code, network=network)
    return Activation.objects.get(referee=referee, status="counted")


def a_program():
    """A referrer with one flagged and one clean referral."""
    referrer = User.objects.create_user("+375291000000")
    SignInEvent.objects.create(user=referrer, outcome="signed_in", network="10.1.2.0/24")
    flagged = referral(referrer, "+375442000000", network="10.1.2.0/24")
    clean = referral(referrer, "+375333000000")
    return referrer, flagged, clean


@pytest.fixture
def program(db):
    return a_program()


def test_the_queue_shows_what_is_flagged_and_undecided(program):
    client, _ = staff_client()
    _, _flagged, _clean = program
    page = client.get(QUEUE).content.decode()
    assert "+375442000000" in page and "same network" in page
    assert "+375333000000" not in page
    assert "+375333000000" in client.get(QUEUE, {"review": "all"}).content.decode()


def test_reject_in_the_admin_undoes_the_referral_and_logs_it(program):
    client, staff = staff_client()
    referrer, flagged, clean = program
    answer = client.post(QUEUE, {"action": "reject", "_selected_action": [flagged.pk]})
    assert answer.status_code == 302
    referee = User.objects.get(pk=flagged.referee_id)
    assert referee.invited_by is None and referee.invite_activated_at is None
    assert list(referrer.referrals.values_list("phone", flat=True)) == ["+375333000000"]
    assert Activation.objects.get(pk=flagged.pk).status == "rejected"
    entry = LogEntry.objects.get(object_id=str(flagged.pk), user=staff)
    assert "undone" in entry.get_change_message()
    # Off the queue; confirm keeps the other one counted.
    assert "+375442000000" not in client.get(QUEUE).content.decode()
    client.post(f"{QUEUE}?review=all", {"action": "confirm", "_selected_action": [clean.pk]})
    assert Activation.objects.get(pk=clean.pk).status == "confirmed"
    assert User.objects.get(pk=clean.referee_id).invited_by == referrer


def test_staff_without_the_right_to_change_users_cannot_decide(program):
    viewer = User.objects.create_user("+375297000001", is_staff=True)
    viewer.set_password("a-long-admin-password")
    viewer.save()
    viewer.user_permissions.add(*_permissions("view_activation"))
    client = Client()
    client.force_login(viewer)
    _, flagged, _ = program
    client.post(QUEUE, {"action": "reject", "_selected_action": [flagged.pk]})
    assert Activation.objects.get(pk=flagged.pk).status == "counted"


def _permissions(*codenames):
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(codename__in=codenames)


def read(response) -> list[list[str]]:
    """The rows of a streamed CSV answer, read as the ASGI handler reads it."""

    async def chunks():
        return b"".join([chunk async for chunk in response.streaming_content])

    return list(csv.reader(io.StringIO(asyncio.run(chunks()).decode())))


@pytest.fixture
def committed_program(transactional_db):
    """`program`, committed: the export reads on threads of its own."""
    return a_program()


def test_the_dashboard_and_the_export(committed_program):
    client, _ = staff_client()
    referrer, _flagged, clean = committed_program
    page = client.get(f"{QUEUE}dashboard/")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count('<svg xmlns="http://www.w3.org/2000/svg" viewBox') == 2
    assert "Top referrers" in text
    assert referrer.invite_code in text and "50%" in text  # flagged share
    # Two days ago: outside a range that ends yesterday... and inside one that ends today.
    Activation.objects.filter(pk=clean.pk).update(
        activated_at=F("activated_at") - timedelta(days=2)
    )
    today = timezone.now().date()
    export = client.get(f"{QUEUE}export/", {"start": today.isoformat(), "end": today.isoformat()})
    assert export.streaming and export["Content-Type"] == "text/csv"
    rows = read(export)
    assert rows[0][:4] == ["activated_at", "referrer_phone", "invite_code", "referee_phone"]
    assert [row[3] for row in rows[1:]] == ["+375442000000"]
    assert rows[1][6] == "same_network"
    wide = client.get(
        f"{QUEUE}export/", {"start": (today - timedelta(days=3)).isoformat(), "end": str(today)}
    )
    rows = read(wide)
    assert [row[3] for row in rows[1:]] == ["+375333000000", "+375442000000"]  # oldest first
    assert client.get(f"{QUEUE}export/", {"start": "x"}).status_code == 400


def test_the_export_reads_past_one_chunk(committed_program, monkeypatch):
    from users import admin_referrals

    monkeypatch.setattr(admin_referrals, "EXPORT_CHUNK", 1)
    client, _ = staff_client()
    today = str(timezone.now().date())
    export = client.get(f"{QUEUE}export/", {"start": today, "end": today})
    assert len(read(export)) == 3


ROUNDS = 8


@concurrent
def test_reject_beside_the_referees_own_activation_attempt_leaves_one_truth():
    """Staff reject a referral while its referee activates another code, in real
    concurrent transactions: either the attempt came first (refused: still invited),
    or after (it succeeds); never both inviters, never an inviter without its record."""
    referrer = User.objects.create_user("+375291000000")
    other = User.objects.create_user("+375296000000")
    staff = User.objects.create_superuser("+375297000000", "a-long-admin-password")
    outcomes = []
    for n in range(ROUNDS):
        activation = referral(referrer, f"+37544{n:03d}0000")

        def race(i, activation=activation, n=n):
            if i == 0:
                return referrals.reject(activation_id=activation.pk, staff_id=staff.pk).status
            time.sleep(0.03 * (n % 3))  # before, during or after the reject's transaction
            try:
                invites.activate_invite(
                    user_id=activation.referee_id, invite_code=other.invite_code
                )
                return "activated"
            except DomainError as error:
                assert error.code == ErrorCode.INVITE_ALREADY_ACTIVATED
                return "refused"

        rejected, attempt = at_once(2, race)
        assert rejected == "rejected"
        outcomes.append(attempt)
        referee = User.objects.get(pk=activation.referee_id)
        standing = list(Activation.objects.filter(referee=referee).exclude(status="rejected"))
        if attempt == "activated":
            assert referee.invited_by == other and [a.referrer for a in standing] == [other]
        else:
            assert referee.invited_by is None and referee.invite_activated_at is None
            assert standing == []
    assert referrer.referrals.count() == 0
    assert LogEntry.objects.filter(user=staff).count() == ROUNDS
    print("attempts:", outcomes)  # both orders, on most machines


@concurrent
def test_two_staff_rejecting_one_activation_at_once_undo_it_once():
    referrer = User.objects.create_user("+375291000000")
    staff = [User.objects.create_superuser(f"+37529700000{i}", "a-long-password") for i in (1, 2)]
    for n in range(ROUNDS):
        activation = referral(referrer, f"+37544{n:03d}0000")

        def reject(i, activation=activation):
            try:
                referrals.reject(activation_id=activation.pk, staff_id=staff[i].pk)
                return "rejected"
            except referrals.AlreadyDecided:
                return "already"

        assert sorted(at_once(2, reject)) == ["already", "rejected"]
        assert LogEntry.objects.filter(object_id=str(activation.pk)).count() == 1
