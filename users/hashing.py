"""What is stored instead of a secret: an HMAC of a code, a SHA-256 of a refresh token."""

import hashlib
import hmac

from django.conf import settings


def code_hash(phone: str, code: str) -> str:
    """HMAC-SHA256 of a one-time code, keyed with SECRET_KEY and bound to the phone.

    Keyed, because 10,000 codes are quickly tried against a plain hash.
    """
    message = f"{phone}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def token_hash(token: str) -> str:
    """SHA-256 of a refresh token: 256 random bits need no key to stay unguessable."""
    return hashlib.sha256(token.encode()).hexdigest()
