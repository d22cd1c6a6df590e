"""The language of a request: Russian or English, from Accept-Language.

The first of ru and en in the header's order of preference; anything else is English.
Only the header decides: the API reads no cookies, and a client that wants the other
language sends it.
"""

from django.conf import settings
from django.utils.translation import trans_real

DEFAULT = "en"


def preferred_language(accept_language: str) -> str:
    """The first of the supported languages in the header's order of preference."""
    supported = {code for code, _ in settings.LANGUAGES}
    for tag, _quality in trans_real.parse_accept_lang_header(accept_language[:512]):
        primary = tag.split("-")[0].lower()
        if primary in supported:
            return primary
    return DEFAULT
