"""Writes of the inbox: conversations from what people wrote, replies through their channel, notes, assignment.

Callers: listening's ingestion (`conversations_from_mentions`, in its transaction), the sweep (questions
and reviews from ugc, snoozes ending, auto-assignment), the dashboard and the API (replies, notes,
status, assignment). Every write that can race (two workers hearing one thread, two agents answering)
relies on a unique constraint or a row lock, never on a read before the write.
"""

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from tertulia.channels.models import Delivery, DeliveryStatus
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Membership, Role, Store
from tertulia.inbox import canned
from tertulia.inbox.business_hours import ScheduleError, business_seconds, deadline
from tertulia.inbox.models import (
    AgentNotification,
    CannedReply,
    Conversation,
    ConversationEvent,
    ConversationKind,
    ConversationStatus,
    InboxSettings,
    Message,
    MessageDirection,
    Presence,
    Priority,
    Team,
    TeamMember,
)
from tertulia.inbox.priority import priority_level, priority_score
from tertulia.inbox.selectors import inbox_settings_for, schedule_for
from tertulia.listening.models import Mention, MentionKind, Source
from tertulia.listening.replies import sender_for

log = logging.getLogger("tertulia.inbox")

# Roles that answer; moderators and analysts read the inbox without writing in it.
ANSWERING_ROLES = frozenset({Role.OWNER, Role.MANAGER, Role.COMMUNITY_MANAGER, Role.AGENT})
MANAGING_ROLES = frozenset({Role.OWNER, Role.MANAGER, Role.COMMUNITY_MANAGER})
# What each network accepts in one reply (characters; Bluesky counts graphemes, close enough for our text).
REPLY_LIMITS = {"mastodon": 500, "bluesky": 300, "x": 280, "email": 20_000, "widget": 5000, "reviews": 5000}
SOCIAL = ("mastodon", "bluesky", "x")
NOTE_MAX = 5000
SLA_START_LIMIT = timedelta(days=1)
OPEN_STATES = (ConversationStatus.OPEN, ConversationStatus.PENDING, ConversationStatus.SNOOZED)
ACTIONABLE_INTENTS = frozenset({"question", "complaint", "purchase_intent"})
_MENTION = re.compile(r"(?<![\w@])@([\w.+-]{1,150})")


def _actor(user) -> str:
    return getattr(user, "username", "") if user is not None else ""


def _event(conversation: Conversation, kind: str, actor: str = "", *, at: datetime | None = None, **details: Any) -> None:
    ConversationEvent.objects.create(store_id=conversation.store_id, conversation=conversation, kind=kind,
                                     actor=actor[:150], details=details, created_at=at or timezone.now())


def _targets(conversation: Conversation, settings: InboxSettings, start: datetime) -> None:
    schedule = schedule_for(store_id=conversation.store_id, settings=settings)
    if conversation.first_response_at is None:
        minutes = (settings.first_response_minutes or {}).get(conversation.priority)
        conversation.first_response_due_at = deadline(schedule, conversation.created_at, minutes) if minutes else None
    minutes = (settings.resolution_minutes or {}).get(conversation.priority)
    conversation.resolution_due_at = deadline(schedule, start, minutes) if minutes else None


# --- conversations from what people wrote -------------------------------------------------------------


@dataclass(slots=True)
class Inbound:
    """One message from a person, whatever it came through."""

    kind: str  # ConversationKind
    network: str
    external_id: str
    text: str
    at: datetime
    thread_key: str  # the conversation to open when none is found by in_reply_to
    in_reply_to: str = ""
    subject: str = ""
    customer_id: int | None = None
    contact_handle: str = ""
    contact_name: str = ""
    language: str = ""
    sentiment: str = ""
    sentiment_score: float = 0.0
    intent: str = ""
    reach: int | None = None
    toxicity: float = 0.0
    source_id: int | None = None
    mention_id: int | None = None
    question_id: int | None = None
    review_id: int | None = None
    extra: dict = field(default_factory=dict)


def _wanted(settings: InboxSettings, mention: Mention) -> bool:
    if mention.kind in (MentionKind.MENTION, MentionKind.DIRECT):
        return settings.posts_to_inbox != "none"
    if settings.posts_to_inbox == "all":
        return True
    if settings.posts_to_inbox == "actionable":
        return mention.intent in ACTIONABLE_INTENTS or mention.sentiment == "negative"
    return False


def _thread_key(mention: Mention) -> str:
    if mention.kind == MentionKind.DIRECT and mention.network != "email":
        return f"{mention.network}:dm:{mention.author_id or mention.author_handle}"
    return f"{mention.network}:{mention.thread_root or mention.external_id}"


def inbound_from_mention(mention: Mention) -> Inbound:
    direct = mention.kind == MentionKind.DIRECT
    kind = ConversationKind.EMAIL if mention.network == "email" else (
        ConversationKind.DIRECT if direct else ConversationKind.MENTION)
    handle = mention.author_handle
    return Inbound(
        kind=kind, network=mention.network, external_id=mention.external_id, text=mention.text, at=mention.posted_at,
        thread_key=_thread_key(mention), in_reply_to=mention.in_reply_to,
        subject=mention.title or (mention.text.strip().splitlines() or [""])[0][:120],
        customer_id=mention.customer_id, contact_handle=handle, contact_name=mention.author_name,
        language=mention.language, sentiment=mention.sentiment, sentiment_score=mention.sentiment_score,
        intent=mention.intent, reach=mention.author_followers, toxicity=mention.toxicity,
        source_id=mention.source_id, mention_id=mention.pk,
    )


def conversations_from_mentions(*, store_id: int, mention_ids: Sequence[int], now: datetime | None = None) -> list[int]:
    """Open (or continue) a conversation for each mention the store's rules send to the inbox; returns their ids."""
    if not mention_ids:
        return []
    settings = inbox_settings_for(store_id=store_id)
    mentions = Mention.objects.for_store(store_id).filter(pk__in=list(mention_ids)).order_by("posted_at", "id")
    ids = []
    for mention in mentions:
        if _wanted(settings, mention):
            conversation = conversation_add_inbound(store_id=store_id, inbound=inbound_from_mention(mention),
                                                    settings=settings, now=now)
            if conversation is not None:
                ids.append(conversation.pk)
    return ids


def _find_thread(store_id: int, inbound: Inbound) -> Conversation | None:
    if inbound.in_reply_to:
        found = (Message.objects.for_store(store_id)
                 .filter(external_id=inbound.in_reply_to, conversation__network=inbound.network)
                 .select_related("conversation").order_by("-id").first())
        if found is None:
            # Our reply went out moments ago and the sweep has not copied its provider id yet.
            found = (Message.objects.for_store(store_id)
                     .filter(direction=MessageDirection.OUTBOUND, delivery__provider_message_id=inbound.in_reply_to,
                             conversation__network=inbound.network)
                     .select_related("conversation").order_by("-id").first())
        if found is not None:
            return found.conversation
    return Conversation.objects.for_store(store_id).filter(thread_key=inbound.thread_key[:450]).first()


def conversation_add_inbound(*, store_id: int, inbound: Inbound, settings: InboxSettings | None = None,
                             now: datetime | None = None) -> Conversation | None:
    """Add what a person wrote to its conversation (found by what it answers, else by thread key), opening
    or reopening it. Returns None when the message was there already (a replay)."""
    moment = now or timezone.now()
    settings = settings or inbox_settings_for(store_id=store_id)
    with transaction.atomic():
        conversation = _find_thread(store_id, inbound)
        created = False
        if conversation is None:
            conversation, created = _conversation_get_or_create(store_id, inbound, moment)
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        try:
            with transaction.atomic():
                message = Message.objects.create(
                    store_id=store_id, conversation=conversation, direction=MessageDirection.INBOUND,
                    external_id=inbound.external_id[:450], author_name=(inbound.contact_name or inbound.contact_handle)[:200],
                    text=inbound.text, mention_id=inbound.mention_id, created_at=inbound.at)
        except IntegrityError:
            return None  # this message is in the conversation already
        _after_inbound(conversation, inbound, settings, moment, created=created, message=message)
    return conversation


def _score(inbound: Inbound, *, kind: str, reach: int | None, customer_id: int | None) -> int:
    return priority_score(intent=inbound.intent, sentiment=inbound.sentiment, sentiment_score=inbound.sentiment_score,
                          reach=reach, direct=kind in (ConversationKind.DIRECT, ConversationKind.EMAIL),
                          known_customer=customer_id is not None, toxicity=inbound.toxicity)


def _conversation_get_or_create(store_id: int, inbound: Inbound, moment: datetime) -> tuple[Conversation, bool]:
    score = _score(inbound, kind=inbound.kind, reach=inbound.reach, customer_id=inbound.customer_id)
    defaults = {
        "kind": inbound.kind, "network": inbound.network, "subject": inbound.subject[:300],
        "customer_id": inbound.customer_id, "contact_handle": inbound.contact_handle[:320],
        "contact_name": inbound.contact_name[:200], "language": inbound.language[:8],
        "priority_score": score, "priority": priority_level(score), "reach": inbound.reach,
        "source_id": inbound.source_id, "question_id": inbound.question_id, "review_id": inbound.review_id,
        # The SLA clock starts when they wrote, unless that is implausible (a wrong clock, a mailbox's
        # backlog read for the first time): then when we heard it.
        "created_at": inbound.at if moment - SLA_START_LIMIT <= inbound.at <= moment else moment,
        "updated_at": moment,
        "last_message_at": inbound.at,
    }
    try:
        with transaction.atomic():
            return Conversation.objects.get_or_create(store_id=store_id, thread_key=inbound.thread_key[:450],
                                                      defaults=defaults)
    except IntegrityError:  # another writer created it between our read and our insert
        return Conversation.objects.get(store_id=store_id, thread_key=inbound.thread_key[:450]), False


def _after_inbound(conversation: Conversation, inbound: Inbound, settings: InboxSettings, moment: datetime, *,
                   created: bool, message: Message) -> None:
    conversation.message_count += 1
    conversation.last_message_at = max(conversation.last_message_at, inbound.at)
    conversation.last_inbound_at = max(conversation.last_inbound_at or inbound.at, inbound.at)
    conversation.updated_at = moment
    if inbound.customer_id and not conversation.customer_id:
        conversation.customer_id = inbound.customer_id
    if inbound.sentiment:
        conversation.sentiment, conversation.intent = inbound.sentiment, inbound.intent
    if inbound.reach is not None:
        conversation.reach = max(conversation.reach or 0, inbound.reach)
    score = None if created else _score(inbound, kind=conversation.kind, reach=conversation.reach,
                                        customer_id=conversation.customer_id)
    if created:
        _event(conversation, "created", at=conversation.created_at, conversation_kind=conversation.kind,
               network=conversation.network)
        _targets(conversation, settings, conversation.created_at)
    elif score > conversation.priority_score:
        # A new message can make a conversation more urgent, never less (a calm "thanks" after a complaint).
        conversation.priority_score = score
        level = priority_level(score)
        if level != conversation.priority:
            _event(conversation, "priority", previous=conversation.priority, priority=level)
            conversation.priority = level
            _targets(conversation, settings, conversation.created_at)
    if not created and conversation.status != ConversationStatus.OPEN:
        _event(conversation, "reopened", previous=conversation.status)
        if conversation.status == ConversationStatus.RESOLVED:
            conversation.resolved_at = conversation.resolved_by = conversation.resolution_seconds = None
            _targets(conversation, settings, moment)
        conversation.status, conversation.snoozed_until = ConversationStatus.OPEN, None
    conversation.save()
    if conversation.assignee_id is None:
        conversation_auto_assign(conversation=conversation, settings=settings, now=moment)


# --- assignment -------------------------------------------------------------------------------------


def _team_for(conversation: Conversation, settings: InboxSettings) -> Team | None:
    team_id = (settings.routing or {}).get(conversation.kind) or settings.default_team_id
    if team_id:
        return Team.objects.for_store(conversation.store_id).filter(pk=team_id).first()
    teams = list(Team.objects.for_store(conversation.store_id).filter(auto_assign=True)[:2])
    return teams[0] if len(teams) == 1 else None  # one team: it takes everything; several: route them


def _answering_users(store_id: int) -> set[int]:
    return set(Membership.objects.for_store(store_id).filter(role__in=ANSWERING_ROLES).values_list("user_id", flat=True))


def open_counts(*, store_id: int, user_ids: Sequence[int]) -> dict[int, int]:
    from django.db.models import Count

    rows = (Conversation.objects.for_store(store_id)
            .filter(assignee_id__in=list(user_ids), status__in=[ConversationStatus.OPEN, ConversationStatus.PENDING])
            .values("assignee_id").annotate(n=Count("id")).values_list("assignee_id", "n"))
    return dict(rows)


def conversation_auto_assign(*, conversation: Conversation, settings: InboxSettings | None = None,
                             now: datetime | None = None) -> int | None:
    """Round-robin among the routed team's available members below the cap; the user id chosen, or None.

    The team row is locked while choosing, so two conversations arriving together never both go to the
    same agent's last free slot. Nobody free: the conversation waits in "unassigned" (the sweep tries again).
    """
    settings = settings or inbox_settings_for(store_id=conversation.store_id)
    team = _team_for(conversation, settings)
    if team is None:
        return None
    moment = now or timezone.now()
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        if conversation.team_id != team.pk:
            Conversation.objects.filter(pk=conversation.pk).update(team=team)
            conversation.team_id = team.pk
        if not team.auto_assign:
            return None
        allowed = _answering_users(conversation.store_id)
        members = sorted(uid for uid in TeamMember.objects.filter(team=team, available=True)
                         .values_list("user_id", flat=True) if uid in allowed)
        if not members:
            return None
        counts = open_counts(store_id=conversation.store_id, user_ids=members)
        last = team.last_assigned_id or 0
        order = [uid for uid in members if uid > last] + [uid for uid in members if uid <= last]
        chosen = next((uid for uid in order if counts.get(uid, 0) < team.max_open_per_agent), None)
        if chosen is None:
            return None
        updated = Conversation.objects.filter(pk=conversation.pk, assignee__isnull=True).update(
            assignee_id=chosen, team=team, assigned_at=moment, updated_at=moment)
        if not updated:
            return None
        Team.objects.filter(pk=team.pk).update(last_assigned_id=chosen)
        conversation.assignee_id, conversation.assigned_at = chosen, moment
        _event(conversation, "assigned", assignee=chosen, team=team.pk, auto=True)
        AgentNotification.objects.create(store_id=conversation.store_id, user_id=chosen, conversation=conversation,
                                         kind="assigned")
    return chosen


def conversation_assign(*, store: Store, conversation_id: int, assignee_id: int | None = None, team_id: int | None = None,
                        actor=None) -> Conversation:
    """Give the conversation to a person (who must be able to answer in the store) and/or a team; None unassigns."""
    with transaction.atomic():
        conversation = _locked(store, conversation_id)
        problems = []
        if assignee_id is not None and assignee_id not in _answering_users(store.pk):
            problems.append(ErrorDetail(field="assignee", code="not_an_agent",
                                        message=_("That person cannot answer in this store.")))
        team = None
        if team_id is not None:
            team = Team.objects.for_store(store).filter(pk=team_id).first()
            if team is None:
                problems.append(ErrorDetail(field="team", code="not_found", message=_("There is no such team.")))
        if problems:
            raise ApiError("invalid_assignment", _("The conversation was not reassigned."), 422, problems)
        moment = timezone.now()
        previous = conversation.assignee_id
        conversation.assignee_id = assignee_id
        conversation.assigned_at = moment if assignee_id else None
        if team is not None:
            conversation.team = team
        conversation.updated_at = moment
        conversation.save(update_fields=["assignee", "assigned_at", "team", "updated_at"])
        if previous != assignee_id:
            _event(conversation, "assigned" if assignee_id else "unassigned", _actor(actor), assignee=assignee_id,
                   previous=previous)
            if assignee_id and assignee_id != getattr(actor, "pk", None):
                AgentNotification.objects.create(store=store, user_id=assignee_id, conversation=conversation,
                                                 kind="assigned")
        if team is not None:
            _event(conversation, "team", _actor(actor), team=team.pk)
    return conversation


def _locked(store: Store, conversation_id: int) -> Conversation:
    conversation = Conversation.objects.for_store(store).select_for_update().filter(pk=conversation_id).first()
    if conversation is None:
        raise ApiError("not_found", _("There is no such conversation."), 404)
    return conversation


# --- status ---------------------------------------------------------------------------------------------

MAX_SNOOZE = timedelta(days=90)


def conversation_status_set(*, store: Store, conversation_id: int, status: str, actor=None,
                            snoozed_until: datetime | None = None, now: datetime | None = None) -> Conversation:
    moment = now or timezone.now()
    if status not in ConversationStatus.values:
        raise ApiError("invalid_status", _("Unknown status."), 422,
                       [ErrorDetail(field="status", code="invalid", message=", ".join(ConversationStatus.values))])
    if status == ConversationStatus.SNOOZED:
        if snoozed_until is None or timezone.is_naive(snoozed_until) or not moment < snoozed_until <= moment + MAX_SNOOZE:
            raise ApiError("invalid_snooze", _("Snooze until a moment in the next 90 days."), 422,
                           [ErrorDetail(field="snoozed_until", code="invalid",
                                        message=_("A future date and time, at most 90 days ahead."))])
    with transaction.atomic():
        conversation = _locked(store, conversation_id)
        previous = conversation.status
        conversation.status = status
        conversation.snoozed_until = snoozed_until if status == ConversationStatus.SNOOZED else None
        if status == ConversationStatus.RESOLVED and previous != status:
            _resolved(conversation, actor, moment, business_seconds(schedule_for(store_id=store.pk),
                                                                    conversation.created_at, moment))
        elif status != ConversationStatus.RESOLVED and previous == ConversationStatus.RESOLVED:
            conversation.resolved_at = conversation.resolved_by = conversation.resolution_seconds = None
            _targets(conversation, inbox_settings_for(store_id=store.pk), moment)
        conversation.updated_at = moment
        conversation.save()
        if previous != status:
            details = {"previous": previous, "status": status}
            if snoozed_until:
                details["until"] = snoozed_until.isoformat()
            _event(conversation, "status", _actor(actor), **details)
    return conversation


def _resolved(conversation: Conversation, actor, moment: datetime, seconds: int | None) -> None:
    conversation.resolved_at = moment
    conversation.resolved_by = actor if getattr(actor, "pk", None) else None
    conversation.resolution_seconds = seconds


def conversation_priority_set(*, store: Store, conversation_id: int, priority: str, actor=None) -> Conversation:
    if priority not in Priority.values:
        raise ApiError("invalid_priority", _("Unknown priority."), 422,
                       [ErrorDetail(field="priority", code="invalid", message=", ".join(Priority.values))])
    with transaction.atomic():
        conversation = _locked(store, conversation_id)
        if conversation.priority != priority:
            _event(conversation, "priority", _actor(actor), previous=conversation.priority, priority=priority, manual=True)
            conversation.priority = priority
            _targets(conversation, inbox_settings_for(store_id=store.pk),
                     conversation.resolved_at or conversation.created_at)
            conversation.updated_at = timezone.now()
            conversation.save()
    return conversation


# --- replies and notes ------------------------------------------------------------------------------


def can_answer(*, store: Store, user) -> bool:
    if getattr(user, "is_superuser", False):
        return True
    return Membership.objects.for_store(store).filter(user_id=getattr(user, "pk", None), role__in=ANSWERING_ROLES).exists()


def _latest_inbound(conversation: Conversation) -> Message | None:
    return (conversation.messages.filter(direction=MessageDirection.INBOUND).select_related("mention")
            .order_by("-created_at", "-id").first())


@dataclass(slots=True)
class Outgoing:
    channel: str
    to: str
    subject: str = ""
    reply_to: str = ""
    reply_context: dict = field(default_factory=dict)
    sender: str = ""


def _outgoing_social(conversation: Conversation, latest: Message | None) -> Outgoing:
    mention = latest.mention if latest is not None else None
    if conversation.source_id is None or mention is None:
        raise ApiError("cannot_reply", _("This conversation has no account to answer from."), 422)
    source = Source.objects.for_store(conversation.store_id).filter(pk=conversation.source_id).first()
    if source is None or source.network != conversation.network:
        raise ApiError("cannot_reply", _("The account this conversation came through was removed."), 422)
    context = dict(mention.reply_ref or {})
    context.setdefault("direct", mention.kind == MentionKind.DIRECT)
    return Outgoing(channel=conversation.network, to=conversation.contact_handle, reply_to=mention.external_id,
                    reply_context=context, sender=sender_for(source))


def _outgoing_email(conversation: Conversation, latest: Message | None) -> Outgoing:
    mention = latest.mention if latest is not None else None
    if not conversation.contact_handle:
        raise ApiError("cannot_reply", _("There is no address to answer to."), 422)
    subject = conversation.subject or ""
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}".strip()
    context = dict(mention.reply_ref or {}) if mention else {}
    references = list(context.get("references") or [])
    if mention is not None and mention.external_id not in references:
        references.append(mention.external_id)
    context["references"] = references[-20:]
    return Outgoing(channel="email", to=conversation.contact_handle, subject=subject[:300],
                    reply_to=mention.external_id if mention else "", reply_context=context)


def _reply_text_problems(conversation: Conversation, text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ApiError("invalid_reply", _("Write the reply."), 422,
                       [ErrorDetail(field="text", code="required", message=_("Write the reply."))])
    text = text.strip()
    limit = REPLY_LIMITS.get(conversation.network, 5000)
    prefix = len(conversation.contact_handle) + 2 if conversation.network == "mastodon" else 0
    if len(text) + prefix > limit:
        raise ApiError("invalid_reply", _("The reply is too long for this network."), 422,
                       [ErrorDetail(field="text", code="too_long",
                                    message=_("At most %(limit)s characters here.") % {"limit": max(limit - prefix, 0)})])
    return text


def reply_send(*, store: Store, conversation_id: int, user, text: object, resolve: bool = False,
               canned_reply_id: int | None = None, seen_message_id: int | None = None,
               now: datetime | None = None, author_label: str = "") -> Message:
    """Answer the person through the channel they wrote on; the message goes out as a channels.Delivery.

    `seen_message_id` is the newest message the agent had on screen: when someone else answered since,
    nothing is sent and a 409 says who (the agent decides whether to send anyway). `user` is None for a
    reply through the API (`author_label` then says which key sent it). A question from the
    widget is answered as a staff answer on the product page (and by e-mail when the person left one),
    a review with the store's public reply (and by e-mail).
    """
    from tertulia.ugc.models import Question, Review
    from tertulia.ugc.services import answer_post, store_reply

    moment = now or timezone.now()
    with transaction.atomic():
        conversation = _locked(store, conversation_id)
        text = _reply_text_problems(conversation, text)
        if seen_message_id is not None:
            newer = (conversation.messages.filter(pk__gt=seen_message_id, direction=MessageDirection.OUTBOUND)
                     .exclude(author_user_id=getattr(user, "pk", None)).select_related("author_user").last())
            if newer is not None:
                who = _display_user(newer.author_user)
                raise ApiError("conversation_changed",
                               _("%(who)s answered this conversation while you were writing.") % {"who": who}, 409,
                               [ErrorDetail(field="seen_message_id", code="stale", message=who)])
        latest = _latest_inbound(conversation)
        delivery = None
        if conversation.network in SOCIAL:
            outgoing = _outgoing_social(conversation, latest)
            delivery = _delivery(conversation, outgoing, text, moment)
        elif conversation.network == "email":
            outgoing = _outgoing_email(conversation, latest)
            delivery = _delivery(conversation, outgoing, text, moment)
        elif conversation.kind == ConversationKind.QUESTION and conversation.question_id:
            answer_post(store=store, question_id=conversation.question_id, text=text, staff_user=user)
            question = Question.objects.for_store(store).select_related("product").get(pk=conversation.question_id)
            delivery = _notice_by_email(conversation, question.author_email, question.customer_id,
                                        _answer_notice(store, question.product.title, question.text, text,
                                                       question.language or conversation.language), moment)
        elif conversation.kind == ConversationKind.REVIEW and conversation.review_id:
            store_reply(store=store, review_id=conversation.review_id, text=text, user=user)
            review = Review.objects.for_store(store).select_related("product").get(pk=conversation.review_id)
            delivery = _notice_by_email(conversation, review.author_email, review.customer_id,
                                        _review_reply_notice(store, review.product.title, text,
                                                             review.language or conversation.language), moment)
        else:
            raise ApiError("cannot_reply", _("Posts heard on %(network)s cannot be answered from here; answer on the "
                                             "page itself.") % {"network": conversation.network}, 422)
        message = Message.objects.create(
            store=store, conversation=conversation, direction=MessageDirection.OUTBOUND, author_user=user,
            author_name=(_display_user(user) or author_label)[:200], text=text, delivery=delivery, created_at=moment,
            canned_reply_id=canned_reply_id if canned_reply_id and CannedReply.objects.for_store(store)
            .filter(pk=canned_reply_id).exists() else None)
        conversation.message_count += 1
        conversation.last_message_at = conversation.last_outbound_at = moment
        previous = conversation.status
        resolving = resolve and previous != ConversationStatus.RESOLVED
        answering = conversation.first_response_at is None
        # Business time since the conversation began: the first response's and the resolution's measure.
        elapsed = business_seconds(schedule_for(store_id=store.pk), conversation.created_at, moment) \
            if answering or resolving else None
        if answering:
            conversation.first_response_at = moment
            conversation.first_responder = user
            conversation.first_response_seconds = elapsed
        if conversation.assignee_id is None and getattr(user, "pk", None):
            conversation.assignee, conversation.assigned_at = user, moment
            _event(conversation, "assigned", _actor(user), assignee=user.pk, previous=None, by_reply=True)
        conversation.status = ConversationStatus.RESOLVED if resolve else ConversationStatus.PENDING
        conversation.snoozed_until = None
        if resolving:
            _resolved(conversation, user, moment, elapsed)
        conversation.updated_at = moment
        conversation.save()
        if previous != conversation.status:
            _event(conversation, "status", _actor(user), previous=previous, status=conversation.status)
        Presence.objects.filter(conversation=conversation, user_id=getattr(user, "pk", None)).update(composing=False)
    return message


def _delivery(conversation: Conversation, outgoing: Outgoing, text: str, moment: datetime) -> Delivery:
    return Delivery.objects.create(
        store_id=conversation.store_id, customer_id=conversation.customer_id, channel=outgoing.channel,
        status=DeliveryStatus.SCHEDULED, due_at=moment, language=conversation.language[:8],
        to_address=outgoing.to[:320], subject=outgoing.subject[:300], body_text=text,
        reply_to=outgoing.reply_to[:450], reply_context=outgoing.reply_context, sender=outgoing.sender,
        created_at=moment, updated_at=moment)


def _notice_by_email(conversation: Conversation, address: str, customer_id: int | None, notice: tuple[str, str],
                     moment: datetime) -> Delivery | None:
    if not address:
        return None
    subject, body = notice
    outgoing = Outgoing(channel="email", to=address, subject=subject, reply_context={"answer": conversation.kind})
    delivery = _delivery(conversation, outgoing, body, moment)
    if customer_id and delivery.customer_id is None:
        Delivery.objects.filter(pk=delivery.pk).update(customer_id=customer_id)
    return delivery


def _answer_notice(store: Store, product: str, question: str, answer: str, language: str) -> tuple[str, str]:
    with translation.override(language or store.language or "es"):
        subject = _("%(store)s answered your question about %(product)s") % {"store": store.name, "product": product}
        body = "\n".join([_("You asked: %(question)s") % {"question": question}, "",
                          _("Our answer: %(answer)s") % {"answer": answer}, "",
                          _("The answer is also on the product page, for everyone who has the same doubt."), "",
                          store.name])
    return subject[:300], body


def _review_reply_notice(store: Store, product: str, reply: str, language: str) -> tuple[str, str]:
    with translation.override(language or store.language or "es"):
        subject = _("%(store)s replied to your review of %(product)s") % {"store": store.name, "product": product}
        body = "\n".join([_("Thank you for your review. Our reply, published under it:"), "", reply, "", store.name])
    return subject[:300], body


def _display_user(user) -> str:
    if user is None:
        return ""
    return (user.get_full_name() or user.get_username()) if hasattr(user, "get_full_name") else str(user)


def note_add(*, store: Store, conversation_id: int, user, text: object, now: datetime | None = None,
             author_label: str = "") -> Message:
    """A private note for the team; @username mentions of store members notify them."""
    if not isinstance(text, str) or not text.strip() or len(text) > NOTE_MAX:
        raise ApiError("invalid_note", _("Write the note (at most %(limit)s characters).") % {"limit": NOTE_MAX}, 422,
                       [ErrorDetail(field="text", code="required" if not str(text or "").strip() else "too_long",
                                    message=_("Write the note."))])
    moment = now or timezone.now()
    with transaction.atomic():
        conversation = _locked(store, conversation_id)
        note = Message.objects.create(store=store, conversation=conversation, direction=MessageDirection.NOTE,
                                      author_user=user, author_name=(_display_user(user) or author_label)[:200],
                                      text=text.strip(),
                                      created_at=moment)
        names = {name.lower().rstrip(".") for name in _MENTION.findall(text)}
        if names:
            members = set(Membership.objects.for_store(store).values_list("user_id", flat=True))
            users = [u for u in get_user_model().objects.filter(pk__in=members)
                     if u.get_username().lower() in names and u.pk != getattr(user, "pk", None)]
            note.mentioned_users.set(users)
            AgentNotification.objects.bulk_create([
                AgentNotification(store=store, user=u, conversation=conversation, message=note, kind="mentioned")
                for u in users])
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=moment)
    return note


def notifications_read(*, store: Store, user, conversation_id: int | None = None) -> int:
    rows = AgentNotification.objects.for_store(store).filter(user=user, read_at__isnull=True)
    if conversation_id is not None:
        rows = rows.filter(conversation_id=conversation_id)
    return rows.update(read_at=timezone.now())


# --- presence ---------------------------------------------------------------------------------------



def presence_touch(*, store: Store, conversation_id: int, user, composing: bool = False,
                   now: datetime | None = None) -> list[dict]:
    """Say this agent has the conversation open (and whether they are writing); returns the others who do."""
    moment = now or timezone.now()
    if not Conversation.objects.for_store(store).filter(pk=conversation_id).exists():
        raise ApiError("not_found", _("There is no such conversation."), 404)
    updated = Presence.objects.filter(conversation_id=conversation_id, user=user).update(seen_at=moment,
                                                                                        composing=composing)
    if not updated:
        try:
            with transaction.atomic():
                Presence.objects.create(store=store, conversation_id=conversation_id, user=user, seen_at=moment,
                                        composing=composing)
        except IntegrityError:
            Presence.objects.filter(conversation_id=conversation_id, user=user).update(seen_at=moment, composing=composing)
    from tertulia.inbox.selectors import viewers

    return viewers(store=store, conversation_id=conversation_id, exclude_user_id=user.pk, now=moment)


def presence_leave(*, store: Store, conversation_id: int, user) -> None:
    Presence.objects.for_store(store).filter(conversation_id=conversation_id, user=user).delete()


# --- canned replies -------------------------------------------------------------------------------


def canned_reply_set(*, store: Store, shortcut: object, title: object, body_es: object, body_en: object,
                     actor=None) -> CannedReply:
    problems = []
    if not isinstance(shortcut, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", shortcut):
        problems.append(ErrorDetail(field="shortcut", code="invalid",
                                    message=_("Lower-case letters, digits, - and _, at most 40.")))
    if not isinstance(title, str) or not title.strip() or len(title) > 100:
        problems.append(ErrorDetail(field="title", code="invalid", message=_("A title of at most 100 characters.")))
    for name, body in (("body_es", body_es), ("body_en", body_en)):
        problems += [ErrorDetail(field=f, code=c, message=m) for f, c, m in canned.problems(body, name)]
    if problems:
        raise ApiError("invalid_canned_reply", _("The canned reply was not saved."), 422, problems)
    moment = timezone.now()
    row, _created = CannedReply.objects.for_store(store).update_or_create(
        store=store, shortcut=shortcut,
        defaults={"title": title.strip(), "body_es": body_es.strip(), "body_en": body_en.strip(), "updated_at": moment,
                  "created_by": _actor(actor)})
    return row


def canned_reply_delete(*, store: Store, canned_reply_id: int) -> bool:
    deleted, _rows = CannedReply.objects.for_store(store).filter(pk=canned_reply_id).delete()
    return bool(deleted)


# --- teams and settings ---------------------------------------------------------------------------


def team_set(*, store: Store, name: object, member_ids: Sequence[int] = (), auto_assign: bool = True,
             max_open_per_agent: int = 10, team_id: int | None = None) -> Team:
    problems = []
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        problems.append(ErrorDetail(field="name", code="invalid", message=_("A name of at most 100 characters.")))
    if not isinstance(max_open_per_agent, int) or isinstance(max_open_per_agent, bool) or not 1 <= max_open_per_agent <= 1000:
        problems.append(ErrorDetail(field="max_open_per_agent", code="invalid", message=_("Between 1 and 1000.")))
    allowed = _answering_users(store.pk)
    strangers = [uid for uid in member_ids if uid not in allowed]
    if strangers:
        problems.append(ErrorDetail(field="members", code="not_an_agent",
                                    message=_("Only people who can answer in this store can be members.")))
    if problems:
        raise ApiError("invalid_team", _("The team was not saved."), 422, problems)
    with transaction.atomic():
        if team_id is not None:
            team = Team.objects.for_store(store).select_for_update().filter(pk=team_id).first()
            if team is None:
                raise ApiError("not_found", _("There is no such team."), 404)
            team.name, team.auto_assign, team.max_open_per_agent = name.strip(), auto_assign, max_open_per_agent
            try:
                with transaction.atomic():
                    team.save()
            except IntegrityError:
                raise ApiError("invalid_team", _("There is a team with that name already."), 422,
                               [ErrorDetail(field="name", code="taken", message=_("Taken."))]) from None
        else:
            team, _created = Team.objects.get_or_create(store=store, name=name.strip(), defaults={
                "auto_assign": auto_assign, "max_open_per_agent": max_open_per_agent})
            if not _created:
                Team.objects.filter(pk=team.pk).update(auto_assign=auto_assign, max_open_per_agent=max_open_per_agent)
        current = set(TeamMember.objects.filter(team=team).values_list("user_id", flat=True))
        wanted = set(member_ids)
        TeamMember.objects.filter(team=team, user_id__in=current - wanted).delete()
        TeamMember.objects.bulk_create([TeamMember(store=store, team=team, user_id=uid) for uid in sorted(wanted - current)],
                                       ignore_conflicts=True)
    team.refresh_from_db()
    return team


def team_member_available(*, store: Store, team_id: int, user_id: int, available: bool) -> bool:
    return bool(TeamMember.objects.for_store(store).filter(team_id=team_id, user_id=user_id).update(available=available))


def inbox_settings_update(*, store: Store, changes: dict[str, Any]) -> InboxSettings:
    """Change the store's inbox rules (only the keys given); nothing is saved when anything is invalid."""
    from tertulia.inbox.business_hours import Schedule

    allowed = {"business_hours", "holidays", "first_response_minutes", "resolution_minutes", "routing",
               "default_team", "posts_to_inbox", "reviews_to_inbox"}
    problems = [ErrorDetail(field=key, code="unknown", message=_("Not an inbox setting.")) for key in changes
                if key not in allowed]
    row = InboxSettings.objects.for_store(store).first() or InboxSettings(store=store)
    merged = {key: changes.get(key, getattr(row, key if key != "default_team" else "default_team_id"))
              for key in allowed}
    try:
        Schedule.parse(hours=merged["business_hours"], holidays=merged["holidays"], zone=store.timezone or "UTC")
    except ScheduleError as error:
        problems.append(ErrorDetail(field=error.field, code="invalid", message=str(error)))
    for key in ("first_response_minutes", "resolution_minutes"):
        value = merged[key]
        if not isinstance(value, dict) or set(value) - set(Priority.values) or any(
                not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 60 * 24 * 60 for v in value.values()):
            problems.append(ErrorDetail(field=key, code="invalid",
                                        message=_("Minutes (1 to 86400) per priority: urgent, high, normal, low.")))
    teams = set(Team.objects.for_store(store).values_list("pk", flat=True))
    routing = merged["routing"]
    if not isinstance(routing, dict) or set(routing) - set(ConversationKind.values) or any(
            v not in teams for v in routing.values()):
        problems.append(ErrorDetail(field="routing", code="invalid",
                                    message=_("A team of this store per kind of conversation.")))
    if merged["default_team"] is not None and merged["default_team"] not in teams:
        problems.append(ErrorDetail(field="default_team", code="invalid", message=_("A team of this store.")))
    if merged["posts_to_inbox"] not in ("actionable", "all", "addressed", "none"):
        problems.append(ErrorDetail(field="posts_to_inbox", code="invalid", message="actionable, all, addressed, none"))
    if merged["reviews_to_inbox"] not in ("negative", "all", "none"):
        problems.append(ErrorDetail(field="reviews_to_inbox", code="invalid", message="negative, all, none"))
    if problems:
        raise ApiError("invalid_settings", _("The inbox settings were not saved."), 422, problems)
    for key, value in merged.items():
        setattr(row, "default_team_id" if key == "default_team" else key, value)
    row.updated_at = timezone.now()
    row.save()
    return row


def conversations_erase(*, store: Store, customer_ids: Sequence[int], handles: Sequence[tuple[str, str]] = ()) -> int:
    """A person's erasure: their conversations (linked to them, or with one of their handles or addresses)
    keep kind, network, status and times for the figures; the handles, the subject and every message's
    words go (what they wrote, what we answered them, what the team noted)."""
    by_handle = Q()
    for _kind, value in handles:
        by_handle |= Q(contact_handle__iexact=value) | Q(contact_handle__iexact=f"@{value}")
    rows = Conversation.objects.for_store(store).filter(Q(customer_id__in=list(customer_ids)) | by_handle)
    ids = list(rows.values_list("pk", flat=True))
    Message.objects.for_store(store).filter(conversation_id__in=ids).update(text="", author_name="")
    return Conversation.objects.for_store(store).filter(pk__in=ids).exclude(
        contact_handle="", contact_name="", subject="", customer=None).update(
        contact_handle="", contact_name="", subject="", customer=None, updated_at=timezone.now())
