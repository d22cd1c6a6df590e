"""The one error type of the domain: a refusal the caller can act on."""

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


class DomainError(Exception):
    """Raised by services; the API turns it into a UserError in the payload."""

    def __init__(
        self, code: ErrorCode, message: str, *, field: str | None = None, retry_after=None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after
