"""A person's sessions (their signed-in devices): end one, or all of them.

Ending a session revokes its refresh tokens, and its access tokens stop working at once:
every authenticated request reads the session with the user (users.selectors.active_user).
Each use case locks the sessions it ends before their refresh tokens, the order a
refresh takes them in (users/services/tokens.py).
"""

import logging

from django.utils.translation import gettext as _

from users.errors import DomainError, ErrorCode
from users.models import Session
from users.selectors import MAX_ID
from users.services.tokens import end_sessions
from users.services.unit import use_case

logger = logging.getLogger(__name__)


def _not_found() -> DomainError:
    # The same for another person's session, an ended one and a made-up id: no hint.
    return DomainError(
        ErrorCode.SESSION_NOT_FOUND,
        _("No such session of yours: it may have ended already."),
        field="id",
    )


def parse_session_id(session_id: str) -> int:
    """The id of a session as the API shows it; anything else is SESSION_NOT_FOUND."""
    if not session_id.isascii() or not session_id.isdecimal() or len(session_id) > 19:
        raise _not_found()
    number = int(session_id)
    if not 0 < number <= MAX_ID:
        raise _not_found()
    return number


@use_case
def end_session(*, user_id: int, session_id: str) -> None:
    """End one live session of this user's."""
    number = parse_session_id(session_id)
    locked = list(
        Session.objects.select_for_update()
        .filter(pk=number, user_id=user_id, ended_at__isnull=True)
        .values_list("pk", flat=True)
    )
    if not locked:
        raise _not_found()
    end_sessions(locked)


@use_case
def end_all_sessions(*, user_id: int, keep_session_id: int | None = None) -> int:
    """End every live session of this user's but `keep_session_id`; how many ended."""
    sessions = Session.objects.select_for_update().filter(user_id=user_id, ended_at__isnull=True)
    if keep_session_id is not None:
        sessions = sessions.exclude(pk=keep_session_id)
    locked = list(sessions.order_by("pk").values_list("pk", flat=True))
    return end_sessions(locked) if locked else 0
