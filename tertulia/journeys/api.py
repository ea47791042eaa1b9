"""GET/PATCH /api/v1/journeys, one journey, and its figures (GET /api/v1/journeys/{key}/stats)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.http import Http404, HttpRequest
from ninja import Field, Path, Query, Router, Schema
from pydantic import ConfigDict

from tertulia.core.api import json_body, request_store
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.pagination import READ_ERRORS, ErrorOut
from tertulia.journeys import selectors
from tertulia.journeys.definitions import journey_update, journeys_ensure_defaults
from tertulia.journeys.models import Journey, JourneyKey

router = Router(tags=["journeys"])

# --- the definition, as typed schemas (the engine's journeys.definitions holds the rules) -------------

class MessageTemplate(Schema):
    subject: str | None = Field(None, description="E-mail only.")
    text: str | None = Field(None, description="Plain text: the SMS, the DM, the e-mail's text part.")
    html: str | None = Field(None, description="E-mail only; autoescaped.")


class Discount(Schema):
    percent: int = Field(..., description="Percentage off of the single-use code the step carries.")
    valid_seconds: int = Field(..., description="How long the code is valid after it is sent.")


class Step(Schema):
    key: str
    channel: str = Field(..., description="email, sms or social_dm.")
    delay_seconds: int = Field(..., description="Seconds after the enrollment's trigger moment.")
    templates: dict[str, MessageTemplate] = Field(default_factory=dict, description="Per language: es, en.")
    discount: Discount | None = None


class VariantStep(Schema):
    delay_seconds: int | None = None
    channel: str | None = None
    templates: dict[str, MessageTemplate] | None = None


class Variant(Schema):
    key: str
    weight: int | float = 1
    steps: dict[str, VariantStep] = Field(default_factory=dict, description="Overrides per step key.")


class Trigger(Schema):
    model_config = ConfigDict(extra="allow")

    delay_seconds: int | None = Field(None, description="Inactivity (or waiting time) before the journey starts.")
    lookback_seconds: int | None = None
    category_delays: dict[str, int] | None = Field(None, description="Review request: delay per category slug.")
    min_rating: int | None = None
    cooldown_seconds: int | None = Field(None, description="Referral request and purchase intent: at most one "
                                                           "enrollment per person in this time.")
    after_last_order_seconds: int | None = None
    double_opt_in: bool | None = None


class AttributionRule(Schema):
    window_seconds: int = Field(432000, description="An order this long after a touch is credited to it.")
    basis: str = Field("click", description="click, or open (an open counts as a touch).")


class Definition(Schema):
    model_config = ConfigDict(extra="allow")

    trigger: Trigger = Field(default_factory=Trigger)
    steps: list[Step] = Field(default_factory=list)
    holdout_share: float = Field(0.0, description="Share of enrollments that get nothing, to measure uplift.")
    variants: list[Variant] = Field(default_factory=list)
    attribution: AttributionRule = Field(default_factory=AttributionRule)
    frequency_exempt: bool = False


class JourneyOut(Schema):
    key: JourneyKey
    enabled: bool
    version: int = Field(..., description="Grows by one with every accepted edit.")
    definition: Definition
    updated_at: datetime


class JourneyList(Schema):
    data: list[JourneyOut]


class JourneyPatch(Schema):
    """Only the fields sent change; `steps` and `variants` are replaced as a whole."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    trigger: Trigger | None = None
    steps: list[Step] | None = None
    holdout_share: float | None = Field(None, ge=0, le=1)
    variants: list[Variant] | None = None
    attribution: AttributionRule | None = None
    frequency_exempt: bool | None = None


# --- stats ------------------------------------------------------------------------------------------

class MessageFiguresOut(Schema):
    scheduled: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    failed: int
    skipped: int
    cancelled: int


class BreakdownOut(Schema):
    key: str = Field(..., description="The step key, channel or variant ('' = none).")
    messages: MessageFiguresOut
    attributed_orders: int
    revenue: Decimal


class DelayBucketOut(Schema):
    variant: str
    delay_seconds: int | None = Field(..., description="First step's delay under this variant (as defined now).")
    enrollments: int
    conversions: int
    recovery_rate: float | None
    attributed_orders: int
    revenue: Decimal


class UpliftOut(Schema):
    status: str = Field(..., description="ok, or why there is no estimate: no_enrollments, no_treated, no_holdout.")
    treated: int
    treated_conversions: int
    holdout: int
    holdout_conversions: int
    treated_rate: float | None
    holdout_rate: float | None
    difference: float | None = Field(..., description="treated_rate - holdout_rate.")
    ci_low: float | None
    ci_high: float | None
    confidence: float
    method: str = Field(..., description="newcombe_hybrid_score (Newcombe 1998, method 10).")
    significant: bool = Field(..., description="The interval leaves out zero.")


class JourneyStatsOut(Schema):
    key: str
    enabled: bool
    version: int
    currency: str
    since: datetime | None
    until: datetime | None
    enrollments: int
    treated: int
    holdout: int
    conversions: int = Field(..., description="Enrollments (treated and holdout) followed by an order within the window.")
    recovery_rate: float | None = Field(..., description="Conversions of the treated / treated enrollments.")
    conversion_revenue: Decimal = Field(..., description="Total of the treated enrollments' converting orders.")
    messages: MessageFiguresOut
    attributed_orders: int
    recovered_revenue: Decimal = Field(..., description="Revenue of the orders credited to this journey (last touch).")
    uplift: UpliftOut
    by_step: list[BreakdownOut]
    by_channel: list[BreakdownOut]
    by_variant: list[BreakdownOut]
    by_delay: list[DelayBucketOut]


class StatsFilters(Schema):
    since: datetime | None = Field(None, description="Enrollments, messages and orders from this moment.")
    until: datetime | None = Field(None, description="... and before this one.")


def stats_payload(stats: selectors.JourneyStats) -> dict[str, Any]:
    def messages(figures: selectors.MessageFigures) -> dict[str, int]:
        return {name: getattr(figures, name) for name in selectors.MessageFigures.__slots__}

    def breakdown(rows: list[selectors.Breakdown]) -> list[dict[str, Any]]:
        return [{"key": b.key, "messages": messages(b.messages), "attributed_orders": b.attributed_orders,
                 "revenue": b.revenue} for b in rows]

    uplift = stats.uplift
    assert uplift is not None
    return {
        "key": stats.key, "enabled": stats.enabled, "version": stats.version, "currency": stats.currency,
        "since": stats.since, "until": stats.until, "enrollments": stats.enrollments, "treated": stats.treated,
        "holdout": stats.holdout, "conversions": stats.conversions, "recovery_rate": stats.recovery_rate,
        "conversion_revenue": stats.conversion_revenue, "messages": messages(stats.messages),
        "attributed_orders": stats.attributed_orders, "recovered_revenue": stats.recovered_revenue,
        "uplift": {
            "status": uplift.status, "treated": uplift.treated, "treated_conversions": uplift.treated_conversions,
            "holdout": uplift.holdout, "holdout_conversions": uplift.holdout_conversions,
            "treated_rate": uplift.treated_rate, "holdout_rate": uplift.holdout_rate,
            "difference": uplift.difference, "ci_low": uplift.ci_low, "ci_high": uplift.ci_high,
            "confidence": uplift.confidence, "method": uplift.method, "significant": uplift.significant,
        },
        "by_step": breakdown(stats.by_step), "by_channel": breakdown(stats.by_channel),
        "by_variant": breakdown(stats.by_variant),
        "by_delay": [{"variant": b.variant, "delay_seconds": b.delay_seconds, "enrollments": b.enrollments,
                      "conversions": b.conversions, "recovery_rate": b.rate, "attributed_orders": b.attributed_orders,
                      "revenue": b.revenue} for b in stats.by_delay],
    }


# --- editing ----------------------------------------------------------------------------------------

def _json_schema_inline(model: type[Schema]) -> dict[str, Any]:
    """The model's JSON schema with its $defs written in place (they would not resolve inside OpenAPI)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node and node["$ref"].startswith("#/$defs/"):
                return inline(defs[node["$ref"].split("/")[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return inline(schema)


def journey_edit(*, store, key: str, changes: Any, changed_by: str) -> Journey:
    """Hand an edit to the engine, which validates it as a whole or keeps the last good version.

    Shared by the API and the dashboard so both answer an invalid edit with the same fields and problems.
    """
    if not isinstance(changes, dict):
        raise ApiError("invalid_body", "Send a JSON object with the fields to change.", 400,
                       [ErrorDetail(field="", code="invalid_body", message="Expected an object.")])
    if not changes:
        raise ApiError("invalid_journey", "The edit changes nothing.", 422,
                       [ErrorDetail(field="", code="empty", message="Send at least one field to change.")])
    return journey_update(store=store, key=key, changes=changes, changed_by=changed_by)


def _ensure_defaults(request: HttpRequest) -> None:
    """Every store has every journey; the engine creates the missing ones (one query when none is)."""
    journeys_ensure_defaults(store=request_store(request))


def _journey_or_404(request: HttpRequest, key: str) -> Journey:
    _ensure_defaults(request)
    journey = selectors.journey_get(store=request_store(request), key=key)
    if journey is None:
        raise Http404("This store has no such journey.")
    return journey


# exclude_none: a definition comes back as stored, without the schema's empty optional fields, so it
# can be edited and sent back as it is.
@router.get("/journeys", response={200: JourneyList, **READ_ERRORS}, summary="List journeys", exclude_none=True)
def list_journeys(request: HttpRequest):
    """Every journey of the store with its current (last accepted) definition."""
    _ensure_defaults(request)
    return {"data": selectors.journeys_list(store=request_store(request))}


@router.get("/journeys/{key}", response={200: JourneyOut, 404: ErrorOut, **READ_ERRORS}, summary="One journey",
            exclude_none=True)
def get_journey(request: HttpRequest, key: Path[JourneyKey]):
    return _journey_or_404(request, key)


@router.patch(
    "/journeys/{key}",
    response={200: JourneyOut, 403: ErrorOut, 404: ErrorOut, 415: ErrorOut, **READ_ERRORS},
    summary="Edit a journey",
    exclude_none=True,
    description=(
        "Enable or disable it; change the trigger, steps (delays in seconds, channels, templates per "
        "language), holdout share, variants or attribution. Needs a read_write key. The edit is checked "
        "as a whole: any problem answers 422 naming each field (`steps[0].delay_seconds`) and the journey "
        "keeps its last good version."
    ),
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": _json_schema_inline(JourneyPatch)}}}},
)
def patch_journey(request: HttpRequest, key: Path[JourneyKey]):
    _journey_or_404(request, key)
    api_key = request.api_key  # type: ignore[attr-defined]
    return journey_edit(store=request_store(request), key=key, changes=json_body(request),
                        changed_by=f"api-key:{api_key.lookup}")


@router.get("/journeys/{key}/stats", response={200: JourneyStatsOut, 404: ErrorOut, **READ_ERRORS},
            summary="A journey's figures and uplift")
def get_journey_stats(request: HttpRequest, key: Path[JourneyKey], filters: Query[StatsFilters]):
    """Enrollments, messages, conversions, recovered revenue per step/channel/variant/delay, and the uplift
    (treated minus holdout conversion) with a 95 % Newcombe interval. See docs/analytics-journeys.md."""
    _journey_or_404(request, key)
    stats = selectors.journey_stats(store=request_store(request), key=key, since=filters.since, until=filters.until)
    assert stats is not None
    return stats_payload(stats)
