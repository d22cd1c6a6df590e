"""GraphQL types: the profile, connections and mutation payloads."""

from datetime import datetime

import strawberry
from asgiref.sync import sync_to_async

from schema.errors import ApiError, UserError
from users import selectors
from users.models import User


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def page_info(page: selectors.Page) -> PageInfo:
    return PageInfo(
        has_next_page=page.has_next_page,
        has_previous_page=page.has_previous_page,
        start_cursor=page.cursors[0] if page.cursors else None,
        end_cursor=page.cursors[-1] if page.cursors else None,
    )


async def load_page(selector, **kwargs) -> selectors.Page:
    """Run a paginating selector; a bad `first` or `after` is the caller's error."""
    try:
        return await sync_to_async(selector)(**kwargs)
    except (selectors.InvalidCursor, selectors.InvalidPageSize) as error:
        raise ApiError(str(error)) from None


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


@strawberry.type(name="Profile")
class Profile:
    """A user as the API shows them; resolved from a `users.models.User`.

    Every query that returns a profile selects `invited_by` with the user, so no
    field here touches the database but `referrals`.
    """

    id: strawberry.ID
    phone: str = strawberry.field(description='E.164, e.g. "+375291234567".')
    invite_code: str = strawberry.field(description="This user's own code.")
    invite_activated_at: datetime | None
    date_joined: datetime

    @strawberry.field(description="The code this user activated; null if none.")
    def activated_invite_code(self: User) -> str | None:
        return self.invited_by.invite_code if self.invited_by_id else None

    @strawberry.field(description="Users who activated this user's code, oldest activation first.")
    async def referrals(
        self: User, first: int = 50, after: str | None = None
    ) -> ReferralConnection:
        page = await load_page(selectors.referrals, user_id=self.pk, first=first, after=after)
        return ReferralConnection(
            total_count=page.total_count,
            edges=[
                ReferralEdge(
                    cursor=cursor,
                    node=Referral(phone=user.phone, activated_at=user.invite_activated_at),
                )
                for user, cursor in zip(page.items, page.cursors, strict=True)
            ],
            page_info=page_info(page),
        )


@strawberry.type
class UserEdge:
    cursor: str
    node: Profile


@strawberry.type
class UserConnection:
    total_count: int
    edges: list[UserEdge]
    page_info: PageInfo


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
