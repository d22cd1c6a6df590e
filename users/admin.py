"""Staff see every user: searchable by phone and invite code, with inviter and referrals,
and on a user's page their sessions and sign-in history, with "sign out everywhere"
(for a stolen phone's owner), on that page and for the users selected in the list. Each
sign-out is written to the admin log (LogEntry)."""

import math
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from users import throttle
from users.errors import DomainError
from users.models import Session, SignInEvent, User
from users.phones import MAX_PHONE_INPUT, normalize_phone
from users.services import sessions

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


HISTORY_SHOWN = 50  # the latest sign-in attempts on a user's page


class _ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SessionInline(_ReadOnlyInline):
    """The user's devices, live or ended, most recently used first."""

    model = Session
    verbose_name_plural = "sessions (devices)"
    fields = ("device", "network", "created_at", "last_used_at", "ended_at")
    readonly_fields = ("device", "network", "created_at", "last_used_at", "ended_at")
    ordering = ["-last_used_at", "-id"]


class SignInEventInline(_ReadOnlyInline):
    """The user's latest sign-in attempts and what came of each."""

    model = SignInEvent
    verbose_name_plural = f"sign-in history (latest {HISTORY_SHOWN})"
    fields = ("at", "outcome", "network", "device")
    readonly_fields = ("at", "outcome", "network", "device")

    def get_queryset(self, request: HttpRequest) -> QuerySet[SignInEvent]:
        queryset = super().get_queryset(request).order_by("-at", "-id")
        match = request.resolver_match
        object_id = match.kwargs.get("object_id") if match else None
        if object_id is None:
            return queryset
        latest = SignInEvent.objects.filter(user_id=unquote(object_id)).order_by("-at", "-id")
        return queryset.filter(pk__in=list(latest.values_list("pk", flat=True)[:HISTORY_SHOWN]))


@admin.register(User)
class UserAdmin(BaseUserAdmin[User]):
    add_form = UserCreationForm
    inlines = [SessionInline, SignInEventInline]
    actions = ["sign_out_everywhere"]
    change_form_template = "admin/users/user/change_form.html"
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

    def get_inline_instances(self, request: HttpRequest, obj: User | None = None) -> list[Any]:
        return super().get_inline_instances(request, obj) if obj else []

    def _sign_out(self, request: HttpRequest, user: User) -> int:
        """End every session of `user` and write it to the admin log."""
        ended = sessions.end_all_sessions(user_id=user.pk)
        self.log_change(request, user, f"Signed out everywhere: {ended} sessions ended.")
        return ended

    @admin.action(description="Sign out everywhere: end every session of the selected users")
    def sign_out_everywhere(self, request: HttpRequest, users: QuerySet[User]) -> None:
        ended = sum(self._sign_out(request, user) for user in users)
        self.message_user(request, f"{ended} sessions ended.", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        sign_out = path(
            "<path:object_id>/sign-out-everywhere/",
            self.admin_site.admin_view(self.sign_out_everywhere_view),
            name="users_user_sign_out_everywhere",
        )
        return [sign_out, *super().get_urls()]

    def sign_out_everywhere_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Asks to confirm (GET), then ends every session of the user (POST)."""
        user = self.get_object(request, unquote(object_id))
        if user is None:
            raise Http404
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        if request.method == "POST":
            ended = self._sign_out(request, user)
            self.message_user(request, f"{user.phone}: {ended} sessions ended.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:users_user_change", args=[user.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Sign out everywhere?",
            "opts": self.opts,
            "original": user,
            "live_sessions": Session.objects.filter(user=user, ended_at=None).count(),
        }
        return TemplateResponse(request, "admin/users/user/sign_out_everywhere.html", context)


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
