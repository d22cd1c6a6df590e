"""Staff see every user: searchable by phone and invite code, with inviter and referrals."""

import math
from typing import Any, cast

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from users import throttle
from users.errors import DomainError
from users.models import User
from users.phones import MAX_PHONE_INPUT, normalize_phone

LOGIN_WINDOW = 15 * 60
LOGIN_MAX_FAILED = 5
LOGIN_MAX_FAILED_PER_ADDRESS = 20


class PhoneField(forms.CharField):
    """Accepts any spelling of a number and stores its E.164 form."""

    def clean(self, value: Any) -> str:
        value = super().clean(value)
        try:
            return normalize_phone(value, for_sms=False)
        except DomainError as error:
            raise forms.ValidationError(error.message) from None


class UserCreationForm(forms.ModelForm[User]):
    phone = PhoneField(help_text="International format, e.g. +375291234567.")

    class Meta:
        model = User
        fields = ["phone"]

    def save(self, commit: bool = True) -> User:
        return User.objects.create_user(self.cleaned_data["phone"])

    def save_m2m(self) -> None:
        pass


@admin.register(User)
class UserAdmin(BaseUserAdmin[User]):
    add_form = UserCreationForm
    add_fieldsets = ((None, {"fields": ["phone"]}),)
    list_display = [
        "phone",
        "invite_code",
        "inviter",
        "referral_count",
        "date_joined",
        "is_staff",
        "is_active",
    ]
    list_filter = ["is_staff", "is_active"]
    search_fields = ["phone", "invite_code"]
    ordering = ["-date_joined", "-id"]
    list_select_related = ["invited_by"]
    readonly_fields = [
        "phone",
        "invite_code",
        "invited_by",
        "invite_activated_at",
        "date_joined",
        "last_login",
    ]
    fieldsets = (
        (None, {"fields": ["phone", "password"]}),
        ("Invites", {"fields": ["invite_code", "invited_by", "invite_activated_at"]}),
        (
            "Permissions",
            {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]},
        ),
        ("Dates", {"fields": ["date_joined", "last_login"]}),
    )
    filter_horizontal = ["groups", "user_permissions"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).annotate(_referral_count=Count("referrals"))

    def get_readonly_fields(
        self, request: HttpRequest, obj: User | None = None
    ) -> list[str] | tuple[str, ...]:
        return self.readonly_fields if obj else []

    @admin.display(description="invited by", ordering="invited_by__phone")
    def inviter(self, obj: User) -> str | None:
        return obj.invited_by.phone if obj.invited_by else None

    @admin.display(description="referrals", ordering="_referral_count")
    def referral_count(self, obj: User) -> int:
        count: int = getattr(obj, "_referral_count", 0)
        return count


class ThrottledLoginForm(AdminAuthenticationForm):
    """The admin's sign-in: any spelling of the phone, and a cap on wrong passwords.

    LOGIN_MAX_FAILED tries per phone, and LOGIN_MAX_FAILED_PER_ADDRESS per client
    address, in LOGIN_WINDOW seconds. Each try is counted before its password is
    checked, in the database (users/sql/windows.sql), so a burst of concurrent tries
    checks no more passwords than the cap; a try that signs in is then struck off.
    Past the cap every try is refused until the window has room, the right one included.
    """

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins. Try again in %(minutes)d min.",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Django sizes the field by the stored E.164 (16 characters); people type spaces
        # and dashes, as many as the API takes.
        username = cast(forms.CharField, self.fields["username"])
        username.max_length = MAX_PHONE_INPUT
        username.widget.attrs["maxlength"] = str(MAX_PHONE_INPUT)

    def clean_username(self) -> str:
        raw: str = self.cleaned_data.get("username", "")
        try:
            return normalize_phone(raw, for_sms=False)
        except DomainError:
            return raw

    def _keys(self) -> list[tuple[str, int]]:
        address = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        return [
            (f"login:phone:{self.cleaned_data.get('username', '')}", LOGIN_MAX_FAILED),
            (f"login:ip:{address}", LOGIN_MAX_FAILED_PER_ADDRESS),
        ]

    def _count_try(self) -> list[tuple[str, float]]:
        """Count this try against the phone and the address, or refuse it, counting nothing."""
        with transaction.atomic():
            wait, events = 0, []
            for key, limit in self._keys():
                key_wait, event = throttle.take(key, limit=limit, window=LOGIN_WINDOW)
                wait = max(wait, key_wait)
                if event is not None:
                    events.append((key, event))
            if wait:
                transaction.set_rollback(True)
        if wait:
            raise forms.ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": math.ceil(wait / 60)},
            )
        return events

    def clean(self) -> dict[str, Any]:
        events = self._count_try()
        cleaned = super().clean()  # a wrong password raises, and the try stays counted
        with transaction.atomic():
            for key, event in events:
                throttle.forget(key, event)
        return cleaned


admin.site.login_form = ThrottledLoginForm
# The app list beside every page holds two links (Users, Groups) and took 300 px from the
# user list, which then did not fit a 1280 px screen; Home and the breadcrumbs lead there.
admin.site.enable_nav_sidebar = False

# The delivery log and blocked prefixes; the referral review queue and dashboard.
from users import admin_deliveries, admin_referrals  # noqa: E402,F401
