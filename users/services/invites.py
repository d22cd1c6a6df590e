"""Invite codes: activating another user's code, once ever, without closing a cycle.

A user who has not activated a code is the root of their own referral tree, so
activating X's code closes a cycle exactly when the root of X's tree is the caller.
The caller's row and that root's row are locked (in id order) before deciding; a
root only stops being one by activating a code, which needs its own lock.
"""

import re

from django.conf import settings
from django.db import connection
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from users import throttle
from users.errors import DomainError, ErrorCode, Forbidden, Retry
from users.models import INVITE_ALPHABET, INVITE_LENGTH, User, sql_names
from users.services import referrals
from users.services.unit import use_case

HOUR = 3600
INVITE_SHAPE = re.compile(rf"[{INVITE_ALPHABET}]{{{INVITE_LENGTH}}}")
MAX_INVITE_INPUT = 64


def normalize_invite_code(raw: str) -> str | None:
    """Trimmed and upper-cased; None when it cannot be an invite code."""
    if len(raw) > MAX_INVITE_INPUT:
        return None
    code = raw.strip().upper()
    return code if INVITE_SHAPE.fullmatch(code) else None


def _owner(*, phone: str, invite_code: str) -> User:
    """The active user whose code this is. A miss is counted against `phone`.

    Past INVITE_MAX_FAILED_PER_HOUR misses the person gets RATE_LIMITED, so codes
    cannot be probed by trying them; the refusal commits the count.
    """
    misses = f"invite:phone:{phone}"
    limit = settings.INVITE_MAX_FAILED_PER_HOUR
    wait = throttle.check(misses, limit=limit, window=HOUR)  # locked until the decision
    if wait:
        raise DomainError(
            ErrorCode.RATE_LIMITED,
            _("Too many invite codes tried. Try again in {seconds} s.").format(seconds=wait),
            field="inviteCode",
            retry_after=wait,
        )
    code = normalize_invite_code(invite_code)
    owner = User.objects.filter(invite_code=code, is_active=True).first() if code else None
    if owner is None:
        throttle.take(misses, limit=limit, window=HOUR)
        raise DomainError(
            ErrorCode.INVITE_NOT_FOUND,
            _("No user has this invite code."),
            field="inviteCode",
            commit=True,
        )
    return owner


def owner_for_new_user(*, phone: str, invite_code: str) -> User:
    """The inviter of a user being created now (a new user cannot close a cycle)."""
    return _owner(phone=phone, invite_code=invite_code)


def _root_of(user_id: int) -> int | None:
    """The top of `user_id`'s referral tree, in one query whatever its depth."""
    table, pk, inviter = sql_names(User, "id", "invited_by")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE chain(id, inviter, depth) AS (
                SELECT {pk}, {inviter}, 0 FROM {table} WHERE {pk} = %s
                UNION ALL
                SELECT u.{pk}, u.{inviter}, chain.depth + 1
                FROM {table} u JOIN chain ON u.{pk} = chain.inviter
                WHERE chain.depth < 100000
            )
            SELECT id FROM chain WHERE inviter IS NULL
            """,
            [user_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _already_activated(user: User, code: str | None) -> User:
    """The same code again changes nothing; any other is refused."""
    if user.invited_by is not None and user.invited_by.invite_code == code:
        return user
    raise DomainError(
        ErrorCode.INVITE_ALREADY_ACTIVATED,
        _("You have already activated an invite code."),
        field="inviteCode",
    )


def activate(
    *, user_id: int, invite_code: str, network: str | None = None, via: str = "activate"
) -> User:
    """Make the owner of `invite_code` the inviter of `user_id`, in the caller's transaction,
    and record the activation (from the client's `network`, `via` which mutation).

    "Already activated" is decided before the code is looked up, so a user who has
    activated one cannot learn which other codes exist.
    """
    user = User.objects.select_related("invited_by").filter(pk=user_id).first()
    if user is None:
        raise Forbidden(_("This account no longer exists."))
    if user.invite_activated_at is not None:
        return _already_activated(user, normalize_invite_code(invite_code))
    owner = _owner(phone=user.phone, invite_code=invite_code)
    if owner.pk == user_id:
        raise DomainError(
            ErrorCode.SELF_INVITE, _("This is your own invite code."), field="inviteCode"
        )
    root_id = _root_of(owner.pk)
    locked = {
        u.pk: u
        for u in User.objects.select_for_update(of=("self",))
        .select_related("invited_by")
        .annotate(db_now=Now())
        .filter(pk__in={user_id, root_id})
        .order_by("pk")
    }
    user = locked[user_id]
    if user.invite_activated_at is not None:  # activated while we looked
        return _already_activated(user, owner.invite_code)
    if root_id not in locked or locked[root_id].invited_by_id is not None:
        raise Retry("the referral tree changed while it was read")
    if root_id == user_id:
        raise DomainError(
            ErrorCode.INVITE_CYCLE,
            _("This code's owner joined through your invite."),
            field="inviteCode",
        )
    user.invited_by = owner
    user.invite_activated_at = user.db_now  # the database's clock, read with the lock
    user.save(update_fields=["invited_by", "invite_activated_at"])
    referrals.record_activation(
        referee_id=user_id, referrer_id=owner.pk, code=owner.invite_code, via=via, network=network
    )
    return user


@use_case
def activate_invite(*, user_id: int, invite_code: str, network: str | None = None) -> User:
    """Activate another user's invite code, once ever; the same code again is a no-op."""
    return activate(user_id=user_id, invite_code=invite_code, network=network)
