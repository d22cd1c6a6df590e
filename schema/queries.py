import strawberry
from strawberry.types import Info

from schema.types import Profile, UserConnection, UserEdge, load_page, page_info
from users import selectors


@strawberry.type
class Query:
    @strawberry.field(
        description="The signed-in user. Without a valid access token: UNAUTHENTICATED."
    )
    async def me(self, info: Info) -> Profile:
        return await info.context.require_user()

    @strawberry.field(
        description="Every user, newest first. Staff only: UNAUTHENTICATED without a token, "
        "FORBIDDEN for users who are not staff."
    )
    async def users(self, info: Info, first: int = 20, after: str | None = None) -> UserConnection:
        await info.context.require_staff()
        page = await load_page(selectors.users, first=first, after=after)
        return UserConnection(
            total_count=page.total_count,
            edges=[
                UserEdge(cursor=cursor, node=user)
                for user, cursor in zip(page.items, page.cursors, strict=True)
            ],
            page_info=page_info(page),
        )
