"""Mutations: parse arguments, call one service, return its result as a payload."""

import strawberry
from asgiref.sync import sync_to_async
from strawberry.types import Info

from schema.errors import returns_user_errors
from schema.types import ActivateInvitePayload, AuthPayload, RevokeTokenPayload, SendCodePayload
from users import services, tokens


def auth_payload(user, issued: tokens.Tokens, *, is_new_user: bool) -> AuthPayload:
    return AuthPayload(
        token=issued.token,
        token_expires_at=issued.token_expires_at,
        refresh_token=issued.refresh_token,
        is_new_user=is_new_user,
        profile=user,
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Send a one-time code to this phone (simulated: about 1 s, then the code "
        "is 'delivered')."
    )
    @returns_user_errors(SendCodePayload)
    async def send_code(self, info: Info, phone: str) -> SendCodePayload:
        sent = await services.send_code(phone=phone, client_ip=info.context.client_ip)
        return SendCodePayload(
            phone=sent.phone,
            expires_at=sent.expires_at,
            retry_after=sent.retry_after,
            debug_code=sent.debug_code,
        )

    @strawberry.mutation(
        description="Check the code; the first success for a phone creates the user. "
        "May activate an invite code too."
    )
    @returns_user_errors(AuthPayload)
    async def verify_code(
        self, phone: str, code: str, invite_code: str | None = None
    ) -> AuthPayload:
        signed_in = await sync_to_async(services.verify_code)(
            phone=phone, code=code, invite_code=invite_code
        )
        return auth_payload(signed_in.user, signed_in.tokens, is_new_user=signed_in.is_new_user)

    @strawberry.mutation(
        description="Exchange a refresh token for a new access token and a new refresh token "
        "(the old one is revoked)."
    )
    @returns_user_errors(AuthPayload)
    async def refresh_token(self, refresh_token: str) -> AuthPayload:
        user, issued = await sync_to_async(tokens.rotate_refresh_token)(refresh_token=refresh_token)
        return auth_payload(user, issued, is_new_user=False)

    @strawberry.mutation(description="Sign out: revoke a refresh token.")
    @returns_user_errors(RevokeTokenPayload)
    async def revoke_token(self, refresh_token: str) -> RevokeTokenPayload:
        await sync_to_async(tokens.revoke_refresh_token)(refresh_token=refresh_token)
        return RevokeTokenPayload(revoked=True)

    @strawberry.mutation(description="Activate another user's invite code (signed-in users only).")
    @returns_user_errors(ActivateInvitePayload)
    async def activate_invite(self, info: Info, invite_code: str) -> ActivateInvitePayload:
        user = await info.context.require_user()
        profile = await sync_to_async(services.activate_invite)(
            user_id=user.pk, invite_code=invite_code
        )
        return ActivateInvitePayload(profile=profile)
