"""The referral program for the staff who run it: the review queue of flagged
activations (confirm, reject), a dashboard of the program, and a CSV export.

The queue is the Activation change list, opening on activations that raised a fraud
signal and that nobody has decided on. "Reject" undoes the referral
(users.services.referrals.reject: the referee's inviter cleared, under row locks, and
written in the admin's log); "Confirm" keeps it and takes it off the queue. The
dashboard (dashboard/) draws its charts as inline SVG (users/charts.py): nothing is
loaded from another host. The export (export/?start=...&end=...) streams its rows,
read a thousand at a time, so a year of referrals never sits in the worker's memory.
"""

import csv
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import admin, messages
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Now, TruncDate
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from users import charts
from users.models import REFERRAL_SIGNALS, Activation, User
from users.services import referrals
from users.sms import masked

DASHBOARD_DAYS = 30
TOP_REFERRERS = 10
EXPORT_CHUNK = 1000
EXPORT_COLUMNS = [
    "activated_at",
    "referrer_phone",
    "invite_code",
    "referee_phone",
    "via",
    "network",
    "signals",
    "status",
    "reviewed_at",
]


class ReviewFilter(admin.SimpleListFilter):
    """The queue by default: flagged and not decided yet."""

    title = "review"
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("flagged", "All flagged"), ("all", "All activations")]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "To review",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "all":
            return queryset
        flagged = queryset.exclude(signals=[])
        return flagged if self.value() == "flagged" else flagged.filter(status="counted")


class SignalFilter(admin.SimpleListFilter):
    title = "signal"
    parameter_name = "signal"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(signal, signal.replace("_", " ")) for signal in REFERRAL_SIGNALS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(signals__contains=[value]) if value else queryset


@admin.register(Activation)
class ActivationAdmin(admin.ModelAdmin[Activation]):
    list_display = [
        "activated_at",
        "referrer_phone",
        "code",
        "referee_phone",
        "via",
        "network",
        "signal_list",
        "status",
    ]
    list_filter = [ReviewFilter, SignalFilter, "status", "via", "activated_at"]
    list_select_related = ["referrer", "referee"]
    search_fields = ["code", "referrer__phone", "referee__phone", "network"]
    ordering = ["-activated_at", "-id"]
    show_full_result_count = False
    actions = ["confirm", "reject"]
    change_list_template = "admin/users/activation/change_list.html"
    fields = readonly_fields = (
        "referrer",
        "code",
        "referee",
        "activated_at",
        "via",
        "network",
        "signals",
        "dormant_checked",
        "status",
        "reviewed_at",
        "reviewed_by",
    )

    @admin.display(description="referrer", ordering="referrer__phone")
    def referrer_phone(self, obj: Activation) -> str:
        return obj.referrer.phone if obj.referrer else "(deleted)"

    @admin.display(description="referee", ordering="referee__phone")
    def referee_phone(self, obj: Activation) -> str:
        return obj.referee.phone

    @admin.display(description="signals")
    def signal_list(self, obj: Activation) -> str:
        return ", ".join(signal.replace("_", " ") for signal in obj.signals) or "-"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_review_permission(self, request: HttpRequest) -> bool:
        """Deciding changes a referral: staff who may change users."""
        return request.user.has_perm("users.change_user")

    def _decide(self, request: HttpRequest, chosen: QuerySet[Activation], decide: Any) -> None:
        done = already = 0
        staff_id = request.user.pk
        for activation_id in chosen.values_list("pk", flat=True):
            try:
                decide(activation_id=activation_id, staff_id=staff_id)
                done += 1
            except referrals.AlreadyDecided:
                already += 1
        self.message_user(request, f"{done} done.", messages.SUCCESS)
        if already:
            self.message_user(request, f"{already} rejected already.", messages.WARNING)

    @admin.action(description="Confirm: keep the referral, off the queue", permissions=["review"])
    def confirm(self, request: HttpRequest, chosen: QuerySet[Activation]) -> None:
        self._decide(request, chosen, referrals.confirm)

    @admin.action(description="Reject: undo the referral", permissions=["review"])
    def reject(self, request: HttpRequest, chosen: QuerySet[Activation]) -> None:
        self._decide(request, chosen, referrals.reject)

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="users_activation_dashboard",
            ),
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="users_activation_export",
            ),
        ]
        return own + super().get_urls()

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Referral program",
            "opts": self.model._meta,
            **dashboard(),
            "export_url": reverse("admin:users_activation_export"),
            "queue_url": reverse("admin:users_activation_changelist"),
            "today": timezone.now().date(),
            "month_ago": timezone.now().date() - timedelta(days=DASHBOARD_DAYS),
        }
        return TemplateResponse(request, "admin/users/activation/dashboard.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        try:
            start = date.fromisoformat(request.GET.get("start", ""))
            end = date.fromisoformat(request.GET.get("end", ""))
        except ValueError:
            return HttpResponse("start and end: dates as YYYY-MM-DD", status=400)
        response = StreamingHttpResponse(export_rows(start, end), content_type="text/csv")
        name = f"referrals-{start:%Y%m%d}-{end:%Y%m%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


def _day_range(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in UTC."""
    utc = timezone.get_current_timezone()
    return (
        datetime.combine(start, time.min, tzinfo=utc),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=utc),
    )


class _Line:
    """A file-like object that hands back what csv.writer writes to it."""

    def write(self, value: str) -> str:
        return value


def _chunk(start: datetime, end: datetime, after: tuple[datetime, int] | None) -> list[Any]:
    """The next EXPORT_CHUNK activations in the range, oldest first, keyset after `after`."""
    rows = Activation.objects.filter(activated_at__gte=start, activated_at__lt=end)
    if after is not None:
        rows = rows.filter(Q(activated_at__gt=after[0]) | Q(activated_at=after[0], pk__gt=after[1]))
    try:
        return list(
            rows.order_by("activated_at", "pk").values_list(
                "pk",
                "activated_at",
                "referrer__phone",
                "code",
                "referee__phone",
                "via",
                "network",
                "signals",
                "status",
                "reviewed_at",
            )[:EXPORT_CHUNK]
        )
    finally:
        connection.close()  # this thread's, back to the pool between chunks


async def export_rows(start_day: date, end_day: date) -> AsyncIterator[str]:
    """The CSV, a header and then one line per activation, read chunk by chunk."""
    writer = csv.writer(_Line())
    yield writer.writerow(EXPORT_COLUMNS)
    start, end = _day_range(start_day, end_day)
    after = None
    read = sync_to_async(_chunk, thread_sensitive=False)
    while rows := await read(start, end, after):
        for _pk, at, referrer, code, referee, via, network, signals, status, reviewed in rows:
            yield writer.writerow(
                [
                    at.isoformat(),
                    referrer or "",
                    code,
                    referee,
                    via,
                    network,
                    " ".join(signals),
                    status,
                    reviewed.isoformat() if reviewed else "",
                ]
            )
        after = (rows[-1][1], rows[-1][0])


def _of(per_day: dict[date, dict[str, Any]], day: date, key: str) -> int:
    return int(per_day.get(day, {}).get(key, 0))


def dashboard() -> dict[str, Any]:
    """The dashboard's figures and charts over the last DASHBOARD_DAYS days."""
    since = Now() - timedelta(days=DASHBOARD_DAYS)
    today = timezone.now().date()
    days = [today - timedelta(days=n) for n in range(DASHBOARD_DAYS - 1, -1, -1)]
    joined_per_day = {
        row["day"]: (row["n"], row["invited"])
        for row in User.objects.filter(date_joined__gte=since)
        .annotate(day=TruncDate("date_joined"))
        .values("day")
        .annotate(n=Count("id"), invited=Count("id", filter=Q(invited_by__isnull=False)))
    }
    sign_ups = {day: n for day, (n, _) in joined_per_day.items()}
    invited_per_day = {day: invited for day, (_, invited) in joined_per_day.items()}
    counted = Activation.objects.exclude(status="rejected")
    per_day: dict[date, dict[str, Any]] = {
        row["day"]: dict(row)
        for row in Activation.objects.filter(activated_at__gte=since)
        .annotate(day=TruncDate("activated_at"))
        .values("day")
        .annotate(
            activations=Count("id", filter=~Q(status="rejected")),
            flagged=Count("id", filter=~Q(signals=[])),
        )
    }
    labels = [f"{day:%d.%m}" for day in days]
    per_day_chart = charts.lines(
        f"Sign-ups and activations per day, last {DASHBOARD_DAYS} days (UTC)",
        labels,
        [
            charts.Series("sign-ups", [sign_ups.get(day, 0) for day in days]),
            charts.Series(
                "activations", [per_day.get(day, {}).get("activations", 0) for day in days]
            ),
            charts.Series("flagged", [per_day.get(day, {}).get("flagged", 0) for day in days]),
        ],
    )
    joined = sum(sign_ups.values())
    invited = sum(invited_per_day.values())
    conversion_chart = charts.lines(
        "Conversion: sign-ups who joined through an invite code, % per day",
        labels,
        [
            charts.Series(
                "% of sign-ups invited",
                [
                    round(100 * invited_per_day.get(day, 0) / sign_ups[day])
                    if sign_ups.get(day)
                    else 0
                    for day in days
                ],
            )
        ],
    )
    users = User.objects.count()
    referrers = counted.values("referrer").distinct().count()
    top: list[dict[str, Any]] = [
        dict(row)
        for row in Activation.objects.filter(referrer__isnull=False)
        .values("referrer", "referrer__phone", "referrer__invite_code")
        .annotate(
            activations=Count("id", filter=~Q(status="rejected")),
            flagged=Count("id", filter=~Q(signals=[])),
            rejected=Count("id", filter=Q(status="rejected")),
            total=Count("id"),
        )
        .order_by("-activations", "referrer")[:TOP_REFERRERS]
    ]
    for row in top:
        row["flagged_share"] = round(100 * row["flagged"] / row["total"]) if row["total"] else 0
        row["masked_phone"] = masked(row["referrer__phone"])
    flagged_by_signal = [
        (signal.replace("_", " "), counted.filter(signals__contains=[signal]).count())
        for signal in REFERRAL_SIGNALS
    ]
    return {
        "per_day_chart": per_day_chart,
        "conversion_chart": conversion_chart,
        "sign_ups": joined,
        "invited_sign_ups": invited,
        "invited_share": round(100 * invited / joined) if joined else 0,
        "users": users,
        "referrers": referrers,
        "referrer_share": round(100 * referrers / users) if users else 0,
        "to_review": counted.filter(status="counted").exclude(signals=[]).count(),
        "flagged_by_signal": flagged_by_signal,
        "top": top,
    }
