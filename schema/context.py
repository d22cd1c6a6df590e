"""The request context: who is calling, from where, and the request's data loaders."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.http import HttpRequest
from strawberry.django.context import StrawberryDjangoContext
from strawberry.types import Info

from backend import database
from backend.edge import address_key, network_of
from schema.errors import Forbidden, NotAuthenticated
from schema.loaders import Loaders
from users import selectors
from users.access_tokens import user_id_from_access_token
from users.models import User


def bearer_token(request: HttpRequest) -> str | None:
    """The token of `Authorization: Bearer <token>`; cookies are never read."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@dataclass
class Context(StrawberryDjangoContext):
    """Made per request by schema/view.py. REMOTE_ADDR is already the client's
    address when a trusted proxy forwarded the request (backend/edge.py)."""

    token: str | None = None
    client_key: str | None = None
    client_network: str | None = None  # IPv4 /24 or IPv6 /64, for the referral signals
    loaders: Loaders = field(default_factory=Loaders)
    _user: "asyncio.Future[User | None] | None" = field(default=None, init=False)

    @classmethod
    def for_request(cls, request: HttpRequest, response: object) -> "Context":
        return cls(
            request=request,
            response=response,  # type: ignore[arg-type]
            token=bearer_token(request),
            client_key=address_key(request.META.get("REMOTE_ADDR")),
            client_network=network_of(request.META.get("REMOTE_ADDR")),
        )

    async def user(self, *, referrals: Sequence[selectors.PageRequest] = ()) -> User | None:
        """The token's active user, looked up once per request however many fields ask.

        `referrals`: the pages of the user's referrals the query will ask for, read in
        the same trip to the database and handed to the loader (`me` knows them).
        """
        if self._user is None:
            self._user = asyncio.ensure_future(self._look_up(referrals))
        return await asyncio.shield(self._user)

    async def _look_up(self, referrals: Sequence[selectors.PageRequest]) -> User | None:
        user_id = user_id_from_access_token(self.token)
        if user_id is None:
            return None
        user, pages = await database.run(
            selectors.active_user_with_referrals, user_id=user_id, requests=referrals
        )
        for request, page in pages.items():
            self.loaders.referral_pages.prime((user_id, request), page)
        return user

    async def require_user(self, *, referrals: Sequence[selectors.PageRequest] = ()) -> User:
        user = await self.user(referrals=referrals)
        if user is None:
            raise NotAuthenticated()
        return user

    async def require_staff(self) -> User:
        user = await self.require_user()
        if not user.is_staff:
            raise Forbidden()
        return user


type ApiInfo = Info[Context, None]
