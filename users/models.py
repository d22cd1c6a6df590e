"""Users, their invite codes, one-time codes, sessions and their refresh tokens, and the
counters behind the limits."""

import secrets
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.db import connection, models
from django.db.models import F, Q
from django.db.models.functions import Now

from users.errors import Retry
from users.phones import normalize_phone, validate_e164

INVITE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
INVITE_LENGTH = 6
# Invite codes drawn for each new user; the first free one is theirs (users_create_user).
# With 31^6 codes a draw is all taken only when the table is nearly full: then the use
# case draws again (Retry).
INVITE_CODE_DRAWS = 5


def sql_names(model: type[models.Model], *fields: str) -> tuple[str, ...]:
    """The quoted table name, then the quoted column of each field, for raw SQL."""
    quote = connection.ops.quote_name
    columns = []
    for name in fields:
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field) and field.column
        columns.append(quote(field.column))
    return (quote(model._meta.db_table), *columns)


def new_invite_code() -> str:
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_LENGTH))


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, phone: str, password: str | None = None, **fields: Any) -> "User":
        """Create a user with a fresh invite code, through users_create_user
        (users/sql/sign_in.sql), as a first sign-in does; `fields` are set after."""
        phone = normalize_phone(phone, for_sms=False)
        user = self.model(phone=phone)
        user.set_password(password)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM users_create_user(%s, %s, %s, NULL, false)",
                [phone, user.password, [new_invite_code() for _ in range(INVITE_CODE_DRAWS)]],
            )
            (user_id,) = cursor.fetchone()
        if user_id is None:
            raise Retry("every invite code drawn was taken")
        if fields:
            self.filter(pk=user_id).update(**fields)
        return self.select_related("invited_by").get(pk=user_id)

    def create_superuser(self, phone: str, password: str | None = None, **fields: Any) -> "User":
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(phone, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person, known by a phone number in E.164.

    `invited_by` is set once, when the user activates someone's invite code; the
    referrals form a forest (activate_invite refuses cycles). `invite_activated_at`
    stays set even if the inviter is later deleted, so a code is activated once ever.
    """

    phone = models.CharField("phone", max_length=16, unique=True, validators=[validate_e164])
    invite_code = models.CharField("invite code", max_length=INVITE_LENGTH, unique=True)
    invited_by = models.ForeignKey(
        "self",
        verbose_name="invited by",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="referrals",
    )
    invite_activated_at = models.DateTimeField("invite activated at", null=True, blank=True)
    # Database defaults too: users_create_user names only the columns it sets.
    is_staff = models.BooleanField("staff status", default=False, db_default=False)
    is_active = models.BooleanField("active", default=True, db_default=True)
    is_superuser = models.BooleanField(
        "superuser status",
        default=False,
        db_default=False,
        help_text="Designates that this user has all permissions without "
        "explicitly assigning them.",
    )
    date_joined = models.DateTimeField("date joined", db_default=Now())

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "phone"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(phone__regex=r"^\+[1-9][0-9]{6,14}$"), name="user_phone_e164"
            ),
            models.CheckConstraint(
                condition=Q(invite_code__regex=rf"^[{INVITE_ALPHABET}]{{{INVITE_LENGTH}}}$"),
                name="user_invite_code_shape",
            ),
            models.CheckConstraint(
                condition=~Q(invited_by=F("pk")), name="user_not_invited_by_self"
            ),
            models.CheckConstraint(
                condition=Q(invited_by__isnull=True) | Q(invite_activated_at__isnull=False),
                name="user_invited_has_activation_time",
            ),
        ]
        indexes = [
            # Referrals page, oldest activation first, keyset on (activated_at, id).
            models.Index(
                fields=["invited_by", "invite_activated_at", "id"], name="user_referrals_idx"
            ),
            # Staff list, newest first.
            models.Index(fields=["-date_joined", "-id"], name="user_newest_idx"),
        ]

    def __str__(self) -> str:
        return self.phone


class OtpChallenge(models.Model):
    """The one live code of a phone: a new send replaces it, a sign-in deletes it.

    Only an HMAC of the code is kept. `attempts` counts wrong guesses at this code;
    every check locks the row, so concurrent guesses are counted one by one.
    """

    phone = models.CharField(max_length=16, unique=True)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    # A sign-in with this code happened, but its answer never reached the person (the
    # request had given up waiting for the database): the code, put back, signs this
    # user in once more, as the sign-in it was (users_keep_unanswered_sign_in).
    unanswered_user = models.ForeignKey(
        "User", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    unanswered_new_user = models.BooleanField(default=False, db_default=False)
    # The SMS that carried it, marked verified when the code signs someone in.
    delivery = models.ForeignKey(
        "Delivery", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="otp_expires_idx")]

    def __str__(self) -> str:
        return f"code for {self.phone}"


class RateLimit(models.Model):
    """A sliding-window log of recent events for one key ("send:phone:+1...").

    `hits` holds the epoch seconds (the database's clock) of the events still inside
    the window, at most `limit` of them. Callers lock the row, so every worker sees one
    count (users/sql/windows.sql).
    """

    key = models.CharField(max_length=80, unique=True)
    hits = models.JSONField(default=list)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.key


class SendTotal(models.Model):
    """Codes sent by the whole service in one clock hour, spread over SHARDS rows.

    OTP_MAX_SENDS_TOTAL is split evenly between the shards and each send takes room
    in one of them, so concurrent sends lock different rows instead of queueing on
    one; the sum can never pass the cap (users_issue_code in users/sql/sign_in.sql).
    """

    SHARDS = 16

    hour = models.BigIntegerField()  # epoch seconds at the start of the hour
    shard = models.PositiveSmallIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "shard"], name="send_total_hour_shard")
        ]

    def __str__(self) -> str:
        return f"{self.count} codes in shard {self.shard} of the hour {self.hour}"


class Session(models.Model):
    """One sign-in on one device, through every refresh: a refresh-token family.

    Made by the sign-in (users_sign_in), touched by each refresh (`last_used_at`), ended
    once (`ended_at`) by signing out, by the person from another device, by staff, or by
    reuse detection. Every access token names its session (`sid`), and a request is
    signed in only while that session has not ended. `device` is what the User-Agent
    says, coarsely ("Chrome on Android"); `network` the client's /24 or /64, never the
    full address.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sessions")
    created_at = models.DateTimeField(db_default=Now())
    last_used_at = models.DateTimeField(db_default=Now())
    ended_at = models.DateTimeField(null=True, blank=True)
    device = models.CharField(max_length=100, blank=True, db_default="")
    network = models.CharField(max_length=64, blank=True, db_default="")

    class Meta:
        indexes = [
            models.Index(
                fields=["user", "-last_used_at"],
                condition=Q(ended_at__isnull=True),
                name="session_live_idx",
            ),
            models.Index(fields=["last_used_at"], name="session_last_used_idx"),
        ]

    def __str__(self) -> str:
        return f"session {self.pk} of user {self.user_id}"


# What a sign-in attempt came to, as users_sign_in records it (users/sql/sign_in.sql).
SIGN_IN_OUTCOMES = [
    "signed_in",
    "wrong_code",
    "expired",
    "no_code",
    "too_many_attempts",
    "disabled",
]


class SignInEvent(models.Model):
    """One sign-in attempt of an account, for staff: when, what came of it, from which
    network and device. Attempts for numbers without an account are not kept."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sign_in_events")
    at = models.DateTimeField(db_default=Now())
    outcome = models.CharField(
        max_length=20, choices=[(outcome, outcome) for outcome in SIGN_IN_OUTCOMES]
    )
    network = models.CharField(max_length=64, blank=True, db_default="")
    device = models.CharField(max_length=100, blank=True, db_default="")
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [
            models.Index(fields=["user", "-at"], name="signin_user_idx"),
            models.Index(fields=["at"], name="signin_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} at {self.at}"


class RefreshToken(models.Model):
    """A refresh token, stored as its SHA-256: the table holds nothing that signs anyone in.

    A token is revoked once, either by a refresh that replaced it (`rotated`) or by
    signing out. Only a rotated token that comes back means it was copied. Every token
    belongs to the session of the sign-in it descends from.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="refresh_tokens")
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="refresh_tokens")
    created_at = models.DateTimeField(db_default=Now(), db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rotated = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(
                fields=["user"], condition=Q(revoked_at__isnull=True), name="refresh_live_idx"
            )
        ]

    def __str__(self) -> str:
        return f"refresh token of user {self.user_id}"


# In the order a status may move (users_delivery_status, users/sql/deliveries.sql).
DELIVERY_STATUSES = ["queued", "unknown", "sent", "delivered", "undelivered", "failed"]


class Delivery(models.Model):
    """What became of one send's SMS: the provider's answer, then its receipts.

    One row per send that reached a provider (test numbers reach none). It holds the
    phone as the sign-in stores it (masked wherever it is shown), never the code nor
    its hash. `prefix` is the country calling code and the first national digits
    (SMS_PUMPING_PREFIX_DIGITS), which the pumping rule counts by. A status only moves
    forward: queued, then unknown (the provider did not answer in time) or sent, then
    one of delivered, undelivered, failed (users_delivery_status).
    """

    phone = models.CharField(max_length=16)
    country = models.CharField(max_length=2, blank=True)
    prefix = models.CharField(max_length=16)
    provider = models.CharField(max_length=200)
    # NULL until the provider names the message: the unique constraint ignores NULLs.
    message_id = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(
        max_length=12,
        choices=[(status, status) for status in DELIVERY_STATUSES],
        db_default="queued",
    )
    error_code = models.CharField(max_length=40, blank=True, db_default="")
    created_at = models.DateTimeField(db_default=Now())
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)  # undelivered or failed
    verified_at = models.DateTimeField(null=True, blank=True)  # its code signed someone in

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "message_id"], name="delivery_provider_message"
            ),
            models.CheckConstraint(
                condition=Q(status__in=DELIVERY_STATUSES), name="delivery_status"
            ),
        ]
        indexes = [
            # The pumping rule: a prefix's latest sends and whether they were verified.
            models.Index(fields=["prefix", "-created_at"], name="delivery_prefix_idx"),
            models.Index(fields=["phone", "-created_at"], name="delivery_phone_idx"),
            models.Index(fields=["-created_at"], name="delivery_newest_idx"),
        ]

    def __str__(self) -> str:
        return f"SMS {self.status} to {self.prefix}..."


class BlockedPrefix(models.Model):
    """A number prefix whose sends stopped turning into sign-ins (SMS pumping): new
    numbers in it get no codes until `until`; with `until` unset (pinned by staff),
    until staff lift it. Numbers with an account keep getting their codes."""

    prefix = models.CharField(max_length=16, unique=True)
    blocked_at = models.DateTimeField(db_default=Now())
    until = models.DateTimeField(null=True, blank=True)
    sends = models.PositiveIntegerField(default=0)  # what the rule saw when it blocked
    verified = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "blocked prefixes"

    def __str__(self) -> str:
        return self.prefix


# Fraud signals an activation may carry (users/services/referrals.py says what each means).
REFERRAL_SIGNALS = ["same_network", "burst", "sequential", "dormant"]
REFERRAL_STATUSES = ["counted", "confirmed", "rejected"]


class Activation(models.Model):
    """One activation of an invite code, with the fraud signals it raised.

    The referral itself is `User.invited_by`; this row is its record for the people who
    run the program: when, from which network, through which mutation, and what looked
    wrong. Signals are never shown to users. A flagged activation counts like any other
    until staff reject it (users/services/referrals.py: `reject`), which clears the
    referee's inviter; the row stays, `rejected`, and the referee may activate a code
    again. At most one activation per referee is not rejected.
    """

    referee = models.ForeignKey(User, on_delete=models.CASCADE, related_name="activations")
    referrer = models.ForeignKey(
        User, null=True, on_delete=models.SET_NULL, related_name="referrer_activations"
    )
    code = models.CharField("invite code", max_length=INVITE_LENGTH)
    activated_at = models.DateTimeField(db_default=Now())
    via = models.CharField(max_length=16)  # "sign_in" (verifyCode) or "activate"
    network = models.CharField(max_length=64, blank=True, db_default="")
    signals = ArrayField(models.CharField(max_length=16), default=list, db_default=[])
    # The dormant signal is decided once, REFERRAL_DORMANT_DAYS after the activation.
    dormant_checked = models.BooleanField(default=False, db_default=False)
    status = models.CharField(
        max_length=10,
        choices=[(status, status) for status in REFERRAL_STATUSES],
        default="counted",
        db_default="counted",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["referee"],
                condition=~Q(status="rejected"),
                name="activation_one_standing_per_referee",
            ),
            models.CheckConstraint(
                condition=Q(status__in=REFERRAL_STATUSES), name="activation_status"
            ),
        ]
        indexes = [
            models.Index(fields=["referrer", "-activated_at"], name="activation_referrer_idx"),
            models.Index(fields=["-activated_at"], name="activation_newest_idx"),
            # The review queue: flagged and not yet decided.
            models.Index(
                fields=["-activated_at"],
                condition=Q(status="counted") & ~Q(signals=[]),
                name="activation_queue_idx",
            ),
            models.Index(
                fields=["activated_at"],
                condition=Q(dormant_checked=False),
                name="activation_dormant_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"activation of {self.code} by user {self.referee_id}"
