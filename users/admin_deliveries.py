"""Staff see what became of every SMS (the delivery log) and the prefixes blocked for
SMS pumping, which they can lift or pin. Phones are shown masked."""

from datetime import timedelta
from typing import Any, cast

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.db.models.functions import Now, TruncHour
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from users import charts
from users.models import BlockedPrefix, Delivery
from users.sms import masked


def hourly_chart() -> str:
    """Sends, delivered and verified per hour over the last day, as an SVG."""
    rows = (
        Delivery.objects.filter(created_at__gt=Now() - timedelta(hours=24))
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(sends=Count("id"), delivered=Count("delivered_at"), verified=Count("verified_at"))
    )
    by_hour = cast(dict[Any, dict[str, int]], {row["hour"]: row for row in rows})
    last = timezone.now().replace(minute=0, second=0, microsecond=0)
    hours = [last - timedelta(hours=n) for n in range(23, -1, -1)]
    series = [
        charts.Series(name, [by_hour.get(hour, {}).get(key, 0) for hour in hours])
        for name, key in (("sent", "sends"), ("delivered", "delivered"), ("verified", "verified"))
    ]
    labels = [f"{hour:%H}:00" for hour in hours]
    return charts.lines("SMS per hour, last 24 hours (UTC)", labels, series)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin[Delivery]):
    list_display = [
        "created_at",
        "masked_phone",
        "country",
        "prefix",
        "provider",
        "status",
        "error_code",
        "verified",
    ]
    list_filter = ["status", "country", "provider", "created_at"]
    date_hierarchy = "created_at"
    search_fields = ["phone", "message_id", "prefix"]  # the whole number finds its SMS
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    change_list_template = "admin/users/delivery/change_list.html"
    fields = readonly_fields = (
        "masked_phone",
        "country",
        "prefix",
        "provider",
        "message_id",
        "status",
        "error_code",
        "created_at",
        "sent_at",
        "delivered_at",
        "failed_at",
        "verified_at",
    )

    @admin.display(description="phone")
    def masked_phone(self, obj: Delivery) -> str:
        return masked(obj.phone)

    @admin.display(description="verified", boolean=True)
    def verified(self, obj: Delivery) -> bool:
        return obj.verified_at is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        extra = {**(extra_context or {}), "chart": hourly_chart()}
        response = super().changelist_view(request, extra_context=extra)
        assert isinstance(response, TemplateResponse)
        return response


@admin.register(BlockedPrefix)
class BlockedPrefixAdmin(admin.ModelAdmin[BlockedPrefix]):
    list_display = ["prefix", "state", "blocked_at", "until", "sends", "verified"]
    search_fields = ["prefix"]
    ordering = ["-blocked_at"]
    actions = ["lift", "pin"]
    fields = ["prefix", "until", "blocked_at", "sends", "verified"]
    readonly_fields = ["blocked_at", "sends", "verified"]

    @admin.display(description="state")
    def state(self, obj: BlockedPrefix) -> str:
        if obj.until is None:
            return "pinned"
        return "blocked" if obj.until > timezone.now() else "ended"

    def _log(self, request: HttpRequest, blocks: QuerySet[BlockedPrefix], what: str) -> None:
        for block in blocks:
            self.log_change(request, block, what)

    @admin.action(description="Lift: new numbers in the prefix get codes again")
    def lift(self, request: HttpRequest, blocks: QuerySet[BlockedPrefix]) -> None:
        # Ended now: the pumping rule counts afresh from this moment (users_pumping_check).
        count = blocks.update(until=Now())
        self._log(request, blocks, "Lifted the block.")
        self.message_user(request, f"{count} lifted.", messages.SUCCESS)

    @admin.action(description="Pin: keep blocked until lifted")
    def pin(self, request: HttpRequest, blocks: QuerySet[BlockedPrefix]) -> None:
        count = blocks.update(until=None)
        self._log(request, blocks, "Pinned the block.")
        self.message_user(request, f"{count} pinned.", messages.SUCCESS)
