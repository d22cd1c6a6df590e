"""Queries: check who is asking, read, return."""

import strawberry

from backend import database
from schema.context import ApiInfo
from schema.types import Profile, UserConnection, page_request, selected_referral_pages
from users import selectors


@strawberry.type
class Query:
    @strawberry.field(
        description="The signed-in user. Without a valid access token: UNAUTHENTICATED."
    )
    async def me(self, info: ApiInfo) -> Profile:
        referrals = selected_referral_pages(info.selected_fields[0].selections)
        user = await info.context.require_user(referrals=referrals)
        return Profile.of(user, current_session_id=info.context.session_id)

    @strawberry.field(
        description="Every user, newest first. Staff only: UNAUTHENTICATED without a token, "
        "FORBIDDEN for users who are not staff."
    )
    async def users(
        self, info: ApiInfo, first: int = 20, after: str | None = None
    ) -> UserConnection:
        request = page_request(first, after)
        await info.context.require_staff()
        return UserConnection.of(await database.run(selectors.users, request=request))
