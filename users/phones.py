"""Phone numbers: what the API accepts, and the one E.164 spelling it stores.

A code is sent only to a number whose type (libphonenumber's, from the number's
prefix) is in SMS_NUMBER_TYPES: by default mobile numbers, and fixed-line-or-mobile
where the numbering plan cannot tell the two apart (the US, Canada). Premium-rate
numbers are how SMS pumping pays; toll-free, VoIP, shared-cost and fixed lines mostly
cannot receive a text, and each attempt still costs the provider's fee.
"""

import re

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from users.errors import DomainError, ErrorCode

MAX_PHONE_INPUT = 32
# ASCII digits, one leading "+", spaces, dashes, dots and parentheses. Letters are
# refused here because libphonenumber would read them as keypad digits.
PHONE_CHARACTERS = re.compile(r"\+?[0-9 ().\-]*[0-9][0-9 ().\-]*")


def normalize_phone(raw: str, *, for_sms: bool = True) -> str:
    """Return the number in E.164, or raise DomainError(INVALID_PHONE).

    With `for_sms` (signing in), the number's type must also be one of
    SMS_NUMBER_TYPES; OTP_TEST_NUMBERS are taken as they are. Without it, any valid
    number is accepted: a number already stored stays valid when the setting narrows.
    """
    invalid = DomainError(
        ErrorCode.INVALID_PHONE,
        _("Enter a valid phone number, e.g. +375 29 123-45-67."),
        field="phone",
    )
    if not isinstance(raw, str) or len(raw) > MAX_PHONE_INPUT:
        raise invalid
    raw = raw.strip()
    if not PHONE_CHARACTERS.fullmatch(raw):
        raise invalid
    region = None if raw.startswith("+") else settings.PHONE_DEFAULT_REGION
    if region is None and not raw.startswith("+"):
        raise invalid
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise invalid from None
    if number.extension:
        raise invalid
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if e164 in settings.OTP_TEST_NUMBERS:
        return e164
    if not phonenumbers.is_valid_number(number):
        raise invalid
    if for_sms and number_type(number) not in settings.SMS_NUMBER_TYPES:
        raise DomainError(
            ErrorCode.INVALID_PHONE, _("This number cannot receive text messages."), field="phone"
        )
    return e164


def number_type(number: phonenumbers.PhoneNumber) -> str:
    """libphonenumber's type of the number as SMS_NUMBER_TYPES names it, e.g. "premium_rate"."""
    return str(phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(number))).lower()


def validate_e164(value: str) -> None:
    """Model-field validator: the stored spelling is E.164 and nothing else."""
    try:
        normalized = normalize_phone(value, for_sms=False)
    except DomainError as error:
        raise ValidationError(error.message) from None
    if normalized != value:
        raise ValidationError(f"Enter the number in E.164: {normalized}")


def region_of(e164: str) -> str | None:
    """The ISO code of the number's country ("BY"), or None when libphonenumber has none."""
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))


def prefix_of(e164: str, digits: int) -> str:
    """The number's country calling code and its first `digits` national digits, as
    "+375291": the range an SMS pumping run texts, and the pumping rule counts by."""
    number = phonenumbers.parse(e164, None)
    national = phonenumbers.national_significant_number(number)
    return f"+{number.country_code}{national[:digits]}"
