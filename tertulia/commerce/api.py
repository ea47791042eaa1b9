"""GET /api/v1/carts and /api/v1/orders: current commerce state, a page at a time."""

from datetime import datetime
from decimal import Decimal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from tertulia.commerce.models import CartStatus, OrderStatus
from tertulia.commerce.selectors import carts_list, orders_list
from tertulia.core.api import request_store
from tertulia.core.pagination import MAX_ID, READ_ERRORS, PageParams, page_fetch

router = Router(tags=["commerce"])


class LineItem(Schema):
    # Defaults because lines mapped from shop webhooks may lack fields native events require.
    sku: str | None = None
    quantity: int | None = None
    price: Decimal | None = Field(None, description="Unit price as sent by the shop.")
    title: str | None = None


class CartOut(Schema):
    id: int
    external_id: str = Field(..., description="The cart's id in the shop.")
    customer_id: int | None
    status: CartStatus
    items: list[LineItem]
    total: Decimal
    currency: str
    recovery_url: str
    checkout_started_at: datetime | None
    last_event_at: datetime | None = Field(..., description="When the newest event applied to the cart happened.")
    order_external_id: str = Field(..., description="The order placed from this cart, once converted.")
    created_at: datetime
    updated_at: datetime


class OrderOut(Schema):
    id: int
    external_id: str = Field(..., description="The order's id in the shop.")
    cart_external_id: str
    customer_id: int | None
    status: OrderStatus
    items: list[LineItem]
    total: Decimal
    currency: str
    placed_at: datetime | None
    fulfilled_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    last_event_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CartPage(Schema):
    data: list[CartOut]
    next_cursor: str | None


class OrderPage(Schema):
    data: list[OrderOut]
    next_cursor: str | None


class CartFilters(PageParams):
    status: CartStatus | None = None
    customer: int | None = Field(None, ge=1, le=MAX_ID, description="Customer id.")


class OrderFilters(PageParams):
    status: OrderStatus | None = None
    customer: int | None = Field(None, ge=1, le=MAX_ID, description="Customer id.")


@router.get("/carts", response={200: CartPage, **READ_ERRORS}, summary="List carts")
def list_carts(request: HttpRequest, filters: Query[CartFilters]):
    """Carts in id order; `status=open` gives the carts a recovery journey may act on."""
    carts = carts_list(store=request_store(request), status=filters.status, customer_id=filters.customer)
    return page_fetch(carts, cursor=filters.cursor, limit=filters.limit)


@router.get("/orders", response={200: OrderPage, **READ_ERRORS}, summary="List orders")
def list_orders(request: HttpRequest, filters: Query[OrderFilters]):
    """Orders in id order. Each lifecycle moment keeps its own timestamp."""
    orders = orders_list(store=request_store(request), status=filters.status, customer_id=filters.customer)
    return page_fetch(orders, cursor=filters.cursor, limit=filters.limit)
