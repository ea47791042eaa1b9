"""GET /api/v1/products: the store's catalogue, a page at a time."""

from datetime import datetime
from decimal import Decimal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from tertulia.catalog.selectors import products_list
from tertulia.core.api import request_store
from tertulia.core.pagination import READ_ERRORS, PageParams, page_fetch

router = Router(tags=["catalogue"])


class CategoryRef(Schema):
    id: int
    external_id: str = Field(..., description="The category's id in the shop.")
    name: str


class ProductOut(Schema):
    id: int
    sku: str
    external_id: str
    title: str
    description: str
    url: str
    image_url: str
    price: Decimal | None
    currency: str
    stock: int | None
    active: bool
    category: CategoryRef | None
    source_updated_at: datetime | None = Field(..., description="When the shop last changed the product.")
    updated_at: datetime


class ProductPage(Schema):
    data: list[ProductOut]
    next_cursor: str | None


class ProductFilters(PageParams):
    category: str | None = Field(None, max_length=128, description="External id of the category.")
    sku: str | None = Field(None, max_length=128)
    active: bool | None = None


@router.get("/products", response={200: ProductPage, **READ_ERRORS}, summary="List products")
def list_products(request: HttpRequest, filters: Query[ProductFilters]):
    """Products in id order. Filters combine with AND."""
    products = products_list(store=request_store(request), category=filters.category, sku=filters.sku,
                             active=filters.active)
    return page_fetch(products, cursor=filters.cursor, limit=filters.limit)
