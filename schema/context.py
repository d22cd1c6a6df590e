"""The request context: who is calling, from where."""

import ipaddress
from dataclasses import dataclass, field
from functools import cache

from asgiref.sync import sync_to_async
from django.conf import settings
from strawberry.django.context import StrawberryDjangoContext

from schema.errors import Forbidden, NotAuthenticated
from users.models import User
from users.tokens import active_user_by_id, user_id_from_access_token


def bearer_token(request) -> str | None:
    """The token of `Authorization: Bearer <token>`; cookies are never read."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@cache
def _networks(proxies: tuple[str, ...]) -> tuple:
    """TRUSTED_PROXIES parsed once, not for every hop of every request."""
    networks = []
    for proxy in proxies:
        try:
            networks.append(ipaddress.ip_network(proxy, strict=False))
        except ValueError:
            continue
    return tuple(networks)


def _trusted(address: str, proxies: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(proxies)))


def client_ip(request) -> str | None:
    """The socket peer, or behind a trusted proxy the right-most untrusted X-Forwarded-For hop."""
    peer = request.META.get("REMOTE_ADDR") or None
    proxies = settings.TRUSTED_PROXIES
    if peer is None or not proxies or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a garbled header: count the proxy, not a made-up name
    return peer


@dataclass
class Context(StrawberryDjangoContext):
    token: str | None = None
    client_ip: str | None = None
    _user: User | None = field(default=None, init=False)
    _looked_up: bool = field(default=False, init=False)

    async def user(self) -> User | None:
        """The token's active user, looked up once per request."""
        if not self._looked_up:
            user_id = user_id_from_access_token(self.token) if self.token else None
            if user_id is not None:
                self._user = await sync_to_async(active_user_by_id)(user_id)
            self._looked_up = True
        return self._user

    async def require_user(self) -> User:
        user = await self.user()
        if user is None:
            raise NotAuthenticated()
        return user

    async def require_staff(self) -> User:
        user = await self.require_user()
        if not user.is_staff:
            raise Forbidden()
        return user
