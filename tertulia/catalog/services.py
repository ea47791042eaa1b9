"""Writes on the catalogue: categories and products upserted from events, webhooks and CSV."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from tertulia.catalog.models import Category, Product
from tertulia.core.models import Store


def categories_ensure(*, store: Store, external_ids: set[str]) -> dict[str, int]:
    """Return category ids by external id, creating placeholders for ones not seen yet.

    A product may name its category before the category's own event arrives; the placeholder
    is filled in when it does.
    """
    if not external_ids:
        return {}
    known = dict(Category.objects.for_store(store).filter(external_id__in=external_ids).values_list("external_id", "id"))
    missing = external_ids - known.keys()
    if missing:
        Category.objects.bulk_create(
            [Category(store=store, external_id=eid, name=eid) for eid in sorted(missing)], ignore_conflicts=True
        )
        known = dict(Category.objects.for_store(store).filter(external_id__in=external_ids).values_list("external_id", "id"))
    return known


def categories_upsert(*, store: Store, categories: Sequence[tuple[datetime, dict[str, Any]]]) -> None:
    """Apply category states, each with the time it was true; an older state never overwrites a newer one."""
    latest: dict[str, tuple[datetime, dict]] = {}
    for occurred_at, data in categories:
        current = latest.get(data["id"])
        if current is None or occurred_at >= current[0]:
            latest[data["id"]] = (occurred_at, data)
    ids = categories_ensure(
        store=store, external_ids=set(latest) | {d["parent_id"] for _, d in latest.values() if d.get("parent_id")}
    )
    rows = {c.external_id: c for c in Category.objects.for_store(store).filter(external_id__in=latest)}
    now = timezone.now()
    for external_id, (occurred_at, data) in latest.items():
        category = rows[external_id]
        if category.source_updated_at and occurred_at < category.source_updated_at:
            continue
        parent_id = ids.get(data["parent_id"]) if data.get("parent_id") else None
        if parent_id == category.pk or _would_cycle(store, category.pk, parent_id):
            parent_id = None
        category.name = data["name"]
        category.parent_id = parent_id
        category.url = data.get("url") or category.url
        category.source_updated_at = occurred_at
        category.updated_at = now
        category.save()


def _would_cycle(store: Store, category_id: int, parent_id: int | None) -> bool:
    seen = {category_id}
    while parent_id is not None:
        if parent_id in seen:
            return True
        seen.add(parent_id)
        parent_id = Category.objects.for_store(store).filter(pk=parent_id).values_list("parent_id", flat=True).first()
    return False


def products_upsert(*, store: Store, products: Sequence[tuple[datetime, dict[str, Any]]]) -> int:
    """Apply product states by SKU; returns how many rows changed."""
    latest: dict[str, tuple[datetime, dict]] = {}
    for occurred_at, data in products:
        current = latest.get(data["sku"])
        if current is None or occurred_at >= current[0]:
            latest[data["sku"]] = (occurred_at, data)
    category_ids = categories_ensure(
        store=store, external_ids={d["category_id"] for _, d in latest.values() if d.get("category_id")}
    )
    existing = {p.sku: p for p in Product.objects.for_store(store).filter(sku__in=latest)}
    now = timezone.now()
    to_create, to_update = [], []
    for sku, (occurred_at, data) in latest.items():
        product = existing.get(sku) or Product(store=store, sku=sku)
        if product.source_updated_at and occurred_at < product.source_updated_at:
            continue
        product.title = data["title"]
        for field in ("external_id", "description", "url", "image_url", "currency"):
            if data.get(field) is not None:
                setattr(product, field, data[field])
        if data.get("price") is not None:
            product.price = data["price"]
        if data.get("stock") is not None:
            product.stock = data["stock"]
        if data.get("category_id"):
            product.category_id = category_ids[data["category_id"]]
        product.currency = product.currency or store.currency
        product.active = data.get("active", True)
        product.source_updated_at = occurred_at
        product.updated_at = now
        (to_update if product.pk else to_create).append(product)
    Product.objects.bulk_create(to_create)
    if to_update:
        Product.objects.bulk_update(
            to_update,
            ["external_id", "title", "description", "url", "image_url", "price", "currency", "stock",
             "category", "active", "source_updated_at", "updated_at"],
            batch_size=200,
        )
    return len(to_create) + len(to_update)
