"""The stack's own floors, mounted only by bench/settings.py.

`plain_me`: a plain Django JSON view doing what `me` does: the same Bearer parsing and
JWT check (users.access_tokens), the same user lookup with the inviter and the session
check joined to it, the same referral page of 50 with its count; no GraphQL.

`plain_wait`: an async Django view that only awaits the simulated delivery delay;
what 200 concurrent sendCode would cost if sending did nothing else.
"""

import asyncio

from django.conf import settings
from django.http import JsonResponse

from schema.context import bearer_token
from users import selectors
from users.access_tokens import claims_of_access_token


def plain_me(request):
    claims = claims_of_access_token(bearer_token(request) or "")
    user = None
    if claims is not None:
        user = selectors.active_user(user_id=claims.user_id, session_id=claims.session_id)
    if user is None:
        return JsonResponse({"errors": [{"extensions": {"code": "UNAUTHENTICATED"}}]})
    request = selectors.PageRequest.parse(50, None)
    page = selectors.referral_pages(user_ids=[user.pk], request=request)[user.pk]
    return JsonResponse(
        {
            "data": {
                "me": {
                    "id": str(user.pk),
                    "phone": user.phone,
                    "inviteCode": user.invite_code,
                    "activatedInviteCode": user.invited_by.invite_code if user.invited_by else None,
                    "inviteActivatedAt": user.invite_activated_at,
                    "dateJoined": user.date_joined,
                    "referrals": {
                        "totalCount": page.total_count,
                        "edges": [
                            {
                                "cursor": cursor,
                                "node": {"phone": r.phone, "activatedAt": r.invite_activated_at},
                            }
                            for r, cursor in zip(page.items, page.cursors, strict=True)
                        ],
                        "pageInfo": {
                            "hasNextPage": page.has_next_page,
                            "endCursor": page.cursors[-1] if page.cursors else None,
                        },
                    },
                }
            }
        }
    )


async def plain_wait(request):
    await asyncio.sleep(settings.SMS_SIMULATED_DELAY)
    return JsonResponse({"data": {"sent": True}})
