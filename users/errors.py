"""The one error type of the domain: a refusal the person can act on."""

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_PHONE = "INVALID_PHONE"
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_CODE = "INVALID_CODE"
    CODE_EXPIRED = "CODE_EXPIRED"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    INVITE_NOT_FOUND = "INVITE_NOT_FOUND"
    SELF_INVITE = "SELF_INVITE"
    INVITE_ALREADY_ACTIVATED = "INVITE_ALREADY_ACTIVATED"
    INVITE_CYCLE = "INVITE_CYCLE"
    INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 (an error code, not a secret)
    DELIVERY_FAILED = "DELIVERY_FAILED"
    REGION_NOT_ALLOWED = "REGION_NOT_ALLOWED"
    DELIVERY_DELAYED = "DELIVERY_DELAYED"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"


class DomainError(Exception):
    """Raised by services; the API turns it into a UserError in the payload.

    A refusal normally leaves the database as it was: the use case's transaction
    rolls back. `commit=True` marks the refusals whose writes must stay, because the
    refusal itself is what they record: a wrong guess counted against the code, a
    copied refresh token's family revoked. `users.services.unit.use_case` commits
    those and raises the error after the commit.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        retry_after: int | None = None,
        commit: bool = False,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.commit = commit


class Forbidden(Exception):
    """The person may not do this at all (a disabled account): top-level FORBIDDEN."""


class Retry(Exception):
    """What a use case read changed before it could lock it, or a draw of invite codes
    was all taken: run it again (users.services.unit)."""
