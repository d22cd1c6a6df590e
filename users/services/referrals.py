"""The referral program: each activation's record and fraud signals, staff's review.

An activation (of an invite code, by activateInvite or by verifyCode with inviteCode)
is recorded in the transaction that made it, by users_record_activation
(users/sql/referrals.sql), which also computes three of its fraud signals and sends
the notice that subscriptions (`referralAdded`) listen for. The fourth, dormant, is
found a week later by `flag_dormant` (`make purge`). Signals never change what the
person sees: a flagged activation counts until staff reject it.

Rejecting undoes the referral under the referee's row lock (users/sql/sign_in.sql's
lock order: users, then the activation): the referee's inviter and activation time are
cleared in the same transaction that marks the activation rejected and writes the
admin log, so an activation the referee attempts at the same moment either runs first
(and is refused, the referee being invited still) or after (and finds them free).
Rejecting only removes an edge of the referral forest, so it cannot close a cycle;
an activation that read the tree before it is told to run again (invites.activate).
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.db.models.functions import Now

from users import metrics, sql
from users.models import Activation, User
from users.services.unit import retrying, use_case

CHANNEL = "users_referral_added"  # users_record_activation's NOTIFY channel


@dataclass(frozen=True)
class Recorded:
    activation_id: int
    signals: list[str]
    activated_at: datetime


def record_activation(
    *, referee_id: int, referrer_id: int, code: str, via: str, network: str | None
) -> Recorded:
    """Record the activation the caller's transaction has just made, with its signals."""
    activation_id, signals, activated_at = sql.call(
        "users_record_activation",
        referee=referee_id,
        referrer=referrer_id,
        code=code,
        via=via,
        network=network or "",
        network_days=settings.REFERRAL_NETWORK_DAYS,
        per_hour=settings.REFERRAL_MAX_PER_HOUR,
        distance=settings.REFERRAL_SEQUENTIAL_DISTANCE,
    )
    transaction.on_commit(lambda: metrics.count_activation(via, list(signals)))
    return Recorded(activation_id, list(signals), activated_at)


@retrying
def flag_dormant() -> int:
    """Give the dormant signal to activations REFERRAL_DORMANT_DAYS old whose referee has
    not been back since; the number flagged (one statement)."""
    (flagged,) = sql.call("users_flag_dormant", days=settings.REFERRAL_DORMANT_DAYS)
    if flagged:
        metrics.FLAGGED.labels(signal="dormant").inc(flagged)
    return int(flagged)


class AlreadyDecided(Exception):
    """The activation was rejected already (by someone else, a moment ago)."""


def _log(*, staff_id: int, activation: Activation, message: str) -> None:
    LogEntry.objects.log_actions(
        user_id=staff_id,
        queryset=[activation],
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )


@use_case
def reject(*, activation_id: int, staff_id: int) -> Activation:
    """Undo a referral: the referee's inviter cleared, the activation rejected, logged.

    Locks the referee's row, then the activation's (the lock order), and decides on what
    it read under them; a second reject of the same activation raises AlreadyDecided.
    """
    referee_id = (
        Activation.objects.filter(pk=activation_id).values_list("referee_id", flat=True).first()
    )
    if referee_id is None:
        raise Activation.DoesNotExist(activation_id)
    referee = User.objects.select_for_update(of=("self",)).get(pk=referee_id)
    activation = Activation.objects.select_for_update().get(pk=activation_id)
    if activation.status == "rejected":
        raise AlreadyDecided(activation_id)
    if referee.invited_by_id is not None and referee.invited_by_id == activation.referrer_id:
        User.objects.filter(pk=referee_id).update(invited_by=None, invite_activated_at=None)
    activation.status = "rejected"
    activation.reviewed_by_id = staff_id
    activation.reviewed_at = Now()
    activation.save(update_fields=["status", "reviewed_by", "reviewed_at"])
    _log(
        staff_id=staff_id,
        activation=activation,
        message=f"Rejected the activation of {activation.code} "
        f"(signals: {', '.join(activation.signals) or 'none'}); the referral is undone.",
    )
    transaction.on_commit(lambda: metrics.REVIEWS.labels(decision="rejected").inc())
    return activation


@use_case
def confirm(*, activation_id: int, staff_id: int) -> Activation:
    """Keep a flagged activation: it leaves the review queue, its signals stay."""
    activation = Activation.objects.select_for_update().get(pk=activation_id)
    if activation.status == "rejected":
        raise AlreadyDecided(activation_id)
    activation.status = "confirmed"
    activation.reviewed_by_id = staff_id
    activation.reviewed_at = Now()
    activation.save(update_fields=["status", "reviewed_by", "reviewed_at"])
    _log(staff_id=staff_id, activation=activation, message="Confirmed the activation.")
    transaction.on_commit(lambda: metrics.REVIEWS.labels(decision="confirmed").inc())
    return activation
