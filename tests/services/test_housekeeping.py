"""users.services.housekeeping called directly: deleting what can no longer matter."""

from datetime import timedelta

from django.utils import timezone

from users.models import (
    BlockedPrefix,
    Delivery,
    OtpChallenge,
    RateLimit,
    RefreshToken,
    Session,
    SignInEvent,
    User,
)
from users.services import housekeeping


def test_purge_expired_deletes_what_is_over_and_keeps_what_still_counts(db, settings):
    now = timezone.now()
    day = timedelta(days=1)
    over, live = now - timedelta(minutes=1), now + timedelta(minutes=5)
    user = User.objects.create_user("+375291234567")
    OtpChallenge.objects.create(phone="+375290000001", code_hash="x", expires_at=over)
    OtpChallenge.objects.create(phone="+375290000002", code_hash="x", expires_at=live)
    dead = OtpChallenge.objects.create(  # attempts used up: TOO_MANY_ATTEMPTS for a day
        phone="+375290000003", code_hash="x", expires_at=over, attempts=settings.OTP_MAX_ATTEMPTS
    )
    RateLimit.objects.create(key="send:phone:old", hits=[], expires_at=over)
    RateLimit.objects.create(key="send:phone:new", hits=[], expires_at=live)
    lifetime = timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION)
    session, unused = Session.objects.create(user=user), Session.objects.create(user=user)
    RefreshToken.objects.create(user=user, session=session, token_hash="a" * 64)
    RefreshToken.objects.create(user=user, session=session, token_hash="b" * 64)
    RefreshToken.objects.filter(token_hash="b" * 64).update(created_at=now - lifetime - day)
    Session.objects.filter(pk=unused.pk).update(last_used_at=now - lifetime - day)
    SignInEvent.objects.create(user=user, outcome="signed_in")
    old_event = SignInEvent.objects.create(user=user, outcome="wrong_code")
    SignInEvent.objects.filter(pk=old_event.pk).update(
        at=now - timedelta(days=settings.SIGN_IN_HISTORY_DAYS) - day
    )
    old_delivery = Delivery.objects.create(phone=user.phone, prefix="+37529", provider="twilio")
    Delivery.objects.create(phone=user.phone, prefix="+37529", provider="twilio")
    Delivery.objects.filter(pk=old_delivery.pk).update(
        created_at=now - timedelta(days=settings.DELIVERY_LOG_DAYS) - day
    )
    window = timedelta(seconds=settings.SMS_PUMPING_WINDOW)
    BlockedPrefix.objects.create(prefix="+37544", until=now - window - day)
    BlockedPrefix.objects.create(prefix="+37533", until=now - timedelta(minutes=1))
    BlockedPrefix.objects.create(prefix="+37525", until=None)  # pinned by staff

    assert housekeeping.purge_expired() == {
        "codes": 1,
        "counters": 1,
        "dormant_referrals_flagged": 0,
        "refresh_tokens": 1,
        "sessions": 1,
        "deliveries": 1,
        "sign_in_history": 1,
        "blocked_prefixes": 1,
    }
    assert list(Session.objects.all()) == [session]
    assert list(SignInEvent.objects.values_list("outcome", flat=True)) == ["signed_in"]
    assert set(OtpChallenge.objects.values_list("phone", flat=True)) == {
        "+375290000002",
        dead.phone,
    }
    assert list(RateLimit.objects.values_list("key", flat=True)) == ["send:phone:new"]
    assert list(RefreshToken.objects.values_list("token_hash", flat=True)) == ["a" * 64]
    assert set(BlockedPrefix.objects.values_list("prefix", flat=True)) == {"+37533", "+37525"}
