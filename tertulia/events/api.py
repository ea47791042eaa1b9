"""POST /api/v1/events: one event or a batch of up to 1,000, all-or-nothing."""

from typing import Literal

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Field, Router, Schema

from tertulia.core.api import json_body, request_store
from tertulia.core.errors import ApiError
from tertulia.core.pagination import ErrorOut
from tertulia.events.schema import nul_problems, validate_batch
from tertulia.events.services import events_ingest

router = Router(tags=["events"])

_EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "type", "occurred_at", "data"],
    "properties": {
        "id": {"type": "string", "maxLength": 200, "description": "Client id: the idempotency key."},
        "type": {"type": "string", "enum": [
            "category_upserted", "product_upserted", "customer_upserted", "consent_changed", "cart_updated",
            "checkout_started", "order_placed", "order_fulfilled", "order_delivered", "order_cancelled"]},
        "occurred_at": {"type": "string", "format": "date-time"},
        "data": {"type": "object", "description": "Fields of the event type; see docs/events.md."},
    },
}


class EventStatus(Schema):
    id: str
    status: Literal["created", "duplicate"]


class IngestOut(Schema):
    accepted: int = Field(..., description="Events stored by this request.")
    duplicates: int = Field(..., description="Events whose id was already stored (or repeated in the batch).")
    events: list[EventStatus]


@router.post(
    "/events",
    summary="Ingest store events",
    response={200: IngestOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 413: ErrorOut, 415: ErrorOut,
              422: ErrorOut},
    description=(
        "One event or {\"events\": [...]} (up to 1,000). All-or-nothing: if any event is invalid, nothing is "
        "stored and a 422 lists every problem with its index and field. A replayed id is stored once and "
        "counted as a duplicate."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [
                _EVENT_SCHEMA,
                {"type": "object", "required": ["events"], "properties": {
                    "events": {"type": "array", "maxItems": 1000, "items": _EVENT_SCHEMA}}},
            ]}}},
        },
    },
)
def ingest(request: HttpRequest):
    body = json_body(request)
    if isinstance(body, dict) and "events" in body:
        events = body["events"]
    elif isinstance(body, dict):
        events = [body]
    else:
        raise ApiError("invalid_body", "Send one event object or {\"events\": [...]}.", 400)
    if b"\\u0000" in request.body and isinstance(events, list) and len(events) <= settings.TERTULIA_MAX_BATCH:
        _refuse_nul(events)
    result = events_ingest(store=request_store(request), events=events, source="api")
    # The answer is built by us and matches IngestOut; validating 1,000 statuses again per request
    # costs more than storing them, so it goes out as it is (the schema still documents it).
    return HttpResponse(orjson.dumps(result.as_dict()), content_type="application/json")


def _refuse_nul(events: list) -> None:
    """Refuse NUL characters up front, with every other problem of the batch, so no database sees them."""
    problems = nul_problems(events)
    if problems:
        _, others = validate_batch(events)
        details = sorted(problems + others, key=lambda d: d.index or 0)
        invalid = len({d.index for d in details})
        raise ApiError("invalid_events", f"{invalid} of {len(events)} events are invalid; nothing was stored.",
                       422, details)
