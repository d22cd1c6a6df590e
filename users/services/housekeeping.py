"""Housekeeping: delete what can no longer matter (`manage.py purge_expired`, hourly)."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Now

from users.models import (
    BlockedPrefix,
    Delivery,
    OtpChallenge,
    RateLimit,
    Session,
    SignInEvent,
)
from users.services import referrals, tokens
from users.services.unit import use_case


@use_case
def purge_expired() -> dict[str, int]:
    """Delete dead codes, counters past their windows, expired refresh tokens, sessions
    unused for as long (ended or not: nothing can refresh them), deliveries older than
    DELIVERY_LOG_DAYS, sign-in history older than SIGN_IN_HISTORY_DAYS and prefix blocks
    long over; and give the referral program's dormant signal to activations whose
    referee has not come back within REFERRAL_DORMANT_DAYS.

    Nothing else depends on it for correctness; it keeps the tables small.
    """
    now = Now()  # the database's clock
    # A dead code (attempts used up) still answers TOO_MANY_ATTEMPTS until a new send,
    # but a send can replace it only within a day's limits, so a day covers it.
    codes, _ = OtpChallenge.objects.filter(
        Q(expires_at__lt=now, attempts__lt=settings.OTP_MAX_ATTEMPTS)
        | Q(expires_at__lt=now - timedelta(days=1))
    ).delete()
    counters, _ = RateLimit.objects.filter(expires_at__lt=now).delete()
    deliveries, _ = Delivery.objects.filter(
        created_at__lt=now - timedelta(days=settings.DELIVERY_LOG_DAYS)
    ).delete()
    # A block that ended is kept for the pumping rule's window: it counts from its end.
    blocks, _ = BlockedPrefix.objects.filter(
        until__lt=now - timedelta(seconds=settings.SMS_PUMPING_WINDOW)
    ).delete()
    # Before the refresh tokens and sessions go: they tell whether a referee came back.
    dormant = referrals.flag_dormant()
    refresh_tokens = tokens.delete_expired()
    sessions = (
        Session.objects.filter(
            last_used_at__lt=now - timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION)
        )
        .delete()[1]
        .get(Session._meta.label, 0)
    )
    history, _ = SignInEvent.objects.filter(
        at__lt=now - timedelta(days=settings.SIGN_IN_HISTORY_DAYS)
    ).delete()
    return {
        "codes": codes,
        "counters": counters,
        "dormant_referrals_flagged": dormant,
        "refresh_tokens": refresh_tokens,
        "sessions": sessions,
        "deliveries": deliveries,
        "sign_in_history": history,
        "blocked_prefixes": blocks,
    }
