"""Writes of listening: the store's tracked terms."""

from django.db import transaction

from tertulia.catalog.models import Product
from tertulia.core.models import Store
from tertulia.listening.matching import KINDS, tokens
from tertulia.listening.models import TermKind, TrackedTerm

MAX_TERM = 200


def tracked_term_add(*, store: Store, term: str, kind: str = TermKind.KEYWORD, exclude: bool = False) -> TrackedTerm:
    """Track one term (idempotent). A term with no word left after normalising is refused."""
    term = term.strip()
    if kind not in KINDS:
        raise ValueError(f"Unknown term kind {kind!r}.")
    if not term or len(term) > MAX_TERM or not tokens(term):
        raise ValueError("A term needs at least one letter or digit and at most 200 characters.")
    row, _ = TrackedTerm.objects.get_or_create(store=store, kind=kind, term=term, exclude=exclude)
    return row


def tracked_terms_sync_catalogue(*, store: Store) -> dict[str, int]:
    """Product titles and SKUs of the store's active products become terms; terms of products that
    went inactive or changed are removed. Returns counts of created and deleted rows."""
    wanted: dict[tuple[str, str], int] = {}
    for product_id, sku, title in Product.objects.for_store(store).filter(active=True).values_list("id", "sku", "title"):
        if title.strip() and tokens(title):
            wanted.setdefault((TermKind.PRODUCT, title.strip()[:MAX_TERM]), product_id)
        if sku.strip() and tokens(sku):
            wanted.setdefault((TermKind.SKU, sku.strip()[:MAX_TERM]), product_id)
    with transaction.atomic():
        existing = {
            (row.kind, row.term): row
            for row in TrackedTerm.objects.for_store(store).filter(product__isnull=False, exclude=False)
        }
        stale = [row.pk for key, row in existing.items() if wanted.get(key) != row.product_id]
        TrackedTerm.objects.for_store(store).filter(pk__in=stale).delete()
        # A store-entered term with the same text stays as it is; the catalogue only adds what is missing.
        taken = set(TrackedTerm.objects.for_store(store).filter(exclude=False).values_list("kind", "term"))
        new = [
            TrackedTerm(store=store, kind=kind, term=term, product_id=product_id)
            for (kind, term), product_id in wanted.items() if (kind, term) not in taken
        ]
        TrackedTerm.objects.bulk_create(new, batch_size=500)
    return {"created": len(new), "deleted": len(stale)}
