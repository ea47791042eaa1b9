"""Django admin for the event log and webhook deliveries: read-only, because the log is append-only."""

from django.contrib import admin

from tertulia.core.admin import ReadOnlyAdmin
from tertulia.events.models import Event, WebhookDelivery


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["client_id", "type", "occurred_at", "received_at", "source", "customer", "store"]
    list_filter = ["type", "source", "store"]
    search_fields = ["client_id"]
    date_hierarchy = "received_at"
    list_select_related = ["customer", "store"]
    show_full_result_count = False  # the log grows large; COUNT(*) on every page would be slow


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["provider", "topic", "delivery_id", "events_created", "received_at", "store"]
    list_filter = ["provider", "topic", "store"]
    search_fields = ["delivery_id", "topic"]
    date_hierarchy = "received_at"
    list_select_related = ["store"]
