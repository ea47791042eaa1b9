"""The inbox's periodic work, run by the worker every few seconds (listening.runner) and safe to run twice.

- snoozed conversations whose time has come are open again;
- sent replies lend the conversation their provider id, so an answer to our reply finds its thread;
- published questions from the widget, and the reviews the store's rules name, become conversations;
- open conversations nobody could take (every agent at the cap) are offered again.

Questions and reviews are found set-wise in a window (the last minutes, and every ten minutes the last
two weeks), so one missed by a crash or a late moderation decision is picked up by the next wide look;
the thread key makes each one a single conversation whatever the number of sweeps and workers.
"""

import logging
from datetime import datetime, timedelta

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from tertulia.channels.models import Delivery
from tertulia.inbox.models import (
    Conversation,
    ConversationEvent,
    ConversationKind,
    ConversationStatus,
    Message,
    MessageDirection,
)
from tertulia.inbox.selectors import inbox_settings_for
from tertulia.inbox.services import Inbound, conversation_add_inbound, conversation_auto_assign

log = logging.getLogger("tertulia.inbox")

RECENT = timedelta(minutes=15)
WIDE = timedelta(days=14)
WIDE_EVERY = timedelta(minutes=10)
REASSIGN_BATCH = 200
_last_wide: dict[str, datetime] = {}


def inbox_sweep(*, now: datetime | None = None, wide: bool | None = None) -> dict[str, int]:
    moment = now or timezone.now()
    if wide is None:
        last = _last_wide.get("at")
        wide = last is None or moment - last >= WIDE_EVERY or moment < last
    if wide:
        _last_wide["at"] = moment
    since = moment - (WIDE if wide else RECENT)
    done = {"woken": snoozes_wake(now=moment), "linked": outbound_ids_link(),
            "questions": questions_to_inbox(since=since, now=moment), "reviews": reviews_to_inbox(since=since, now=moment),
            "assigned": unassigned_offer(now=moment)}
    if any(done.values()):
        log.info("inbox sweep", extra=done)
    return done


def snoozes_wake(*, now: datetime) -> int:
    due = list(Conversation.objects.filter(status=ConversationStatus.SNOOZED, snoozed_until__lte=now)
               .values_list("pk", "store_id")[:1000])
    woken = 0
    for pk, store_id in due:
        if Conversation.objects.filter(pk=pk, status=ConversationStatus.SNOOZED).update(
                status=ConversationStatus.OPEN, snoozed_until=None, updated_at=now):
            ConversationEvent.objects.create(store_id=store_id, conversation_id=pk, kind="status",
                                             details={"previous": "snoozed", "status": "open", "woken": True})
            woken += 1
    return woken


def outbound_ids_link() -> int:
    provider_id = Delivery.objects.filter(pk=OuterRef("delivery_id")).values("provider_message_id")[:1]
    pending = Message.objects.filter(direction=MessageDirection.OUTBOUND, external_id="", delivery__isnull=False,
                                     delivery__sent_at__isnull=False).exclude(delivery__provider_message_id="")
    return pending.update(external_id=Subquery(provider_id))


def questions_to_inbox(*, since: datetime, now: datetime) -> int:
    from tertulia.ugc.models import Question, Status

    rows = list(Question.objects.filter(status=Status.PUBLISHED, updated_at__gte=since)
                .select_related("product").order_by("id")[:2000])
    return _to_inbox(rows, kind=ConversationKind.QUESTION, now=now)


def reviews_to_inbox(*, since: datetime, now: datetime) -> int:
    from tertulia.ugc.models import Review, Status

    rows = Review.objects.filter(status=Status.PUBLISHED, updated_at__gte=since, reply_text="")
    rows = list(rows.select_related("product").order_by("id")[:2000])
    by_store: dict[int, str] = {}
    kept = []
    for review in rows:
        rule = by_store.setdefault(review.store_id, inbox_settings_for(store_id=review.store_id).reviews_to_inbox)
        if rule == "all" or (rule == "negative" and review.rating <= 3):
            kept.append(review)
    return _to_inbox(kept, kind=ConversationKind.REVIEW, now=now)


def _to_inbox(items: list, *, kind: str, now: datetime) -> int:
    if not items:
        return 0
    keys = {f"{kind}:{item.pk}" for item in items}
    existing = set(Conversation.objects.filter(thread_key__in=sorted(keys)).values_list("store_id", "thread_key"))
    added = 0
    for item in items:
        key = f"{kind}:{item.pk}"
        if (item.store_id, key) in existing:
            continue
        text = item.text if kind == ConversationKind.QUESTION else \
            "\n".join(part for part in (f"{'★' * item.rating}{'☆' * (5 - item.rating)}", item.title, item.text) if part)
        inbound = Inbound(
            kind=kind, network="widget" if kind == ConversationKind.QUESTION else "reviews",
            external_id=key, text=text, at=item.created_at, thread_key=key,
            subject=item.product.title[:300], customer_id=item.customer_id,
            contact_handle=item.author_email, contact_name="" if item.anonymous else item.display_name,
            language=item.language, intent="question" if kind == ConversationKind.QUESTION else "complaint"
            if item.rating <= 2 else "other",
            sentiment="negative" if kind == ConversationKind.REVIEW and item.rating <= 2 else "",
            sentiment_score=-0.6 if kind == ConversationKind.REVIEW and item.rating <= 2 else 0.0,
            question_id=item.pk if kind == ConversationKind.QUESTION else None,
            review_id=item.pk if kind == ConversationKind.REVIEW else None,
        )
        if conversation_add_inbound(store_id=item.store_id, inbound=inbound, now=now) is not None:
            added += 1
    return added


def unassigned_offer(*, now: datetime) -> int:
    waiting = list(Conversation.objects.filter(status=ConversationStatus.OPEN, assignee__isnull=True)
                   .filter(team__auto_assign=True).order_by("-priority_score", "created_at")[:REASSIGN_BATCH])
    assigned = 0
    for conversation in waiting:
        if conversation_auto_assign(conversation=conversation, now=now) is not None:
            assigned += 1
    return assigned

