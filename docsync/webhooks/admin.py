"""The webhook tables in the admin: receivers to edit, deliveries to watch and retry."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from ..models import DeliveryStatus, WebhookDelivery, WebhookReceiver
from .outbox import retry_now


@admin.register(WebhookReceiver)
class WebhookReceiverAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "url", "events", "active", "pending", "failed")
    list_filter = ("active",)
    search_fields = ("name", "url")

    def _count(self, receiver: WebhookReceiver, status: str) -> int:
        rows = WebhookDelivery.objects.using(receiver._state.db)
        return rows.filter(receiver=f"admin:{receiver.pk}", status=status).count()

    @admin.display(description="pending")
    def pending(self, receiver: WebhookReceiver) -> int:
        return self._count(receiver, DeliveryStatus.PENDING)

    @admin.display(description="failed")
    def failed(self, receiver: WebhookReceiver) -> int:
        return self._count(receiver, DeliveryStatus.FAILED)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: what went out, what waits, what failed and why; "retry now"."""

    list_display = (
        "event_type",
        "doc_id",
        "receiver",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "short_error",
        "created_at",
    )
    list_filter = ("status", "event_type", "receiver")
    search_fields = ("event_id", "doc_id", "receiver")
    ordering = ("-created_at", "-pk")
    actions = ("retry",)
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    @admin.display(description="last error")
    def short_error(self, delivery: WebhookDelivery) -> str:
        error = delivery.last_error
        return error if len(error) <= 80 else error[:77] + "..."

    def has_retry_permission(self, request: Any) -> bool:
        return bool(request.user.has_perm("docsync.change_webhookdelivery"))

    @admin.action(description="Retry the selected deliveries now", permissions=["retry"])
    def retry(self, request: Any, queryset: Any) -> None:
        count = retry_now(queryset.db, list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} delivery(ies) will be sent again at once.")
