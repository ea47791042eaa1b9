"""The store's catalogue: a category tree and products, kept current by events and webhooks."""

from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class Category(StoreScoped):
    external_id = models.CharField(max_length=128)
    name = models.CharField(max_length=200)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    url = models.URLField(max_length=1000, blank=True)
    source_updated_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        verbose_name_plural = "categories"
        constraints = [models.UniqueConstraint(fields=["store", "external_id"], name="category_unique_external_id")]

    def __str__(self) -> str:
        return self.name


class Product(StoreScoped):
    sku = models.CharField(max_length=128)
    external_id = models.CharField(max_length=128, blank=True)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    url = models.URLField(max_length=1000, blank=True)
    image_url = models.URLField(max_length=1000, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    stock = models.IntegerField(null=True, blank=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products")
    active = models.BooleanField(default=True)
    source_updated_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "sku"], name="product_unique_sku")]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.sku} {self.title}"
