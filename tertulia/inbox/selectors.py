"""Reads of the inbox: settings and schedule, the views (mine, unassigned, per team, breaching SLA), a
conversation with the person's context, who else has it open, and response times per agent and team."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from tertulia.core.models import Store
from tertulia.inbox.business_hours import Schedule, ScheduleError
from tertulia.inbox.models import (
    AgentNotification,
    Conversation,
    ConversationStatus,
    InboxSettings,
    Message,
    Presence,
    Team,
    TeamMember,
)

VIEWS = ("mine", "unassigned", "team", "breaching", "open", "pending", "snoozed", "resolved", "all")
PRESENCE_SECONDS = 30
ACTIVE_STATES = (ConversationStatus.OPEN, ConversationStatus.PENDING)


def inbox_settings_for(*, store_id: int) -> InboxSettings:
    """The store's row, or an unsaved one with the defaults."""
    return InboxSettings.objects.filter(store_id=store_id).first() or InboxSettings(store_id=store_id)


def schedule_for(*, store_id: int, settings: InboxSettings | None = None) -> Schedule:
    settings = settings or inbox_settings_for(store_id=store_id)
    zone = Store.objects.filter(pk=store_id).values_list("timezone", flat=True).first() or "UTC"
    try:
        return Schedule.parse(hours=settings.business_hours or {}, holidays=settings.holidays or [], zone=zone)
    except (ScheduleError, Exception):  # noqa: BLE001 - a bad row (edited by hand) must not stop the inbox
        return Schedule.parse(hours={}, zone="UTC")


def message_ids_known(*, store_id: int, network: str, external_ids: set[str]) -> set[str]:
    """Which of these platform ids are messages (theirs or ours) of the store's conversations on `network`."""
    return set(Message.objects.for_store(store_id).filter(external_id__in=sorted(external_ids),
                                                          conversation__network=network)
               .values_list("external_id", flat=True))


def breaching_filter(now: datetime) -> Q:
    """Conversations past an SLA target: no first answer by its due time, or not resolved by its due time."""
    return (Q(first_response_at__isnull=True, first_response_due_at__lt=now)
            | Q(resolved_at__isnull=True, resolution_due_at__lt=now)) & ~Q(status=ConversationStatus.RESOLVED) \
        & ~Q(status=ConversationStatus.SNOOZED)


def conversations_view(*, store: Store, view: str, user=None, team_id: int | None = None, kind: str = "",
                       network: str = "", priority: str = "", q: str = "", now: datetime | None = None) -> QuerySet:
    """The conversations of one view, most urgent first (priority, then the oldest waiting)."""
    moment = now or timezone.now()
    rows = Conversation.objects.for_store(store)
    if view == "mine":
        rows = rows.filter(assignee_id=getattr(user, "pk", None), status__in=ACTIVE_STATES)
    elif view == "unassigned":
        rows = rows.filter(assignee__isnull=True, status=ConversationStatus.OPEN)
    elif view == "team":
        rows = rows.filter(team_id=team_id, status__in=ACTIVE_STATES)
    elif view == "breaching":
        rows = rows.filter(breaching_filter(moment))
    elif view in ConversationStatus.values:
        rows = rows.filter(status=view)
    elif view != "all":
        rows = rows.none()
    if kind:
        rows = rows.filter(kind=kind)
    if network:
        rows = rows.filter(network=network)
    if priority:
        rows = rows.filter(priority=priority)
    if q:
        rows = rows.filter(Q(subject__icontains=q) | Q(contact_handle__icontains=q) | Q(contact_name__icontains=q))
    return rows.select_related("assignee", "team", "customer").order_by("-priority_score", "last_inbound_at", "id")


def view_counts(*, store: Store, user, now: datetime | None = None) -> dict[str, int]:
    moment = now or timezone.now()
    rows = Conversation.objects.for_store(store)
    counts = rows.aggregate(
        mine=Count("id", filter=Q(assignee_id=getattr(user, "pk", None), status__in=ACTIVE_STATES)),
        unassigned=Count("id", filter=Q(assignee__isnull=True, status=ConversationStatus.OPEN)),
        breaching=Count("id", filter=breaching_filter(moment)),
        open=Count("id", filter=Q(status=ConversationStatus.OPEN)),
        pending=Count("id", filter=Q(status=ConversationStatus.PENDING)),
        snoozed=Count("id", filter=Q(status=ConversationStatus.SNOOZED)),
    )
    return counts


def teams_with_counts(*, store: Store) -> list[Team]:
    return list(Team.objects.for_store(store).annotate(
        active=Count("conversations", filter=Q(conversations__status__in=ACTIVE_STATES))).order_by("name"))


def sla_state(conversation: Conversation, now: datetime | None = None) -> dict[str, Any]:
    """For the list and the page: which target is next, when, and whether it is missed."""
    moment = now or timezone.now()
    if conversation.status == ConversationStatus.RESOLVED:
        return {"target": "", "due_at": None, "breached": False}
    if conversation.first_response_at is None and conversation.first_response_due_at:
        due = conversation.first_response_due_at
        return {"target": "first_response", "due_at": due, "breached": due < moment}
    if conversation.resolution_due_at:
        due = conversation.resolution_due_at
        return {"target": "resolution", "due_at": due, "breached": due < moment}
    return {"target": "", "due_at": None, "breached": False}


def viewers(*, store: Store, conversation_id: int, exclude_user_id: int | None = None,
            now: datetime | None = None) -> list[dict]:
    moment = now or timezone.now()
    rows = (Presence.objects.for_store(store)
            .filter(conversation_id=conversation_id, seen_at__gte=moment - timedelta(seconds=PRESENCE_SECONDS))
            .exclude(user_id=exclude_user_id).select_related("user").order_by("user__username"))
    return [{"user_id": row.user_id, "name": row.user.get_full_name() or row.user.get_username(),
             "composing": row.composing} for row in rows]


def customer_context(*, store: Store, customer_id: int | None) -> dict[str, Any] | None:
    """What the agent sees beside the conversation: the person, their orders, open cart and reviews."""
    if customer_id is None:
        return None
    from tertulia.commerce.models import Cart, CartStatus, Order
    from tertulia.customers.models import Customer
    from tertulia.ugc.models import Review

    customer = Customer.objects.for_store(store).filter(pk=customer_id).prefetch_related("identities").first()
    if customer is None or customer.erased_at is not None:
        return None
    orders = list(Order.objects.for_store(store).filter(customer_id=customer_id).order_by("-placed_at", "-id")[:5])
    cart = Cart.objects.for_store(store).filter(customer_id=customer_id, status=CartStatus.OPEN).order_by(
        "-updated_at").first()
    reviews = list(Review.objects.for_store(store).filter(customer_id=customer_id).select_related("product")
                   .order_by("-created_at")[:5])
    return {"customer": customer, "identities": list(customer.identities.all()), "orders": orders, "cart": cart,
            "reviews": reviews}


def unread_notifications(*, store: Store, user) -> QuerySet:
    return (AgentNotification.objects.for_store(store).filter(user=user, read_at__isnull=True)
            .select_related("conversation", "message").order_by("-created_at"))


def agents(*, store: Store) -> list:
    from django.contrib.auth import get_user_model

    from tertulia.core.models import Membership
    from tertulia.inbox.services import ANSWERING_ROLES

    ids = Membership.objects.for_store(store).filter(role__in=ANSWERING_ROLES).values_list("user_id", flat=True)
    return list(get_user_model().objects.filter(pk__in=list(ids), is_active=True).order_by("username"))


@dataclass(frozen=True, slots=True)
class ResponseTimes:
    key: str  # a user name or a team name ("" = nobody)
    conversations: int
    answered: int
    first_response_median: float | None  # business seconds
    first_response_p90: float | None
    resolved: int
    resolution_median: float | None
    breached: int


def _p90(values: list[int]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))])


def response_times(*, store: Store, since: datetime, until: datetime | None = None, by: str = "agent") -> list[ResponseTimes]:
    """First response and resolution times (business seconds) of conversations opened in [since, until),
    per agent (the first responder, or the assignee while unanswered) or per team; SLA breaches counted."""
    moment = until or timezone.now()
    rows = (Conversation.objects.for_store(store).filter(created_at__gte=since, created_at__lt=moment)
            .values("first_responder__username", "assignee__username", "team__name", "first_response_seconds",
                    "resolution_seconds", "first_response_at", "first_response_due_at", "resolved_at",
                    "resolution_due_at"))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if by == "team":
            key = row["team__name"] or ""
        else:
            key = row["first_responder__username"] or row["assignee__username"] or ""
        groups.setdefault(key, []).append(row)
    out = []
    for key, items in sorted(groups.items()):
        first = [r["first_response_seconds"] for r in items if r["first_response_seconds"] is not None]
        resolution = [r["resolution_seconds"] for r in items if r["resolution_seconds"] is not None]
        breached = sum(1 for r in items if (
            r["first_response_due_at"] and (r["first_response_at"] or moment) > r["first_response_due_at"])
            or (r["resolution_due_at"] and (r["resolved_at"] or moment) > r["resolution_due_at"]))
        out.append(ResponseTimes(key=key, conversations=len(items), answered=len(first),
                                 first_response_median=float(median(first)) if first else None,
                                 first_response_p90=_p90(first), resolved=len(resolution),
                                 resolution_median=float(median(resolution)) if resolution else None,
                                 breached=breached))
    return out


def team_members(*, team: Team) -> list[TeamMember]:
    return list(TeamMember.objects.filter(team=team).select_related("user").order_by("user__username"))


# --- the dashboard's reads ----------------------------------------------------------------------------


def conversation_get(*, store: Store, conversation_id: int) -> Conversation | None:
    """One conversation of the store (None for another store's id, so a typed-in id answers 404)."""
    return (Conversation.objects.for_store(store).select_related("assignee", "team", "customer", "source")
            .filter(pk=conversation_id).first())


@dataclass(frozen=True, slots=True)
class ThreadItem:
    """One line of a conversation as the page shows it: a message (any direction) or an event."""

    at: datetime
    message: Any = None  # inbox.models.Message, with its delivery, author and mention loaded
    event: Any = None  # inbox.models.ConversationEvent

    @property
    def kind(self) -> str:
        return "event" if self.event is not None else self.message.direction


def conversation_thread(*, store: Store, conversation_id: int) -> list[ThreadItem]:
    """Messages and events of one conversation, oldest first (at equal times, messages before events)."""
    from tertulia.inbox.models import ConversationEvent, Message

    messages = (Message.objects.for_store(store).filter(conversation_id=conversation_id)
                .select_related("delivery", "author_user", "mention").prefetch_related("mentioned_users")
                .order_by("created_at", "id"))
    events = ConversationEvent.objects.for_store(store).filter(conversation_id=conversation_id).order_by("created_at", "id")
    items = [ThreadItem(at=m.created_at, message=m) for m in messages]
    items += [ThreadItem(at=e.created_at, event=e) for e in events]
    items.sort(key=lambda item: (item.at, item.event is not None))
    return items


def conversation_newest_message_id(*, store: Store, conversation_id: int) -> int | None:
    """The newest message's id: what the reply form says the agent had on screen (reply_send's seen_message_id)."""
    from django.db.models import Max

    from tertulia.inbox.models import Message

    return Message.objects.for_store(store).filter(conversation_id=conversation_id).aggregate(top=Max("id"))["top"]


def conversation_ids_for_mentions(*, store: Store, mention_ids: list[int]) -> dict[int, int]:
    """{mention id: conversation id} for the mentions already in a conversation."""
    from tertulia.inbox.models import Message

    if not mention_ids:
        return {}
    rows = (Message.objects.for_store(store).filter(mention_id__in=list(mention_ids))
            .values_list("mention_id", "conversation_id").order_by("id"))
    return dict(rows)


def canned_replies(*, store: Store) -> list:
    from tertulia.inbox.models import CannedReply

    return list(CannedReply.objects.for_store(store).order_by("shortcut"))


def canned_reply_get(*, store: Store, canned_reply_id: int):
    from tertulia.inbox.models import CannedReply

    return CannedReply.objects.for_store(store).filter(pk=canned_reply_id).first()


def canned_values(*, store: Store, conversation: Conversation, agent) -> dict[str, str]:
    """What `canned.render` fills in for this conversation and this agent (canned.VARIABLES)."""
    from tertulia.commerce.models import Order
    from tertulia.inbox.models import Message, MessageDirection

    customer = conversation.customer if conversation.customer_id else None
    if customer is not None and customer.erased_at is not None:
        customer = None
    name = (customer.first_name if customer is not None else "") or conversation.contact_name or \
        conversation.contact_handle
    product = ""
    if conversation.question_id or conversation.review_id:
        # The conversation of a question or a review is about its product, which is its subject.
        product = conversation.subject
    else:
        latest = (Message.objects.for_store(store).filter(conversation=conversation, direction=MessageDirection.INBOUND,
                                                          mention__isnull=False)
                  .select_related("mention").order_by("-created_at", "-id").first())
        if latest is not None:
            named = latest.mention.products.order_by("title").values_list("title", flat=True).first()
            product = named or ""
    order_number = ""
    if customer is not None:
        order_number = (Order.objects.for_store(store).filter(customer_id=customer.pk)
                        .order_by("-placed_at", "-id").values_list("external_id", flat=True).first()) or ""
    agent_name = ""
    if agent is not None:
        agent_name = (getattr(agent, "first_name", "") or "") or agent.get_username()
    return {"customer_name": name, "handle": conversation.contact_handle, "agent_name": agent_name,
            "store_name": store.name, "store_url": store.website_url or "", "product": product,
            "order_number": order_number}


def unread_count(*, store: Store, user) -> int:
    return AgentNotification.objects.for_store(store).filter(user=user, read_at__isnull=True).count()


def breaching_count(*, store: Store, now: datetime | None = None) -> int:
    return Conversation.objects.for_store(store).filter(breaching_filter(now or timezone.now())).count()


def teams_with_members(*, store: Store) -> list[Team]:
    """Teams with their memberships (and users) loaded, for the settings page."""
    from django.db.models import Prefetch

    return list(Team.objects.for_store(store).prefetch_related(
        Prefetch("memberships", queryset=TeamMember.objects.select_related("user").order_by("user__username")))
        .annotate(active=Count("conversations", filter=Q(conversations__status__in=ACTIVE_STATES))).order_by("name"))
