"""The floor for `me`: a plain Django JSON view doing the same token check and reads.

Same Bearer parsing and JWT check (users.tokens), same user lookup with the inviter,
same referral page of 50 with its count; no GraphQL.
"""

from django.http import JsonResponse

from schema.context import bearer_token
from users import selectors
from users.tokens import active_user_by_id, user_id_from_access_token


def plain_me(request):
    user_id = user_id_from_access_token(bearer_token(request) or "")
    user = active_user_by_id(user_id) if user_id is not None else None
    if user is None:
        return JsonResponse({"errors": [{"extensions": {"code": "UNAUTHENTICATED"}}]})
    page = selectors.referrals(user_id=user.pk, first=50, after=None)
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
