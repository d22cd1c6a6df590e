"""Mutations: parse arguments, call one use case, return its result as a payload.

Sync use cases run off the event loop through `backend.database.run`; a DomainError
becomes the payload's userErrors in one place (`returns_user_errors`).
"""

import strawberry
from django.utils import translation

from backend import database
from schema.context import ApiInfo
from schema.errors import returns_user_errors
from schema.types import (
    ActivateInvitePayload,
    AuthPayload,
    Profile,
    RevokeSessionPayload,
    RevokeTokenPayload,
    SendCodePayload,
    SignOutEverywherePayload,
)
from users.models import User
from users.services import codes, invites, sessions, tokens


def auth_payload(user: User, issued: tokens.Tokens, *, is_new_user: bool) -> AuthPayload:
    return AuthPayload(
        token=issued.token,
        token_expires_at=issued.token_expires_at,
        refresh_token=issued.refresh_token,
        is_new_user=is_new_user,
        profile=Profile.of(user),
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Send a one-time code to this phone (simulated: about 1 s, then the code "
        "is 'delivered')."
    )
    @returns_user_errors(SendCodePayload)
    async def send_code(self, info: ApiInfo, phone: str) -> SendCodePayload:
        sent = await codes.send_code(
            phone=phone,
            client_key=info.context.client_key,
            locale=translation.get_language(),
            off_loop=database.run,
        )
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
        self, info: ApiInfo, phone: str, code: str, invite_code: str | None = None
    ) -> AuthPayload:
        signed_in = await database.run(
            codes.verify_code,
            phone=phone,
            code=code,
            invite_code=invite_code,
            client=info.context.client,
            if_abandoned=codes.keep_unanswered,
        )
        return auth_payload(signed_in.user, signed_in.tokens, is_new_user=signed_in.is_new_user)

    @strawberry.mutation(
        description="Exchange a refresh token for a new access token and a new refresh token "
        "(the old one is revoked)."
    )
    @returns_user_errors(AuthPayload)
    async def refresh_token(self, refresh_token: str) -> AuthPayload:
        user, issued = await database.run(tokens.rotate, refresh_token=refresh_token)
        return auth_payload(user, issued, is_new_user=False)

    @strawberry.mutation(
        description="Sign out: revoke a refresh token (its session ends, its access tokens "
        "stop working at once)."
    )
    @returns_user_errors(RevokeTokenPayload)
    async def revoke_token(self, refresh_token: str) -> RevokeTokenPayload:
        await database.run(tokens.revoke, refresh_token=refresh_token)
        return RevokeTokenPayload(revoked=True)

    @strawberry.mutation(description="Activate another user's invite code (signed-in users only).")
    @returns_user_errors(ActivateInvitePayload)
    async def activate_invite(self, info: ApiInfo, invite_code: str) -> ActivateInvitePayload:
        user = await info.context.require_user()
        activated = await database.run(
            invites.activate_invite,
            user_id=user.pk,
            invite_code=invite_code,
            network=info.context.client.network or None,
        )
        return ActivateInvitePayload(profile=Profile.of(activated))

    @strawberry.mutation(
        description="End one of my sessions (a device); its access and refresh tokens stop "
        "working at once."
    )
    @returns_user_errors(RevokeSessionPayload)
    async def revoke_session(self, info: ApiInfo, id: strawberry.ID) -> RevokeSessionPayload:
        user = await info.context.require_user()
        await database.run(sessions.end_session, user_id=user.pk, session_id=str(id))
        return RevokeSessionPayload(revoked=True)

    @strawberry.mutation(
        description="End all my sessions; keepCurrent keeps the one this access token belongs to."
    )
    @returns_user_errors(SignOutEverywherePayload)
    async def sign_out_everywhere(
        self, info: ApiInfo, keep_current: bool = True
    ) -> SignOutEverywherePayload:
        user, current = await info.context.require_session()
        revoked = await database.run(
            sessions.end_all_sessions,
            user_id=user.pk,
            keep_session_id=current if keep_current else None,
        )
        return SignOutEverywherePayload(revoked=revoked)
