"""Current state of carts and orders, projected from the store's events."""

from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class CartStatus(models.TextChoices):
    OPEN = "open", "Open"
    EMPTIED = "emptied", "Emptied"
    CONVERTED = "converted", "Converted"


class Cart(StoreScoped):
    external_id = models.CharField(max_length=128)
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="carts")
    status = models.CharField(max_length=16, choices=CartStatus.choices, default=CartStatus.OPEN)
    items = models.JSONField(default=list)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, blank=True)
    recovery_url = models.URLField(max_length=2000, blank=True)
    checkout_started_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    order_external_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["store", "external_id"], name="cart_unique_external_id")]
        indexes = [models.Index(fields=["store", "status", "last_event_at"], name="cart_open_by_activity")]

    def __str__(self) -> str:
        return f"cart {self.external_id}"


class OrderStatus(models.TextChoices):
    PLACED = "placed", "Placed"
    FULFILLED = "fulfilled", "Fulfilled"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"


class Order(StoreScoped):
    """Each lifecycle moment keeps its own timestamp, so events may arrive in any order."""

    external_id = models.CharField(max_length=128)
    cart_external_id = models.CharField(max_length=128, blank=True)
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders")
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PLACED)
    items = models.JSONField(default=list)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, blank=True)
    # Codes the buyer entered at checkout (discount and referral codes), as the shop reported them.
    discount_codes = models.JSONField(default=list, blank=True)
    placed_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["store", "external_id"], name="order_unique_external_id")]
        indexes = [
            models.Index(fields=["store", "placed_at"], name="order_store_placed"),
            # Review and referral requests look for orders delivered in a window of time.
            models.Index(fields=["store", "delivered_at"], name="order_store_delivered"),
        ]

    def __str__(self) -> str:
        return f"order {self.external_id}"
