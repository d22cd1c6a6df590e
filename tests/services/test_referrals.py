"""users.services.referrals: each activation's record and fraud signals, and staff's review.

Each signal fires in a scenario built for it and not in the clean one. Numbers far
apart (more than REFERRAL_SEQUENTIAL_DISTANCE) unless a test wants them close.
"""

from datetime import timedelta

import psycopg
import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection, transaction
from django.db.models import F

from tests.conftest import Api, concurrent
from users.models import Activation, RefreshToken, User
from users.services import codes, housekeeping, invites, referrals, tokens

REFERRER = "+375291000000"
FAR = ["+375442000000", "+375333000000", "+375298000000", "+375445000000", "+375296000000"]


def signed_in_from(phone: str, network: str) -> User:
    """A person who signed in with a code from `network` (their sign-in history keeps it)."""
    issued = codes.issue_code(phone=phone, client_key="203.0.113.5")
    client = codes.Client(user_agent="Mozilla/5.0", network=network)
    return codes.verify_code(phone=phone, code=issued.code, client=client).user


@pytest.fixture
def referrer(db):
    return signed_in_from(REFERRER, "10.1.2.0/24")


def activate(phone, referrer, network="192.0.2.0/24"):
    referee = User.objects.create_user(phone)
    invites.activate_invite(user_id=referee.pk, invite_code=referrer.invite_code, network=network)
    return Activation.objects.get(referee=referee)


def test_a_clean_activation_is_recorded_without_signals(referrer):
    activation = activate(FAR[0], referrer)
    assert activation.signals == []
    assert activation.referrer == referrer and activation.code == referrer.invite_code
    assert activation.via == "activate" and activation.network == "192.0.2.0/24"
    assert activation.status == "counted"
    referee = User.objects.get(pk=activation.referee_id)
    assert referee.invited_by == referrer  # the activation counts as before


def test_same_network_as_one_of_the_referrers_recent_sign_ins(referrer, settings):
    assert activate(FAR[0], referrer, network="10.1.2.0/24").signals == ["same_network"]
    assert activate(FAR[1], referrer, network="10.1.3.0/24").signals == []
    # A sign-in older than REFERRAL_NETWORK_DAYS is not recent.
    settings.REFERRAL_NETWORK_DAYS = 0
    assert activate(FAR[2], referrer, network="10.1.2.0/24").signals == []


def test_more_activations_of_one_code_in_an_hour_than_allowed(referrer, settings):
    settings.REFERRAL_MAX_PER_HOUR = 2
    signals = [activate(phone, referrer).signals for phone in FAR[:4]]
    assert signals == [[], [], ["burst"], ["burst"]]
    # Activations of more than an hour ago do not count.
    Activation.objects.update(activated_at=F("activated_at") - timedelta(hours=2))
    assert activate("+375447000000", referrer).signals == []


def test_numbers_within_a_few_digits_of_the_referrers_or_another_referees(referrer, settings):
    settings.REFERRAL_SEQUENTIAL_DISTANCE = 10
    assert activate("+375291000007", referrer).signals == ["sequential"]  # near the referrer
    assert activate(FAR[0], referrer).signals == []
    assert activate("+375442000003", referrer).signals == ["sequential"]  # near FAR[0]
    assert activate("+375442000100", referrer).signals == []  # 97 away


def test_a_referee_who_never_comes_back_within_a_week(referrer, settings):
    settings.REFERRAL_DORMANT_DAYS = 7
    gone = activate(FAR[0], referrer)
    back = activate(FAR[1], referrer)
    Activation.objects.update(activated_at=F("activated_at") - timedelta(days=8))
    # `back` signed in again (a refresh token made) two days after the activation.
    tokens.issue(user=User.objects.get(pk=back.referee_id))
    activated_at = Activation.objects.get(pk=back.pk).activated_at
    RefreshToken.objects.filter(user_id=back.referee_id).update(
        created_at=activated_at + timedelta(days=2)
    )
    young = activate(FAR[2], referrer)
    assert housekeeping.purge_expired()["dormant_referrals_flagged"] == 1  # make purge
    assert Activation.objects.get(pk=gone.pk).signals == ["dormant"]
    assert Activation.objects.get(pk=back.pk).signals == []
    assert Activation.objects.get(pk=young.pk).signals == []  # not a week old: not decided
    assert referrals.flag_dormant() == 0  # each decided once


def test_signals_add_up(referrer, settings):
    settings.REFERRAL_MAX_PER_HOUR = 0  # off
    activation = activate("+375291000001", referrer, network="10.1.2.0/24")
    assert activation.signals == ["same_network", "sequential"]


def test_an_activation_at_sign_in_is_recorded_with_the_clients_network(referrer):
    api = Api()
    signed_in = api.sign_in(FAR[0], invite=referrer.invite_code)
    activation = Activation.objects.get(referee_id=signed_in["profile"]["id"])
    assert activation.via == "sign_in" and activation.network == "127.0.0.0/24"
    assert activation.signals == []
    assert User.objects.get(phone=FAR[0]).invited_by == referrer
    # Its referrer signing in from that network makes the next one from it flagged.
    api.sign_in(REFERRER)
    again = api.sign_in(FAR[1], invite=referrer.invite_code)
    assert Activation.objects.get(referee_id=again["profile"]["id"]).signals == ["same_network"]


def test_reject_undoes_the_referral_and_logs_it(referrer):
    staff = User.objects.create_user("+375297000000", is_staff=True)
    activation = activate(FAR[0], referrer, network="10.1.2.0/24")
    referrals.reject(activation_id=activation.pk, staff_id=staff.pk)
    referee = User.objects.get(pk=activation.referee_id)
    assert referee.invited_by is None and referee.invite_activated_at is None
    assert referrer.referrals.count() == 0
    activation.refresh_from_db()
    assert activation.status == "rejected" and activation.reviewed_by == staff
    entry = LogEntry.objects.get(object_id=str(activation.pk))
    assert entry.user == staff and "Rejected" in entry.get_change_message()
    with pytest.raises(referrals.AlreadyDecided):
        referrals.reject(activation_id=activation.pk, staff_id=staff.pk)
    # The referee is free to activate a code again; the rejected record stays.
    other = User.objects.create_user(FAR[1])
    invites.activate_invite(user_id=referee.pk, invite_code=other.invite_code)
    assert Activation.objects.filter(referee=referee).count() == 2


def test_confirm_keeps_the_referral(referrer):
    staff = User.objects.create_user("+375297000000", is_staff=True)
    activation = activate(FAR[0], referrer, network="10.1.2.0/24")
    referrals.confirm(activation_id=activation.pk, staff_id=staff.pk)
    activation.refresh_from_db()
    assert activation.status == "confirmed" and activation.signals == ["same_network"]
    assert User.objects.get(pk=activation.referee_id).invited_by == referrer


def _listener():
    params = connection.get_connection_params()
    listener = psycopg.connect(**params, autocommit=True)
    listener.execute(f"LISTEN {referrals.CHANNEL}")
    return listener


def _notices(listener):
    return [n.payload for n in listener.notifies(timeout=1, stop_after=None)]


@concurrent
def test_the_notice_is_sent_only_when_the_activation_commits():
    referrer = User.objects.create_user(REFERRER)
    referee = User.objects.create_user(FAR[0])
    listener = _listener()
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            invites.activate(user_id=referee.pk, invite_code=referrer.invite_code)
            raise RuntimeError("rolled back")
        assert _notices(listener) == []
        invites.activate_invite(user_id=referee.pk, invite_code=referrer.invite_code)
        (notice,) = _notices(listener)
        assert f'"referrer" : {referrer.pk}' in notice and FAR[0] in notice
    finally:
        listener.close()


@concurrent
def test_activations_and_their_signals_are_counted_when_they_commit():
    from tests.test_metrics import count

    referrer = signed_in_from(REFERRER, "10.1.2.0/24")
    before = count("referral_activations_total", via="activate")
    flagged = count("referral_flagged_activations_total", signal="same_network")
    activate(FAR[0], referrer, network="10.1.2.0/24")
    activate(FAR[1], referrer)
    referee = User.objects.create_user(FAR[2])
    with pytest.raises(RuntimeError), transaction.atomic():  # rolled back: not counted
        invites.activate(
            user_id=referee.pk, invite_code=referrer.invite_code, network="10.1.2.0/24"
        )
        raise RuntimeError
    assert count("referral_activations_total", via="activate") == before + 2
    assert count("referral_flagged_activations_total", signal="same_network") == flagged + 1
