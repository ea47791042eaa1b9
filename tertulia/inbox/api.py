"""The inbox in the REST API: conversations (a view at a time), one with its messages, replies, notes, status."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Path, Query, Router, Schema, Status

from tertulia.core.api import request_store
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.pagination import MAX_ID, READ_ERRORS, ErrorOut, PageParams, page_fetch
from tertulia.inbox.models import (
    Conversation,
    ConversationKind,
    ConversationStatus,
    MessageDirection,
    Priority,
)
from tertulia.inbox.selectors import breaching_filter, response_times, sla_state
from tertulia.inbox.services import conversation_status_set, note_add, reply_send

router = Router(tags=["inbox"])


class ConversationOut(Schema):
    id: int
    kind: ConversationKind
    network: str
    subject: str
    status: ConversationStatus
    snoozed_until: datetime | None
    priority: Priority
    priority_score: int
    sentiment: str
    intent: str
    reach: int | None
    contact_handle: str
    contact_name: str
    language: str
    customer_id: int | None
    assignee: str | None = Field(..., description="User name of the agent who has it.")
    team: str | None
    message_count: int
    created_at: datetime
    last_message_at: datetime
    first_response_due_at: datetime | None
    first_response_at: datetime | None
    first_response_seconds: int | None = Field(..., description="Business seconds to the first answer.")
    resolution_due_at: datetime | None
    resolved_at: datetime | None
    resolution_seconds: int | None
    sla_breached: bool

    @staticmethod
    def resolve_assignee(conversation: Conversation) -> str | None:
        return conversation.assignee.get_username() if conversation.assignee_id else None

    @staticmethod
    def resolve_team(conversation: Conversation) -> str | None:
        return conversation.team.name if conversation.team_id else None

    @staticmethod
    def resolve_sla_breached(conversation: Conversation) -> bool:
        return bool(sla_state(conversation)["breached"])


class ConversationPage(Schema):
    data: list[ConversationOut]
    next_cursor: str | None


class MessageOut(Schema):
    id: int
    direction: MessageDirection
    author_name: str
    text: str
    external_id: str
    created_at: datetime
    delivery_status: str | None = Field(..., description="For replies: scheduled, sent, failed...")

    @staticmethod
    def resolve_delivery_status(message) -> str | None:
        return message.delivery.status if message.delivery_id else None


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]

    @staticmethod
    def resolve_messages(conversation: Conversation) -> list:
        return list(conversation.messages.select_related("delivery").order_by("created_at", "id"))


class ConversationFilters(PageParams):
    status: ConversationStatus | None = None
    kind: ConversationKind | None = None
    network: str | None = Field(None, max_length=16)
    priority: Priority | None = None
    breaching: bool | None = Field(None, description="Only conversations past an SLA target.")
    unassigned: bool | None = None
    customer: int | None = Field(None, ge=1, le=MAX_ID)


def _conversation(request: HttpRequest, conversation_id: int) -> Conversation:
    conversation = (Conversation.objects.for_store(request_store(request)).select_related("assignee", "team")
                    .filter(pk=conversation_id).first())
    if conversation is None:
        raise ApiError("not_found", "There is no such conversation.", 404)
    return conversation


def _label(request: HttpRequest) -> str:
    key = request.api_key  # type: ignore[attr-defined]
    return f"API ({key.name})"


@router.get("/conversations", response={200: ConversationPage, **READ_ERRORS}, summary="List conversations")
def list_conversations(request: HttpRequest, filters: Query[ConversationFilters]):
    """The team inbox's conversations in id order; filter by status, kind, network, priority, SLA, assignment."""
    rows = Conversation.objects.for_store(request_store(request)).select_related("assignee", "team")
    for name in ("status", "kind", "network", "priority"):
        value = getattr(filters, name)
        if value:
            rows = rows.filter(**{name: value})
    if filters.customer:
        rows = rows.filter(customer_id=filters.customer)
    if filters.unassigned is not None:
        rows = rows.filter(assignee__isnull=filters.unassigned)
    if filters.breaching:
        from django.utils import timezone

        rows = rows.filter(breaching_filter(timezone.now()))
    return page_fetch(rows, cursor=filters.cursor, limit=filters.limit)


@router.get("/conversations/{conversation_id}", response={200: ConversationDetail, 404: ErrorOut, **READ_ERRORS},
            summary="One conversation with its messages and notes")
def get_conversation(request: HttpRequest, conversation_id: Path[int]):
    return _conversation(request, conversation_id)


class ReplyIn(Schema):
    text: str = Field(..., description="What to answer; checked against the network's length.")
    resolve: bool = Field(False, description="Resolve the conversation with this reply (else it waits as pending).")


class NoteIn(Schema):
    text: str


class StatusIn(Schema):
    status: ConversationStatus
    snoozed_until: datetime | None = Field(None, description="With status snoozed: until when (at most 90 days).")


@router.post("/conversations/{conversation_id}/replies",
             response={201: MessageOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, **READ_ERRORS},
             summary="Answer through the channel the person wrote on")
def post_reply(request: HttpRequest, conversation_id: Path[int], payload: ReplyIn):
    """A Mastodon, Bluesky or X reply, an e-mail, or the store's answer on the product page (questions) or under
    the review; sent by the worker as a delivery (`delivery_status`). 422 `cannot_reply` for feeds."""
    conversation = _conversation(request, conversation_id)
    message = reply_send(store=request_store(request), conversation_id=conversation.pk, user=None, text=payload.text,
                         resolve=payload.resolve, author_label=_label(request))
    return Status(201, message)


@router.post("/conversations/{conversation_id}/notes", response={201: MessageOut, 403: ErrorOut, 404: ErrorOut,
                                                                 **READ_ERRORS}, summary="Add a private note")
def post_note(request: HttpRequest, conversation_id: Path[int], payload: NoteIn):
    conversation = _conversation(request, conversation_id)
    note = note_add(store=request_store(request), conversation_id=conversation.pk, user=None, text=payload.text,
                    author_label=_label(request))
    return Status(201, note)


@router.post("/conversations/{conversation_id}/status", response={200: ConversationOut, 403: ErrorOut, 404: ErrorOut,
                                                                  **READ_ERRORS}, summary="Change the status")
def post_status(request: HttpRequest, conversation_id: Path[int], payload: StatusIn):
    conversation = _conversation(request, conversation_id)
    conversation_status_set(store=request_store(request), conversation_id=conversation.pk, status=payload.status,
                            snoozed_until=payload.snoozed_until)
    return _conversation(request, conversation_id)


class ResponseTimesFilters(Schema):
    since: datetime = Field(..., description="Conversations opened at or after (ISO 8601 with a time zone).")
    until: datetime | None = Field(None, description="... and before (default now).")
    by: str = Field("agent", pattern="^(agent|team)$", description="agent (the first responder) or team.")


class ResponseTimesRow(Schema):
    key: str = Field(..., description="User name or team name; empty: nobody answered yet / no team.")
    conversations: int
    answered: int
    first_response_median: float | None = Field(..., description="Business seconds.")
    first_response_p90: float | None
    resolved: int
    resolution_median: float | None
    breached: int = Field(..., description="Conversations past a first-response or resolution target.")


class ResponseTimesList(Schema):
    data: list[ResponseTimesRow]


@router.get("/inbox/response-times", response={200: ResponseTimesList, **READ_ERRORS},
            summary="First-response and resolution times per agent or team")
def get_response_times(request: HttpRequest, filters: Query[ResponseTimesFilters]):
    """Medians and 90th percentile in business seconds (the store's opening hours), for the analytics."""
    for name in ("since", "until"):
        value = getattr(filters, name)
        if value is not None and value.tzinfo is None:
            raise ApiError("invalid_request", "Dates need a time zone.", 422,
                           [ErrorDetail(field=name, code="naive_datetime", message="Add Z or +01:00.")])
    rows = response_times(store=request_store(request), since=filters.since, until=filters.until, by=filters.by)
    return {"data": rows}
