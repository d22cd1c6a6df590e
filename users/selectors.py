"""Reads for the API: a fixed number of queries each, however many rows there are.

Pages are keyset-paginated: the cursor names the last row seen, so a page costs the
same at the end of a long list as at its start.
"""

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from users.models import User

MAX_PAGE = 100


class InvalidCursor(ValueError):
    """An `after` cursor this server did not hand out."""


class InvalidPageSize(ValueError):
    """A negative `first`."""


@dataclass(frozen=True)
class Page:
    items: list
    cursors: list[str]
    total_count: int
    has_next_page: bool
    has_previous_page: bool


def encode_cursor(at: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{pk}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    if len(cursor) > 100:
        raise InvalidCursor("This cursor is not valid; use one from a page's pageInfo.")
    try:
        at, _, pk = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().partition("|")
        return datetime.fromisoformat(at), int(pk)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidCursor("This cursor is not valid; use one from a page's pageInfo.") from None


def _page(queryset, *, first: int, after: str | None, at_field: str, newest_first: bool) -> Page:
    if first < 0:
        raise InvalidPageSize("`first` must not be negative.")
    first = min(first, MAX_PAGE)
    total_count = queryset.count()
    ordering = (f"-{at_field}", "-id") if newest_first else (at_field, "id")
    rows = queryset.order_by(*ordering)
    if after is not None:
        at, pk = decode_cursor(after)
        beyond = "lt" if newest_first else "gt"
        rows = rows.filter(
            Q(**{f"{at_field}__{beyond}": at}) | Q(**{at_field: at, f"id__{beyond}": pk})
        )
    items = list(rows[: first + 1]) if first else []
    return Page(
        items=items[:first],
        cursors=[encode_cursor(getattr(item, at_field), item.pk) for item in items[:first]],
        total_count=total_count,
        has_next_page=len(items) > first,
        has_previous_page=after is not None,
    )


def active_user(*, user_id: int) -> User | None:
    """The signed-in user with the code they activated: one query."""
    return User.objects.select_related("invited_by").filter(pk=user_id, is_active=True).first()


def referrals(*, user_id: int, first: int, after: str | None) -> Page:
    """Who activated `user_id`'s code, oldest activation first: two queries."""
    queryset = User.objects.filter(invited_by_id=user_id).only("id", "phone", "invite_activated_at")
    return _page(
        queryset, first=first, after=after, at_field="invite_activated_at", newest_first=False
    )


def users(*, first: int, after: str | None) -> Page:
    """Every user, newest first, for staff: two queries."""
    return _page(
        User.objects.select_related("invited_by"),
        first=first,
        after=after,
        at_field="date_joined",
        newest_first=True,
    )
