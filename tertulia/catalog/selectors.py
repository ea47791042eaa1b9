"""Reads on the catalogue."""

from django.db.models import QuerySet

from tertulia.catalog.models import Product
from tertulia.core.models import Store


def products_list(*, store: Store, category: str | None = None, sku: str | None = None,
                  active: bool | None = None) -> QuerySet[Product]:
    """The store's products, optionally narrowed to one category (by its external id), one sku or activity."""
    products = Product.objects.for_store(store).select_related("category")
    if category is not None:
        products = products.filter(category__external_id=category)
    if sku is not None:
        products = products.filter(sku=sku)
    if active is not None:
        products = products.filter(active=active)
    return products
