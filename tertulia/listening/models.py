"""What a store listens for. Connectors, mentions and the inbox (issue #5) come later."""

from django.db import models
from django.utils.timezone import now

from tertulia.core.models import StoreScoped


class TermKind(models.TextChoices):
    BRAND = "brand", "Brand"
    PRODUCT = "product", "Product"
    SKU = "sku", "SKU"
    HASHTAG = "hashtag", "Hashtag"
    COMPETITOR = "competitor", "Competitor"
    KEYWORD = "keyword", "Keyword"


class TrackedTerm(StoreScoped):
    """One term a store listens for; with exclude=True a post containing it is not a mention at all.

    Product and SKU terms with a product are kept in step with the catalogue by
    `services.tracked_terms_sync_catalogue`; the rest are entered by the store.
    """

    term = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=TermKind.choices, default=TermKind.KEYWORD)
    exclude = models.BooleanField(default=False)
    product = models.ForeignKey("catalog.Product", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "kind", "term", "exclude"], name="trackedterm_unique"),
        ]

    def __str__(self) -> str:
        return f"{'-' if self.exclude else ''}{self.kind}:{self.term}"
