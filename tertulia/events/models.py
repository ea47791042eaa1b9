"""The append-only log of store events, and the record of webhook deliveries received."""

from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class EventType(models.TextChoices):
    CATEGORY_UPSERTED = "category_upserted"
    PRODUCT_UPSERTED = "product_upserted"
    CUSTOMER_UPSERTED = "customer_upserted"
    CONSENT_CHANGED = "consent_changed"
    CART_UPDATED = "cart_updated"
    CHECKOUT_STARTED = "checkout_started"
    ORDER_PLACED = "order_placed"
    ORDER_FULFILLED = "order_fulfilled"
    ORDER_DELIVERED = "order_delivered"
    ORDER_CANCELLED = "order_cancelled"


class Event(StoreScoped):
    """One store event as received. Never updated; `client_id` is the idempotency key."""

    client_id = models.CharField(max_length=200)
    type = models.CharField(max_length=32, choices=EventType.choices)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=now)
    source = models.CharField(max_length=32, default="api")
    payload = models.JSONField()
    # Filled at projection time so a person's timeline is one indexed query.
    customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "client_id"], name="event_unique_client_id")]
        indexes = [
            models.Index(fields=["store", "received_at"], name="event_store_received"),
            models.Index(fields=["customer", "occurred_at"], name="event_customer_timeline"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.client_id}"


class WebhookDelivery(StoreScoped):
    """A webhook delivery accepted from a shop platform, kept to refuse replays of the same delivery id."""

    provider = models.CharField(max_length=32)
    delivery_id = models.CharField(max_length=200)
    topic = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=now)
    events_created = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["store", "provider", "delivery_id"], name="webhook_delivery_unique")
        ]
