"""Reads on carts and orders."""

from collections.abc import Sequence

from django.db.models import QuerySet

from tertulia.commerce.models import Cart, Order
from tertulia.core.models import Store


def carts_list(*, store: Store, status: str | None = None, customer_id: int | None = None,
               customer_ids: Sequence[int] | None = None) -> QuerySet[Cart]:
    carts = Cart.objects.for_store(store)
    if status is not None:
        carts = carts.filter(status=status)
    if customer_id is not None:
        carts = carts.filter(customer_id=customer_id)
    if customer_ids is not None:
        carts = carts.filter(customer_id__in=customer_ids)
    return carts


def orders_list(*, store: Store, status: str | None = None, customer_id: int | None = None,
                customer_ids: Sequence[int] | None = None) -> QuerySet[Order]:
    orders = Order.objects.for_store(store)
    if status is not None:
        orders = orders.filter(status=status)
    if customer_id is not None:
        orders = orders.filter(customer_id=customer_id)
    if customer_ids is not None:
        orders = orders.filter(customer_id__in=customer_ids)
    return orders
