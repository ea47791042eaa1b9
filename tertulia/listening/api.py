"""Listening in the REST API: mentions (filtered, a page at a time), sources with their health, tracked terms."""

from datetime import datetime

from django.db.models import Q
from django.http import HttpRequest
from ninja import Field, Path, Query, Router, Schema, Status

from tertulia.core.api import request_store
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.pagination import MAX_ID, READ_ERRORS, ErrorOut, PageParams, page_fetch
from tertulia.listening.models import (
    Intent,
    Mention,
    MentionKind,
    Network,
    Sentiment,
    Source,
    TermKind,
    TrackedTerm,
)
from tertulia.listening.services import tracked_term_add, tracked_term_remove
from tertulia.listening.sources import source_describe

router = Router(tags=["listening"])


class MentionOut(Schema):
    id: int
    network: str
    external_id: str = Field(..., description="The platform's id: status id, at:// URI, tweet id, entry id...")
    kind: MentionKind
    url: str
    author_id: str
    author_handle: str
    author_name: str
    author_followers: int | None
    title: str
    text: str
    posted_at: datetime
    received_at: datetime
    in_reply_to: str
    language: str = Field(..., description="es or en, from the classifier.")
    sentiment: Sentiment
    sentiment_score: float = Field(..., description="P(positive) - P(negative), from -1 to 1.")
    intent: Intent
    toxicity: float
    terms: list[str] = Field(..., description="The tracked terms it names.")
    product_ids: list[int]
    customer_id: int | None
    source_key: str | None

    @staticmethod
    def resolve_product_ids(mention: Mention) -> list[int]:
        return sorted(p.pk for p in mention.products.all())

    @staticmethod
    def resolve_source_key(mention: Mention) -> str | None:
        return mention.source.key if mention.source_id else None


class MentionPage(Schema):
    data: list[MentionOut]
    next_cursor: str | None


class MentionFilters(PageParams):
    network: Network | None = None
    kind: MentionKind | None = None
    sentiment: Sentiment | None = None
    intent: Intent | None = None
    product: int | None = Field(None, ge=1, le=MAX_ID, description="Mentions naming this product (id).")
    customer: int | None = Field(None, ge=1, le=MAX_ID)
    since: datetime | None = Field(None, description="Posted at or after (ISO 8601 with a time zone).")
    until: datetime | None = Field(None, description="Posted before.")
    q: str | None = Field(None, max_length=200, description="Words in the text or the author's handle.")


@router.get("/mentions", response={200: MentionPage, **READ_ERRORS}, summary="List mentions")
def list_mentions(request: HttpRequest, filters: Query[MentionFilters]):
    """What the store's sources heard that names a tracked term or addresses the store, classified, in id order."""
    rows = Mention.objects.for_store(request_store(request))
    for name in ("network", "kind", "sentiment", "intent"):
        value = getattr(filters, name)
        if value:
            rows = rows.filter(**{name: value})
    if filters.product:
        rows = rows.filter(products__id=filters.product)
    if filters.customer:
        rows = rows.filter(customer_id=filters.customer)
    for name, lookup in (("since", "posted_at__gte"), ("until", "posted_at__lt")):
        value = getattr(filters, name)
        if value is not None:
            if value.tzinfo is None:
                raise ApiError("invalid_request", "Dates need a time zone.", 422,
                               [ErrorDetail(field=name, code="naive_datetime", message="Add Z or +01:00.")])
            rows = rows.filter(**{lookup: value})
    if filters.q:
        rows = rows.filter(Q(text__icontains=filters.q) | Q(author_handle__icontains=filters.q))
    page = page_fetch(rows.select_related("source").prefetch_related("products"), cursor=filters.cursor,
                      limit=filters.limit)
    return page


class SourceHealthOut(Schema):
    status: str = Field(..., description="ok, failing, down (alerted), waiting (never ran) or disabled.")
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error_code: str
    last_error: str
    consecutive_failures: int
    failing_since: datetime | None
    lag_seconds: float | None
    next_run_at: datetime | None
    posts_seen: int
    mentions_stored: int
    duplicates_seen: int
    malformed_count: int


class SourceOut(Schema):
    key: str
    network: str
    name: str
    enabled: bool
    settings: dict
    secrets_set: list[str] = Field(..., description="Which secrets are set; their values are never shown.")
    cursor: dict
    health: SourceHealthOut


class SourceList(Schema):
    data: list[SourceOut]


@router.get("/listening/sources", response={200: SourceList, **READ_ERRORS}, summary="List sources and their health")
def list_sources(request: HttpRequest):
    """Sources are set up with `tertulia listening source set` (their secrets never travel through the API)."""
    sources = Source.objects.for_store(request_store(request)).order_by("key")
    return {"data": [source_describe(source) for source in sources]}


class TermOut(Schema):
    id: int
    term: str
    kind: TermKind
    exclude: bool
    product_id: int | None


class TermList(Schema):
    data: list[TermOut]


class TermIn(Schema):
    term: str = Field(..., max_length=200)
    kind: TermKind = TermKind.KEYWORD
    exclude: bool = Field(False, description="A post containing it is not a mention at all.")


@router.get("/listening/terms", response={200: TermList, **READ_ERRORS}, summary="List tracked terms")
def list_terms(request: HttpRequest):
    return {"data": list(TrackedTerm.objects.for_store(request_store(request)).order_by("kind", "term", "id"))}


@router.post("/listening/terms", response={201: TermOut, 403: ErrorOut, **READ_ERRORS}, summary="Track a term")
def add_term(request: HttpRequest, payload: TermIn):
    """Idempotent: tracking a term twice answers the same row."""
    try:
        term = tracked_term_add(store=request_store(request), term=payload.term, kind=payload.kind,
                                exclude=payload.exclude)
    except ValueError as exc:
        raise ApiError("invalid_term", str(exc), 422, [ErrorDetail(field="term", code="invalid", message=str(exc))]) \
            from None
    return Status(201, term)


@router.delete("/listening/terms/{term_id}", response={204: None, 403: ErrorOut, 404: ErrorOut, **READ_ERRORS},
               summary="Stop tracking a term")
def remove_term(request: HttpRequest, term_id: Path[int]):
    if not tracked_term_remove(store=request_store(request), term_id=term_id):
        raise ApiError("not_found", "There is no such term.", 404)
    return Status(204, None)
