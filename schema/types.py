"""GraphQL types: the profile, connections and mutation payloads.

Types are plain objects built from the domain's results (`Profile.of(user)`), so each
resolver is typed with what it really receives.
"""

from datetime import datetime
from typing import Self

import strawberry
from strawberry.types.nodes import FragmentSpread, InlineFragment, Selection

from backend import database
from schema.context import ApiInfo
from schema.errors import ApiError, UserError
from users import selectors
from users.devices import UNKNOWN
from users.models import Session as SessionRow
from users.models import User


def page_request(first: int, after: str | None) -> selectors.PageRequest:
    """Parse `first` and `after`; a bad one is the caller's error (BAD_USER_INPUT)."""
    try:
        return selectors.PageRequest.parse(first, after)
    except (selectors.InvalidCursor, selectors.InvalidPageSize) as error:
        raise ApiError(str(error)) from None


def selected_referral_pages(selections: list[Selection]) -> list[selectors.PageRequest]:
    """The referral pages a profile's selection asks for, so they can be read with it.

    Only a guess to save a trip to the database: anything unusual (a directive, an
    argument that does not parse) is left out, and the field then reads its own page.
    """
    found = []
    for selection in selections:
        if selection.directives:
            continue
        if isinstance(selection, FragmentSpread | InlineFragment):
            found += selected_referral_pages(selection.selections)
        elif selection.name == "referrals":
            arguments = selection.arguments
            try:
                first = int(arguments.get("first", 50))
                after = arguments.get("after")
                found.append(selectors.PageRequest.parse(first, after))
            except (TypeError, ValueError):
                continue
    return found


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, page: selectors.Page[User]) -> Self:
        return cls(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        )


@strawberry.type
class Referral:
    phone: str
    activated_at: datetime


@strawberry.type
class ReferralEdge:
    cursor: str
    node: Referral


@strawberry.type
class ReferralConnection:
    total_count: int
    edges: list[ReferralEdge]
    page_info: PageInfo

    @classmethod
    def of(cls, page: selectors.Page[User]) -> Self:
        edges = []
        for user, cursor in zip(page.items, page.cursors, strict=True):
            assert user.invite_activated_at is not None
            node = Referral(phone=user.phone, activated_at=user.invite_activated_at)
            edges.append(ReferralEdge(cursor=cursor, node=node))
        return cls(total_count=page.total_count, edges=edges, page_info=PageInfo.of(page))


@strawberry.type
class Session:
    """One of my signed-in devices: a sign-in and every refresh since."""

    id: strawberry.ID
    created_at: datetime
    last_used_at: datetime = strawberry.field(
        description="The sign-in or the latest token refresh (about every 15 minutes while "
        "the app is open)."
    )
    device: str = strawberry.field(
        description='Browser and OS from its User-Agent, e.g. "Chrome on Android"; '
        '"Unknown" when it says neither.'
    )
    current: bool = strawberry.field(description="This request's access token is of it.")

    @classmethod
    def of(cls, session: SessionRow, *, current_id: int) -> Self:
        return cls(
            id=strawberry.ID(str(session.pk)),
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            device=session.device or UNKNOWN,
            current=session.pk == current_id,
        )


@strawberry.type(name="Profile")
class Profile:
    """A user as the API shows them. Every query that returns a profile selects
    `invited_by` with the user, so only `referrals` reads the database."""

    id: strawberry.ID
    phone: str = strawberry.field(description='E.164, e.g. "+375291234567".')
    invite_code: str = strawberry.field(description="This user's own code.")
    invite_activated_at: datetime | None
    date_joined: datetime
    activated_invite_code: str | None = strawberry.field(
        description="The code this user activated; null if none."
    )
    pk: strawberry.Private[int]
    # Set on `me` only: the session of the request's access token.
    current_session_id: strawberry.Private[int | None]

    @classmethod
    def of(cls, user: User, *, current_session_id: int | None = None) -> Self:
        return cls(
            id=strawberry.ID(str(user.pk)),
            pk=user.pk,
            current_session_id=current_session_id,
            phone=user.phone,
            invite_code=user.invite_code,
            invite_activated_at=user.invite_activated_at,
            date_joined=user.date_joined,
            activated_invite_code=user.invited_by.invite_code if user.invited_by else None,
        )

    @strawberry.field(description="Users who activated this user's code, oldest activation first.")
    async def referrals(
        self, info: ApiInfo, first: int = 50, after: str | None = None
    ) -> ReferralConnection:
        request = page_request(first, after)
        page = await info.context.loaders.referral_pages.load((self.pk, request))
        return ReferralConnection.of(page)

    @strawberry.field(
        description="My signed-in devices, most recently used first (only on `me`; null on "
        "other profiles)."
    )
    async def sessions(self) -> list[Session] | None:
        current = self.current_session_id
        if current is None:
            return None
        rows = await database.run(selectors.live_sessions, user_id=self.pk)
        return [Session.of(row, current_id=current) for row in rows]


@strawberry.type
class UserEdge:
    cursor: str
    node: Profile


@strawberry.type
class UserConnection:
    total_count: int
    edges: list[UserEdge]
    page_info: PageInfo

    @classmethod
    def of(cls, page: selectors.Page[User]) -> Self:
        edges = [
            UserEdge(cursor=cursor, node=Profile.of(user))
            for user, cursor in zip(page.items, page.cursors, strict=True)
        ]
        return cls(total_count=page.total_count, edges=edges, page_info=PageInfo.of(page))


@strawberry.type
class SendCodePayload:
    phone: str | None = strawberry.field(default=None, description="The number in E.164.")
    expires_at: datetime | None = strawberry.field(
        default=None, description="When the code stops working."
    )
    retry_after: int | None = strawberry.field(
        default=None, description="Seconds until another code may be requested for this phone."
    )
    debug_code: str | None = strawberry.field(
        default=None, description="The code itself, only with the simulated SMS backend."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AuthPayload:
    token: str | None = strawberry.field(default=None, description="Access JWT.")
    token_expires_at: datetime | None = None
    refresh_token: str | None = None
    is_new_user: bool | None = strawberry.field(
        default=None, description="True when this call created the user."
    )
    profile: Profile | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ActivateInvitePayload:
    profile: Profile | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RevokeTokenPayload:
    revoked: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RevokeSessionPayload:
    revoked: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SignOutEverywherePayload:
    revoked: int = strawberry.field(default=0, description="How many sessions ended.")
    user_errors: list[UserError] = strawberry.field(default_factory=list)
