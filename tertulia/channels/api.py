"""GET /api/v1/deliveries: every message sent (or waiting, skipped, failed), a page at a time."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from tertulia.channels.models import DeliveryStatus
from tertulia.core.api import request_store
from tertulia.core.pagination import MAX_ID, READ_ERRORS, PageParams, page_fetch
from tertulia.customers.models import Channel
from tertulia.journeys.models import JourneyKey
from tertulia.journeys.selectors import deliveries_list

router = Router(tags=["deliveries"])


class DeliveryOut(Schema):
    id: int
    customer_id: int | None
    channel: str
    journey_key: str = Field(..., description="Empty for messages outside journeys.")
    step_key: str
    variant: str
    enrollment_id: int | None
    status: DeliveryStatus
    due_at: datetime
    attempts: int
    reason: str = Field(..., description="Why it was postponed, skipped or failed (quiet_hours, no_consent...).")
    detail: str
    language: str
    to_address: str
    subject: str
    provider: str
    provider_message_id: str
    provider_status: str
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    created_at: datetime
    updated_at: datetime


class DeliveryPage(Schema):
    data: list[DeliveryOut]
    next_cursor: str | None


class DeliveryFilters(PageParams):
    customer: int | None = Field(None, ge=1, le=MAX_ID, description="Customer id.")
    journey: JourneyKey | None = None
    status: DeliveryStatus | None = None
    channel: Channel | None = None


@router.get("/deliveries", response={200: DeliveryPage, **READ_ERRORS}, summary="List deliveries")
def list_deliveries(request: HttpRequest, filters: Query[DeliveryFilters]):
    """Messages in id order; filter by customer, journey, status and channel."""
    deliveries = deliveries_list(store=request_store(request), customer_id=filters.customer,
                                 journey_key=filters.journey, status=filters.status, channel=filters.channel)
    return page_fetch(deliveries, cursor=filters.cursor, limit=filters.limit)
