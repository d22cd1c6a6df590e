"""How failures reach clients.

Expected refusals are data: a DomainError becomes a `UserError` in the payload, in
one place (`returns_user_errors`), which also counts every mutation's outcome for
/metrics and notes it for the access log. Missing or bad tokens and missing rights are
top-level errors with `extensions.code`; so is a database that does not answer.
Anything else is logged with its traceback and reaches the client as
"Internal server error", with detail only when DEBUG is on.

A request that cannot be run at all gets Apollo's codes: GRAPHQL_PARSE_FAILED for a
document that does not parse (or has more tokens than allowed), GRAPHQL_VALIDATION_FAILED
for one that fails validation (an unknown field, a wrong argument type, the limits,
introspection while it is off), BAD_USER_INPUT for variables that do not fit their
types. schema/view.py gives these their HTTP status.
"""

import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import strawberry
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils.translation import gettext as _
from graphql import GraphQLError
from prometheus_client import Counter
from psycopg import OperationalError as PsycopgOperationalError
from strawberry.extensions import SchemaExtension

from backend import logs
from backend.database import DatabaseBusy, DatabaseTimeout
from users import errors as domain
from users.errors import DomainError, ErrorCode
from users.services.unit import Retry

logger = logging.getLogger("schema")

strawberry.enum(ErrorCode, name="UserErrorCode")  # the domain's codes, as the API names them


@strawberry.type
class UserError:
    code: ErrorCode
    field: str | None = strawberry.field(
        description='The argument at fault, e.g. "phone", "code", "inviteCode".'
    )
    message: str = strawberry.field(description="For people; clients branch on `code`.")
    retry_after: int | None = strawberry.field(
        description="Seconds, with RATE_LIMITED and TOO_MANY_ATTEMPTS."
    )


# Each mutation's answers, counted by outcome for /metrics (backend/metrics.py exposes
# them); the success is counted as SUCCESS names it.
_OUTCOME = "outcome"
MUTATIONS = {
    "send_code": Counter(
        "otp_codes_sent",
        "sendCode answers by outcome: delivered, or why not (delivery_failed, "
        "rate_limited, region_not_allowed, invalid_phone, too_many_attempts, "
        "service_unavailable, ...).",
        [_OUTCOME],
    ),
    "verify_code": Counter(
        "otp_verifications",
        "verifyCode answers by outcome: signed_in, new_user, or why not (invalid_code, "
        "code_expired, too_many_attempts, invite_not_found, ...).",
        [_OUTCOME],
    ),
    "activate_invite": Counter(
        "invite_activations",
        "activateInvite answers by outcome: activated, or why not (invite_not_found, "
        "self_invite, invite_already_activated, invite_cycle, ...).",
        [_OUTCOME],
    ),
    "refresh_token": Counter(
        "token_refreshes",
        "refreshToken answers by outcome: refreshed, or why not (invalid_token, ...).",
        [_OUTCOME],
    ),
    "revoke_token": Counter(
        "token_revocations",
        "revokeToken answers by outcome: revoked, or why not (invalid_token, ...).",
        [_OUTCOME],
    ),
    "revoke_session": Counter(
        "session_revocations",
        "revokeSession answers by outcome: revoked, or why not (session_not_found, ...).",
        [_OUTCOME],
    ),
    "sign_out_everywhere": Counter(
        "sign_outs_everywhere",
        "signOutEverywhere answers by outcome: signed_out, or why not (unauthenticated, ...).",
        [_OUTCOME],
    ),
}


def record_mutation(mutation: str, outcome: str) -> None:
    """Count one answer of `mutation` (its resolver's name) with `outcome`."""
    counter = MUTATIONS.get(mutation)
    if counter is not None:
        counter.labels(outcome=outcome).inc()


# The outcome a mutation's success is counted as.
SUCCESS = {
    "send_code": "delivered",
    "verify_code": "signed_in",
    "activate_invite": "activated",
    "refresh_token": "refreshed",
    "revoke_token": "revoked",
    "revoke_session": "revoked",
    "sign_out_everywhere": "signed_out",
}


def success_outcome(mutation: str, payload: object) -> str:
    if getattr(payload, "is_new_user", None):
        return "new_user"
    return SUCCESS.get(mutation, "ok")


def failure_outcome(error: Exception) -> str:
    """The outcome of a mutation that raised `error` instead of answering."""
    if isinstance(error, ApiError):
        return error.code.lower()
    if isinstance(error, domain.Forbidden):
        return "forbidden"
    if isinstance(error, (*BUSY, *UNAVAILABLE)):
        return "service_unavailable"
    code = getattr(error, "code", None)  # users.sms.DeliveryError, if it gets this far
    if isinstance(code, ErrorCode):
        return code.lower()
    return "internal_error"


def returns_user_errors[**P, T](
    payload_type: Callable[..., T],
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorate a mutation resolver so a DomainError becomes `payload_type(user_errors=[...])`.

    Every outcome is counted here, by the resolver's name: the success, the userErrors
    code, or what was raised (backend/metrics.py).
    """

    def decorate(resolver: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        mutation = resolver.__name__

        @functools.wraps(resolver)
        async def resolve(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                payload = await resolver(*args, **kwargs)
            except DomainError as error:
                record_mutation(mutation, error.code.lower())
                logs.add_outcome(str(error.code))
                return payload_type(
                    user_errors=[
                        UserError(
                            code=error.code,
                            field=error.field,
                            message=str(error.message),
                            retry_after=error.retry_after,
                        )
                    ]
                )
            except Exception as error:
                record_mutation(mutation, failure_outcome(error))
                raise
            record_mutation(mutation, success_outcome(mutation, payload))
            return payload

        return resolve

    return decorate


class ApiError(Exception):
    """A top-level error whose message is safe to show, with `extensions.code`."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class NotAuthenticated(ApiError):
    code = "UNAUTHENTICATED"

    def __init__(self) -> None:
        super().__init__(_("Sign in: this needs a valid access token (Authorization: Bearer)."))


class Forbidden(ApiError):
    code = "FORBIDDEN"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or _("Staff only."))


UNAVAILABLE = (OperationalError, InterfaceError, PsycopgOperationalError, DatabaseTimeout)
# Load, not an outage: every database slot of the worker stayed taken, or a use case
# kept finding its rows changed under it.
BUSY = (DatabaseBusy, Retry)
SUGGESTION = re.compile(r" Did you mean .*\?$")
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
# The codes of requests refused before anything ran: the client's to fix (schema/view.py).
REQUEST_ERRORS = frozenset({PARSE_FAILED, VALIDATION_FAILED, "BAD_USER_INPUT"})


class ErrorPolicy(SchemaExtension):
    """Gives every top-level error a code and hides what clients must not see."""

    def on_operation(self) -> Iterator[None]:
        self.invalid = False
        try:
            yield
        except GraphQLError as error:
            # A document that does not parse is raised through the extensions (the
            # parser cache parses in a hook), and strawberry answers with this error.
            if self.execution_context.graphql_document is None:
                error.extensions = {**(error.extensions or {}), "code": PARSE_FAILED}
            raise
        result = self.execution_context.result
        if result is not None and result.errors:
            refused = self._request_error(result.data, result.errors)
            result.errors = [self._public(error, refused) for error in result.errors]

    def on_validate(self) -> Iterator[None]:
        yield
        self.invalid = bool(self.execution_context.pre_execution_errors)

    def _request_error(self, data: object, errors: list[GraphQLError]) -> str | None:
        """The code when nothing ran: the document did not parse or validate, or the
        variables did not coerce (no data, and no error at a field's path)."""
        if self.execution_context.graphql_document is None:
            return PARSE_FAILED
        if self.invalid:
            return VALIDATION_FAILED
        if data is None and all(error.path is None for error in errors):
            return "BAD_USER_INPUT"
        return None

    def _public(self, error: GraphQLError, refused: str | None = None) -> GraphQLError:
        original = error.original_error
        if refused is not None or original is None or isinstance(original, GraphQLError):
            message = error.message
            if not settings.GRAPHIQL and SUGGESTION.search(message):
                # "Did you mean 'me'?" would tell the schema that introspection hides.
                message = SUGGESTION.sub("", message)
            if refused is None:
                error.message = message
                return error
            # A new error: validation's are cached and shared between requests.
            return _retold(error, message, {**(error.extensions or {}), "code": refused})
        if isinstance(original, ApiError):
            message, code = str(original), original.code
        elif isinstance(original, domain.Forbidden):
            message, code = str(original), "FORBIDDEN"
        elif isinstance(original, BUSY):
            logger.warning("busy: %s", type(original).__name__)
            message, code = _("The service is busy, try again shortly."), "SERVICE_UNAVAILABLE"
        elif isinstance(original, UNAVAILABLE):
            logger.error("database unavailable at %s: %s", _path(error), original)
            message, code = _("Service unavailable, try again shortly."), "SERVICE_UNAVAILABLE"
        else:
            # The traceback may quote a phone or a token: backend/logs.py masks them.
            logger.error("unexpected error at %s", _path(error), exc_info=original)
            message, code = "Internal server error", "INTERNAL_SERVER_ERROR"
            if settings.DEBUG:
                message = f"Internal server error: {original!r}"
        return _retold(error, message, {"code": code})


def _retold(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    """`error` at the same place in the document, with `message` and `extensions`."""
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


def _path(error: GraphQLError) -> str:
    """The field that failed, e.g. "sendCode" or "me.referrals": names, never values."""
    return ".".join(str(part) for part in error.path or ()) or "(operation)"
