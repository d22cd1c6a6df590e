"""Reads for the API: a fixed number of queries each, however many rows there are.

Pages are keyset-paginated: the cursor names the last row seen, so a page costs the
same at the end of a long list as at its start. Referral pages and counts are read
for many users at once (one query each), so a list of users with their referrals
costs the same few queries as one user.
"""

import base64
import binascii
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import Now, RowNumber
from django.utils.translation import gettext as _

from users.models import Session, User

MAX_PAGE = 100
MAX_CURSOR = 100
MAX_ID = 2**63 - 1  # the largest id a BigAutoField holds
MAX_SESSIONS = 100  # the most recently used of a person's sessions that `me` lists

type Cursor = tuple[datetime, int]


class InvalidCursor(ValueError):
    """An `after` cursor this server did not hand out."""


class InvalidPageSize(ValueError):
    """A negative `first`."""


@dataclass(frozen=True)
class PageRequest:
    """`first` capped at MAX_PAGE, and the decoded `after`."""

    first: int
    after: Cursor | None

    @classmethod
    def parse(cls, first: int, after: str | None) -> "PageRequest":
        if first < 0:
            raise InvalidPageSize(_("`first` must not be negative."))
        return cls(min(first, MAX_PAGE), None if after is None else decode_cursor(after))


@dataclass(frozen=True)
class Page[T]:
    items: list[T]
    cursors: list[str]
    total_count: int
    has_next_page: bool
    has_previous_page: bool


def encode_cursor(at: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{pk}".encode()).decode()


def decode_cursor(cursor: str) -> Cursor:
    """The position `cursor` names, if `encode_cursor` could have made it.

    A cursor is only ever a time this server read from the database (so in UTC) and a
    row id, spelled as `encode_cursor` spells them. Anything else, however well it
    parses (another UTC offset, which PostgreSQL may not even take; a time without one;
    an id past the column's range; digits of another script), is refused here rather
    than sent to the database.
    """
    invalid = InvalidCursor(_("This cursor is not valid; use one from a page's pageInfo."))
    if len(cursor) > MAX_CURSOR:
        raise invalid
    try:
        at_text, _separator, pk_text = (
            base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii").partition("|")
        )
        at, pk = datetime.fromisoformat(at_text), int(pk_text)
    except (ValueError, UnicodeError, binascii.Error):
        raise invalid from None
    if at.utcoffset() != timedelta(0) or not 0 < pk <= MAX_ID:
        raise invalid
    if encode_cursor(at, pk) != cursor:
        raise invalid
    return at, pk


def _after(at_field: str, cursor: Cursor, *, newest_first: bool) -> Q:
    at, pk = cursor
    beyond = "lt" if newest_first else "gt"
    return Q(**{f"{at_field}__{beyond}": at}) | Q(**{at_field: at, f"id__{beyond}": pk})


def _page[T: User](
    rows: list[T], request: PageRequest, *, total_count: int, at_field: str
) -> Page[T]:
    items = rows[: request.first]
    return Page(
        items=items,
        cursors=[encode_cursor(getattr(item, at_field), item.pk) for item in items],
        total_count=total_count,
        has_next_page=len(rows) > request.first,
        has_previous_page=request.after is not None,
    )


def active_user(*, user_id: int, session_id: int) -> User | None:
    """The signed-in user with the code they activated, while the access token's session
    has not ended: one query (the session is joined, not read apart)."""
    if not 0 < session_id <= MAX_ID:
        return None
    return (
        User.objects.select_related("invited_by")
        .filter(pk=user_id, is_active=True, sessions__pk=session_id, sessions__ended_at=None)
        .first()
    )


def active_user_with_referrals(
    *, user_id: int, session_id: int, requests: Sequence[PageRequest]
) -> tuple[User | None, dict[PageRequest, Page[User]]]:
    """The signed-in user and the referral pages a query asks of them, in one go."""
    user = active_user(user_id=user_id, session_id=session_id)
    if user is None:
        return None, {}
    return user, {
        request: referral_pages(user_ids=[user_id], request=request)[user_id]
        for request in requests
    }


def live_sessions(*, user_id: int) -> list[Session]:
    """A user's sessions that have not ended and can still be refreshed, most recently
    used first: one query. A session's last refresh made its live refresh token, so it
    lasts REFRESH_TOKEN_EXPIRATION from `last_used_at`."""
    lifetime = timedelta(seconds=settings.REFRESH_TOKEN_EXPIRATION)
    return list(
        Session.objects.filter(
            user_id=user_id, ended_at=None, last_used_at__gt=Now() - lifetime
        ).order_by("-last_used_at", "-id")[:MAX_SESSIONS]
    )


def users(*, request: PageRequest) -> Page[User]:
    """Every user, newest first, for staff: two queries."""
    queryset: QuerySet[User] = User.objects.select_related("invited_by").order_by(
        "-date_joined", "-id"
    )
    total_count = queryset.count()
    if request.after is not None:
        queryset = queryset.filter(_after("date_joined", request.after, newest_first=True))
    rows = list(queryset[: request.first + 1]) if request.first else []
    return _page(rows, request, total_count=total_count, at_field="date_joined")


def referral_pages(*, user_ids: Sequence[int], request: PageRequest) -> dict[int, Page[User]]:
    """Who activated each user's code, oldest activation first: two queries for any
    number of users (their counts, then their pages in one windowed query)."""
    counts = dict(
        User.objects.filter(invited_by_id__in=user_ids)
        .values_list("invited_by_id")
        .annotate(count=Count("id"))
        .values_list("invited_by_id", "count")
    )
    rows: dict[int, list[User]] = defaultdict(list)
    if request.first and counts:
        queryset = User.objects.filter(invited_by_id__in=list(counts)).only(
            "id", "phone", "invite_activated_at", "invited_by_id"
        )
        if request.after is not None:
            queryset = queryset.filter(
                _after("invite_activated_at", request.after, newest_first=False)
            )
        ranked = queryset.annotate(
            rank=Window(
                RowNumber(),
                partition_by=F("invited_by_id"),
                order_by=[F("invite_activated_at").asc(), F("id").asc()],
            )
        ).filter(rank__lte=request.first + 1)
        for user in ranked.order_by("invited_by_id", "rank"):
            assert user.invited_by_id is not None
            rows[user.invited_by_id].append(user)
    return {
        user_id: _page(
            rows[user_id],
            request,
            total_count=counts.get(user_id, 0),
            at_field="invite_activated_at",
        )
        for user_id in user_ids
    }
