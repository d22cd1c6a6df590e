"""Subscriptions: `referralAdded`, served over WebSocket (schema/websocket.py).

Each subscription waits on this worker's one LISTEN (backend/listen.py) for the notices
of its user's referrals, which users_record_activation sends when an activation commits,
on whichever worker or host it was made.
"""

import asyncio
from collections.abc import AsyncGenerator
from contextlib import suppress
from datetime import datetime
from typing import Any

import strawberry
from django.utils.translation import gettext as _
from strawberry.types import Info

from backend import metrics
from backend.listen import Notices
from schema.errors import ApiError
from schema.types import Referral
from users.services.referrals import CHANNEL

LISTEN_WAIT = 5.0  # seconds a new subscription waits for the worker's LISTEN to be set up
referral_notices = Notices(CHANNEL, key_of=lambda notice: int(notice["referrer"]))


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Fires when someone activates my invite code, on whichever worker or "
        'host. graphql-transport-ws; token in connection_init\'s payload as {"Authorization": '
        '"Bearer ..."}.'
    )
    async def referral_added(self, info: Info[Any, None]) -> AsyncGenerator[Referral, None]:
        user_id = getattr(info.context, "subscriber_id", None)
        if user_id is None:  # over HTTP: there is no connection to keep open
            raise ApiError(
                _("Subscriptions are served over WebSocket (graphql-transport-ws) at /graphql/."),
                "BAD_REQUEST",
            )
        gauge = metrics.SUBSCRIPTIONS.labels(subscription="referralAdded")
        async with referral_notices.subscribe(user_id) as queue:
            # Counted once this worker listens (or has tried for a while): a referral
            # made after the gauge shows it reaches this subscription.
            with suppress(TimeoutError):
                async with asyncio.timeout(LISTEN_WAIT):
                    await referral_notices.listening.wait()
            gauge.inc()
            try:
                while True:
                    notice = await queue.get()
                    yield Referral(
                        phone=notice["phone"],
                        activated_at=datetime.fromisoformat(notice["activated_at"]),
                    )
            finally:
                gauge.dec()
