"""Reads on carts and orders."""

from collections.abc import Sequence

from django.db.models import QuerySet

from tertulia.commerce.models import Cart, Order
from tertulia.core.models import Store


def _narrowed(rows: QuerySet, *, status: str | None, customer_id: int | None,
              customer_ids: Sequence[int] | None) -> QuerySet:
    """Carts and orders are filtered alike: by status and by the person (or people) they belong to."""
    if status is not None:
        rows = rows.filter(status=status)
    if customer_id is not None:
        rows = rows.filter(customer_id=customer_id)
    if customer_ids is not None:
        rows = rows.filter(customer_id__in=customer_ids)
    return rows


def carts_list(*, store: Store, status: str | None = None, customer_id: int | None = None,
               customer_ids: Sequence[int] | None = None) -> QuerySet[Cart]:
    return _narrowed(Cart.objects.for_store(store), status=status, customer_id=customer_id, customer_ids=customer_ids)


def orders_list(*, store: Store, status: str | None = None, customer_id: int | None = None,
                customer_ids: Sequence[int] | None = None) -> QuerySet[Order]:
    return _narrowed(Order.objects.for_store(store), status=status, customer_id=customer_id, customer_ids=customer_ids)
