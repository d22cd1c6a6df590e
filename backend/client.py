"""The reference single-page client's page, `/`: backend/templates/client.html and
its static files (backend/static/client/)."""

import phonenumbers
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.http import require_safe

from backend.languages import preferred_language


def _phone_rules() -> dict[str, str]:
    """What the phone field accepts, for its hint: with PHONE_DEFAULT_REGION set, numbers
    of that country without their country code too. An example mobile number of the
    country in both spellings, from libphonenumber's metadata."""
    region: str | None = settings.PHONE_DEFAULT_REGION
    if not region:
        return {}
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:  # a region code libphonenumber does not know
        return {}
    return {
        "phone_region": region,
        "phone_example": phonenumbers.format_number(
            example, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        ),
        "phone_local_example": phonenumbers.format_number(
            example, phonenumbers.PhoneNumberFormat.NATIONAL
        ),
    }


@xframe_options_deny
@require_safe
async def client(request: HttpRequest) -> HttpResponse:
    """The reference single-page client: backend/templates/client.html and its static files.

    The page runs only its own script files (no inline script, nothing from elsewhere).
    Its first language is the first of ru or en in Accept-Language, the same choice the
    script makes from navigator.languages, so the page does not change language on load.
    The phone field carries what the server accepts (_phone_rules) for the script's hint.
    """
    lang = preferred_language(request.headers.get("Accept-Language", ""))
    response = render(request, "client.html", {"lang": lang, **_phone_rules()})
    response["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    patch_vary_headers(response, ["Accept-Language"])
    return response
