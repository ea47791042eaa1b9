"""Writes of the journeys engine: preparing steps for sending, exits, answers, and the triggers others call.

The dispatcher (channels.dispatch) claims due deliveries and hands the journey steps among them to
`deliveries_prepare`, which checks every exit condition again at send time, builds each message's
context and renders it, all in batch: a handful of queries per batch whatever its size. A step whose
enrollment has ended is skipped; an exit condition met now ends the enrollment (status `exited`,
with the reason) and cancels its steps still waiting.
"""

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tertulia.channels.models import Delivery, DeliveryStatus
from tertulia.commerce.models import Cart, CartStatus, Order, OrderStatus
from tertulia.core.db import atomic_with_retry, keyed, select_in, store_scope
from tertulia.core.models import Store
from tertulia.customers.models import Consent, ConsentStatus, Customer
from tertulia.inbox.models import Message, MessageDirection
from tertulia.journeys import codes
from tertulia.journeys.definitions import (  # noqa: F401 - re-exported: the engine's one front door
    CONFIRM_STEP,
    DEFAULTS,
    assignment_for,
    definition_validate,
    definitions_for_versions,
    journey_update,
    journeys_ensure_defaults,
    step_effective,
    step_templates,
)
from tertulia.journeys.links import review_token_make
from tertulia.journeys.models import Enrollment, EnrollmentStatus, Journey, JourneyKey, TriggerType
from tertulia.journeys.triggers import (  # noqa: F401 - re-exported for the worker
    Candidate,
    enrollments_create,
    enrollments_settle,
    lookahead,
    triggers_sweep,
    welcome_candidate,
)
from tertulia.listening.models import Mention

log = logging.getLogger("tertulia.journeys")

REVIEW_PATH = "/review/"  # the review form of ugc (#4) opens the signed token found here
ANSWER_MAX = 64


@dataclass(frozen=True, slots=True)
class Send:
    """A prepared message: the dispatcher sends it through the channel's adapter as is."""

    to: str
    subject: str
    text: str
    html: str
    links: list[str]
    headers: dict[str, str]
    language: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Not sent. `exit`: the enrollment ended because of it (already recorded), else only this step is skipped."""

    reason: str
    detail: str = ""
    exit: bool = False


Prepared = Send | Skip

_EXIT_MESSAGES = {
    "order_placed": "An order was placed since the journey started.",
    "cart_emptied": "The cart was emptied.",
    "cart_missing": "The cart is no longer known.",
    "unsubscribed": "The person unsubscribed since the journey started.",
    "answered": "The person answered (or, after a post, the team answered them in the inbox).",
    "journey_disabled": "The journey was switched off.",
    "customer_gone": "The person's profile was erased or merged.",
    "order_cancelled": "The order was cancelled.",
    "order_missing": "The order is no longer known.",
    "mention_missing": "The mention is no longer known.",
}
_ORDER_TRIGGERED = (JourneyKey.THANK_YOU, JourneyKey.REVIEW_REQUEST, JourneyKey.REFERRAL_REQUEST)


def public_url(path: str) -> str:
    return getattr(settings, "TERTULIA_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/") + path


def review_url_for(*, store_id: int, order_id: int, customer_id: int) -> str:
    """The signed review link of a delivered order (valid 45 days: journeys.links)."""
    return public_url(REVIEW_PATH + review_token_make(store_id=store_id, order_id=order_id, customer_id=customer_id))


# --- Exits ----------------------------------------------------------------------------------------------


def _exit(store_id: int, reasons: dict[int, str], now: datetime) -> int:
    """End these enrollments with their reason and cancel every step still waiting; returns how many ended."""
    ended = 0
    by_reason: dict[str, list[int]] = defaultdict(list)
    for enrollment_id, reason in reasons.items():
        by_reason[reason].append(enrollment_id)

    def write() -> int:
        count = 0
        for reason, ids in sorted(by_reason.items()):
            ids = sorted(ids)
            count += Enrollment.objects.for_store(store_id).filter(pk__in=ids, status=EnrollmentStatus.ACTIVE).update(
                status=EnrollmentStatus.EXITED, exit_reason=reason[:32], ended_at=now)
            Delivery.objects.for_store(store_id).filter(enrollment_id__in=ids, status=DeliveryStatus.SCHEDULED).update(
                status=DeliveryStatus.CANCELLED, reason=reason[:32], detail=_EXIT_MESSAGES.get(reason, ""),
                updated_at=now)
        return count

    if reasons:
        ended = atomic_with_retry(write)
    return ended


def enrollments_exit(*, store: Store | int, customer_id: int, reason: str, journey_keys: Sequence[str] | None = None,
                     now: datetime | None = None) -> int:
    """End a person's active enrollments (all, or those of some journeys): an unsubscribe, a review written...

    Called by the unsubscribe link (reason `unsubscribed`), among others. Returns how many ended.
    """
    store_id = store if isinstance(store, int) else store.pk
    query = Enrollment.objects.for_store(store_id).filter(customer_id=customer_id, status=EnrollmentStatus.ACTIVE)
    if journey_keys is not None:
        query = query.filter(journey_key__in=list(journey_keys))
    ids = list(query.values_list("id", flat=True))
    return _exit(store_id, dict.fromkeys(ids, reason), now or timezone.now())


def enrollment_answer(*, store: Store | int, enrollment_id: int, answer: str, note: str = "",
                      now: datetime | None = None) -> Enrollment | None:
    """Record a one-click answer ("price", "shipping"...): the journey has done its job and ends (`answered`).

    The first answer is kept; a later click on another choice does not overwrite it. A free-text
    note that follows the answer is kept in the enrollment's context. None: no such enrollment.
    """
    store_id = store if isinstance(store, int) else store.pk
    moment = now or timezone.now()
    answer = str(answer or "").strip()[:ANSWER_MAX]
    with transaction.atomic():
        enrollment = Enrollment.objects.for_store(store_id).select_for_update().filter(pk=enrollment_id).first()
        if enrollment is None:
            return None
        changed = []
        if answer and not enrollment.answer:
            enrollment.answer = answer
            changed.append("answer")
        if note:
            enrollment.context = {**(enrollment.context or {}), "answer_note": str(note)[:1000]}
            changed.append("context")
        if changed:
            enrollment.save(update_fields=changed)
        if enrollment.status == EnrollmentStatus.ACTIVE:
            _exit(store_id, {enrollment.pk: "answered"}, moment)
            enrollment.refresh_from_db()
    return enrollment


# --- Triggers called by other apps ---------------------------------------------------------------------


def journeys_trigger_review(*, store: Store | int, customer_id: int, review_id: int | str, rating: int,
                            at: datetime, now: datetime | None = None) -> bool:
    """A review was written: a good one (trigger.min_rating stars or more) starts the referral request.

    Called by ugc when a review is published. Returns True when the person was enrolled (False: the
    journey is off, the rating is too low, the review is too old, or they were asked lately).
    """
    store_id = store if isinstance(store, int) else store.pk
    moment = now or timezone.now()
    journey = Journey.objects.for_store(store_id).filter(key=JourneyKey.REFERRAL_REQUEST, enabled=True).first()
    if journey is None:
        return False
    trigger = journey.definition.get("trigger") or {}
    if not isinstance(rating, int) or rating < int(trigger.get("min_rating") or 4):
        return False
    if at + timedelta(seconds=int(trigger.get("delay_seconds") or 0)) < moment - timedelta(
            seconds=int(trigger.get("lookback_seconds") or 7 * 86400)):
        return False
    cooldown = int(trigger.get("cooldown_seconds") or 0)
    if cooldown and Enrollment.objects.filter(journey_id=journey.pk, customer_id=customer_id,
                                              enrolled_at__gt=moment - timedelta(seconds=cooldown)).exists():
        return False
    if not Customer.objects.for_store(store_id).filter(pk=customer_id, erased_at__isnull=True).exists():
        return False
    return bool(enrollments_create(journey=journey, now=moment, candidates=[
        Candidate(customer_id, TriggerType.REVIEW, str(review_id), at)]))


def subscription_confirmed(*, store: Store | int, customer_id: int, now: datetime | None = None) -> bool:
    """Double opt-in confirmed (channels.tracking): welcome the person now rather than at the next sweep."""
    store_id = store if isinstance(store, int) else store.pk
    moment = now or timezone.now()
    journey = Journey.objects.for_store(store_id).filter(key=JourneyKey.WELCOME, enabled=True).first()
    consent = Consent.objects.for_store(store_id).filter(customer_id=customer_id, channel="email",
                                                         status=ConsentStatus.SUBSCRIBED).first()
    if journey is None or consent is None:
        return False
    if Enrollment.objects.filter(journey_id=journey.pk, customer_id=customer_id, trigger_type=TriggerType.SUBSCRIPTION,
                                 trigger_id__startswith="email:").exists():
        enrolled = 0  # welcomed once, whatever happens to the subscription later
    else:
        enrolled = enrollments_create(journey=journey, now=moment, candidates=[
            welcome_candidate(customer_id, consent.changed_at)])
    # The confirmation e-mail has done its work.
    confirm = list(Enrollment.objects.for_store(store_id).filter(
        journey_id=journey.pk, customer_id=customer_id, status=EnrollmentStatus.ACTIVE,
        trigger_id__startswith=f"{CONFIRM_STEP}:").values_list("id", flat=True))
    if confirm:
        enrollments_settle(store_id=store_id, now=moment, enrollment_ids=confirm)
    return bool(enrolled)


def deliveries_finished(*, deliveries: Sequence[Delivery], now: datetime | None = None) -> int:
    """The dispatcher's note that these steps ended (sent, failed, skipped): complete what has nothing left."""
    moment = now or timezone.now()
    by_store: dict[int, set[int]] = defaultdict(set)
    for delivery in deliveries:
        if delivery.enrollment_id:
            by_store[delivery.store_id].add(delivery.enrollment_id)
    return sum(enrollments_settle(store_id=store_id, now=moment, enrollment_ids=sorted(ids))
               for store_id, ids in by_store.items())


enrollment_step_done = deliveries_finished  # the name the interface proposed


# --- Preparing steps for sending -----------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """Everything one store's part of a batch needs, read with one query per kind."""

    store: Store
    enrollments: dict[int, Enrollment]
    journeys: dict[int, Journey]
    definitions: dict[tuple[int, int], dict]
    customers: dict[int, Customer]
    addresses: dict[tuple[int, str], str]
    unsubscribed: dict[int, datetime]
    carts: dict[str, Cart]
    orders: dict[str, Order]
    orders_since: dict[int, list[datetime]]
    products: dict[str, Any]
    mentions: dict[str, Any] = field(default_factory=dict)  # listening.Mention by trigger id (purchase intent)
    mention_products: dict[int, list[Any]] = field(default_factory=dict)  # active catalog.Product it names
    answered: dict[int, list[datetime]] = field(default_factory=dict)  # mention id: the team's replies since


_CHANNEL_KINDS = {"email": ("email",), "sms": ("phone",), "social_dm": ("mastodon",)}


def _address(kind: str, value: str) -> str:
    return f"@{value}" if kind == "mastodon" and not value.startswith("@") else value


def _batch_load(store_id: int, deliveries: list[Delivery]) -> _Batch:
    store = Store.objects.get(pk=store_id)
    # Keyed reads (store_scope, keyed: the ids' own indexes, not the store's whole range on SQLite).
    enrollments = {e.pk: e for e in store_scope(Enrollment.objects.filter(
        pk__in=sorted({d.enrollment_id for d in deliveries})), store_id)}
    journeys = {j.pk: j for j in Journey.objects.for_store(store_id).filter(
        pk__in=sorted({e.journey_id for e in enrollments.values()}))}
    old = {(e.journey_id, e.journey_version) for e in enrollments.values()
           if e.journey_id in journeys and journeys[e.journey_id].version != e.journey_version}
    definitions = {(j.pk, j.version): j.definition for j in journeys.values()}
    definitions.update(definitions_for_versions(journey_versions=old))
    customer_ids = sorted({e.customer_id for e in enrollments.values()})
    customers = {c.pk: c for c in store_scope(Customer.objects.filter(pk__in=customer_ids), store_id).only(
        "id", "first_name", "language", "timezone", "erased_at", "merged_into_id")}
    addresses: dict[tuple[int, str], str] = {}
    kinds = sorted({kind for d in deliveries for kind in _CHANNEL_KINDS.get(d.channel, ())})
    identities = sorted(select_in(
        f"SELECT customer_id, kind, value, verified, id FROM customers_identity WHERE {keyed('store_id')} = %s "  # noqa: S608
        f"AND kind IN ({', '.join(['%s'] * len(kinds))})", [store_id, *kinds], "customer_id", customer_ids,
    ) if kinds else [], key=lambda row: (not row[3], row[4]))  # verified first, then the oldest
    for customer_id, kind, value, _verified, _id in identities:
        for channel, channel_kinds in _CHANNEL_KINDS.items():
            if kind in channel_kinds:
                addresses.setdefault((customer_id, channel), _address(kind, value))
    unsubscribed: dict[int, datetime] = {}
    for customer_id, changed_at in store_scope(Consent.objects.filter(
            customer_id__in=customer_ids, status=ConsentStatus.UNSUBSCRIBED), store_id).values_list(
            "customer_id", "changed_at"):
        unsubscribed[customer_id] = max(changed_at, unsubscribed.get(customer_id, changed_at))
    cart_ids = sorted({e.trigger_id for e in enrollments.values() if e.trigger_type == TriggerType.CART})
    carts = {c.external_id: c for c in Cart.objects.for_store(store_id).filter(external_id__in=cart_ids)} if cart_ids else {}
    order_ids = sorted({e.trigger_id for e in enrollments.values() if e.trigger_type == TriggerType.ORDER})
    orders = {o.external_id: o for o in Order.objects.for_store(store_id).filter(external_id__in=order_ids)} if order_ids else {}
    mentions, mention_products, answered = _mentions_load(store_id, enrollments.values())
    # Orders placed since the journey began end a cart recovery, a win-back and a purchase-intent follow-up.
    watching = [e for e in enrollments.values()
                if e.journey_key in (JourneyKey.ABANDONED_CART, JourneyKey.WINBACK, JourneyKey.PURCHASE_INTENT)]
    orders_since: dict[int, list[datetime]] = defaultdict(list)
    if watching:
        for customer_id, placed_at in (Order.objects.for_store(store_id)
                                       .filter(customer_id__in=sorted({e.customer_id for e in watching}),
                                               placed_at__gte=min(_watched_since(e, mentions) for e in watching))
                                       .exclude(status=OrderStatus.CANCELLED).values_list("customer_id", "placed_at")):
            orders_since[customer_id].append(placed_at)
    skus = {str(item.get("sku")) for source in (*carts.values(), *orders.values())
            for item in (source.items or []) if isinstance(item, dict) and item.get("sku")}
    products = {}
    if skus:
        from tertulia.catalog.models import Product

        products = {p.sku: p for p in Product.objects.for_store(store_id).filter(sku__in=sorted(skus)).only(
            "sku", "title", "url", "image_url", "price")}
    return _Batch(store, enrollments, journeys, definitions, customers, addresses, unsubscribed, carts, orders,
                  orders_since, products, mentions, mention_products, answered)


def _watched_since(enrollment: Enrollment, mentions: dict[str, Any]) -> datetime:
    """From when an order ends the enrollment: the trigger moment, or for a mention the moment it was posted.

    A mention is heard a little after it is posted (much later from a slow source): an order placed
    in between was still placed after the person said they wanted to buy.
    """
    mention = mentions.get(enrollment.trigger_id) if enrollment.journey_key == JourneyKey.PURCHASE_INTENT else None
    return min(mention.posted_at, enrollment.trigger_at) if mention is not None else enrollment.trigger_at


def _mentions_load(store_id: int, enrollments: Any) -> tuple[dict[str, Any], dict[int, list[Any]], dict[int, list[datetime]]]:
    """For purchase-intent steps: their mentions, the active products each names, and the team's inbox replies.

    A reply counts when the team wrote in a conversation that holds the mention, after it was posted:
    the person has been answered in public (or in private) and must not be contacted twice.
    At most four queries for the whole batch, none when it has no purchase-intent step.
    """
    ids = sorted({int(e.trigger_id) for e in enrollments
                  if e.trigger_type == TriggerType.MENTION and str(e.trigger_id).isdigit()})
    if not ids:
        return {}, {}, {}
    mentions = {str(m.pk): m for m in store_scope(Mention.objects.filter(pk__in=ids), store_id).only(
        "id", "network", "url", "text", "posted_at", "received_at")}
    named: dict[int, list[Any]] = defaultdict(list)
    through = Mention.products.through
    # In the order the post named them (the through rows are written in that order).
    for link in (through.objects.filter(mention_id__in=sorted(int(k) for k in mentions), product__active=True)
                 .select_related("product").order_by("id")):
        named[link.mention_id].append(link.product)
    conversations: dict[int, set[int]] = defaultdict(set)
    for mention_id, conversation_id in store_scope(Message.objects.filter(
            mention_id__in=sorted(int(k) for k in mentions)), store_id).values_list("mention_id", "conversation_id"):
        conversations[conversation_id].add(mention_id)
    answered: dict[int, list[datetime]] = defaultdict(list)
    if conversations:
        for conversation_id, created_at in store_scope(Message.objects.filter(
                conversation_id__in=sorted(conversations), direction=MessageDirection.OUTBOUND), store_id).values_list(
                "conversation_id", "created_at"):
            for mention_id in conversations[conversation_id]:
                answered[mention_id].append(created_at)
    return mentions, dict(named), dict(answered)


def _exit_reason(batch: _Batch, enrollment: Enrollment, journey: Journey | None) -> str:
    """Why this enrollment must end now, or '' when it carries on. Checked at every send."""
    if journey is None or not journey.enabled:
        return "journey_disabled"
    customer = batch.customers.get(enrollment.customer_id)
    if customer is None or customer.erased_at is not None or customer.merged_into_id is not None:
        return "customer_gone"
    if enrollment.answer:
        return "answered"
    shift = timedelta(seconds=int((enrollment.context or {}).get("shift_seconds") or 0))
    began = min(enrollment.trigger_at + shift, enrollment.enrolled_at)
    left = batch.unsubscribed.get(enrollment.customer_id)
    if left is not None and left >= began:
        return "unsubscribed"
    key = enrollment.journey_key
    if key == JourneyKey.ABANDONED_CART:
        cart = batch.carts.get(enrollment.trigger_id)
        if cart is None:
            return "cart_missing"
        if cart.status == CartStatus.CONVERTED:
            return "order_placed"
        if cart.status == CartStatus.EMPTIED or not cart.items:
            return "cart_emptied"
        if any(placed >= enrollment.trigger_at for placed in batch.orders_since.get(enrollment.customer_id, [])):
            return "order_placed"
    elif key == JourneyKey.WINBACK:
        if any(placed > enrollment.trigger_at for placed in batch.orders_since.get(enrollment.customer_id, [])):
            return "order_placed"
    elif key == JourneyKey.PURCHASE_INTENT and enrollment.trigger_type == TriggerType.MENTION:
        mention = batch.mentions.get(enrollment.trigger_id)
        if mention is None:
            return "mention_missing"
        since = _watched_since(enrollment, batch.mentions)
        if any(placed >= since for placed in batch.orders_since.get(enrollment.customer_id, [])):
            return "order_placed"
        if any(at >= mention.posted_at for at in batch.answered.get(mention.pk, [])):
            return "answered"
    elif key in _ORDER_TRIGGERED and enrollment.trigger_type == TriggerType.ORDER:
        order = batch.orders.get(enrollment.trigger_id)
        if order is None:
            return "order_missing"
        if order.status == OrderStatus.CANCELLED or order.cancelled_at is not None:
            return "order_cancelled"
    return ""


def _items(batch: _Batch, lines: list, store_url: str) -> list[dict]:
    items = []
    for line in lines or []:
        if not isinstance(line, dict):
            continue
        sku = str(line.get("sku") or "")
        product = batch.products.get(sku)
        price = line.get("price") if line.get("price") is not None else (product.price if product else None)
        items.append({
            "name": line.get("title") or (product.title if product else sku),
            "sku": sku,
            "quantity": line.get("quantity") or 1,
            "price": str(price) if price is not None else "",
            "url": (product.url if product and product.url else store_url),
            "image_url": product.image_url if product else "",
        })
    return items


def _context(batch: _Batch, enrollment: Enrollment, step: dict, definition: dict, extra: dict) -> dict[str, Any]:
    store = batch.store
    customer = batch.customers[enrollment.customer_id]
    store_url = (store.website_url or "").rstrip("/")
    context: dict[str, Any] = {
        "first_name": customer.first_name, "store_name": store.name, "store_url": store_url,
        "timezone": customer.timezone or store.timezone,
    }
    key = enrollment.journey_key
    if key == JourneyKey.ABANDONED_CART:
        cart = batch.carts[enrollment.trigger_id]
        context.update({
            "items": _items(batch, cart.items, store_url), "cart_total": str(cart.total),
            "currency": cart.currency or store.currency, "recovery_url": cart.recovery_url or store_url,
        })
    elif key in (JourneyKey.THANK_YOU, JourneyKey.REVIEW_REQUEST) and enrollment.trigger_id in batch.orders:
        order = batch.orders[enrollment.trigger_id]
        context.update({"order_id": order.external_id, "items": _items(batch, order.items, store_url),
                        "order_total": str(order.total), "currency": order.currency or store.currency})
        if key == JourneyKey.REVIEW_REQUEST:
            review_url = review_url_for(store_id=store.pk, order_id=order.pk, customer_id=enrollment.customer_id)
            context["review_url"] = review_url
            for item in context["items"]:
                item["review_url"] = f"{review_url}?item={item['sku']}"
    elif key == JourneyKey.WINBACK:
        context["last_order_at"] = enrollment.trigger_at
    elif key == JourneyKey.WELCOME:
        context["confirm_url"] = ""  # the rendering adds the signed confirmation link to the confirm step
    elif key == JourneyKey.PURCHASE_INTENT and enrollment.trigger_id in batch.mentions:
        mention = batch.mentions[enrollment.trigger_id]
        context.update({
            "products": [{"title": p.title, "url": p.url or store_url, "price": str(p.price) if p.price is not None else "",
                          "currency": p.currency or store.currency, "image_url": p.image_url}
                         for p in batch.mention_products.get(mention.pk, [])],
            "mention_text": mention_excerpt(mention.text), "mention_url": mention.url,
            "network": NETWORK_NAMES.get(mention.network, mention.network),
        })
    context.update(extra)
    if key in (JourneyKey.ABANDONED_CART, JourneyKey.WINBACK):
        for name in ("discount_code", "discount_percent", "discount_expires_at"):
            context.setdefault(name, "")
    return context


NETWORK_NAMES = {"mastodon": "Mastodon", "bluesky": "Bluesky", "x": "X"}  # as the networks spell themselves
EXCERPT_CHARS = 140
_LINK = re.compile(r"https?://\S+", re.IGNORECASE)


def mention_excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A post quoted back on one line: links left out (the message would track them as ours), whitespace
    collapsed, cut at a word with an ellipsis."""
    flat = " ".join(_LINK.sub(" ", text or "").split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def deliveries_prepare(*, deliveries: Sequence[Delivery], now: datetime | None = None) -> dict[int, Prepared]:
    """Decide and render each journey step about to be sent: {delivery id: Send | Skip}.

    Exit conditions are checked again now (an order since the trigger, the cart emptied or
    converted, an unsubscribe on any channel, an answer, the team's reply in the inbox to the post
    that started it, the journey switched off); a step whose enrollment must end is skipped and the
    enrollment exits with its later steps cancelled. Discount
    and referral codes are made on first need (a retried send reuses them). Batched: one query per
    kind of record for the whole batch.
    """
    moment = now or timezone.now()
    result: dict[int, Prepared] = {}
    by_store: dict[int, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        if delivery.enrollment_id is None:
            result[delivery.pk] = Skip("not_a_journey_step", "The delivery belongs to no enrollment.")
        else:
            by_store[delivery.store_id].append(delivery)
    for store_id, batch_deliveries in by_store.items():
        result.update(_prepare_store(store_id, batch_deliveries, moment))
    return result


def _prepare_store(store_id: int, deliveries: list[Delivery], now: datetime) -> dict[int, Prepared]:
    batch = _batch_load(store_id, deliveries)
    result: dict[int, Prepared] = {}
    exits: dict[int, str] = {}
    ready: list[tuple[Delivery, Enrollment, dict, dict]] = []
    for delivery in deliveries:
        enrollment = batch.enrollments.get(delivery.enrollment_id)
        if enrollment is None:
            result[delivery.pk] = Skip("enrollment_missing", "The enrollment no longer exists.")
            continue
        if enrollment.status == EnrollmentStatus.EXITED:
            reason = enrollment.exit_reason or "exited"
            result[delivery.pk] = Skip(reason, _EXIT_MESSAGES.get(reason, "The journey ended."), exit=True)
            continue
        if enrollment.status == EnrollmentStatus.HOLDOUT:
            result[delivery.pk] = Skip("holdout", "The person is in the holdout group.")
            continue
        journey = batch.journeys.get(enrollment.journey_id)
        reason = exits.get(enrollment.pk) or _exit_reason(batch, enrollment, journey)
        if reason:
            exits[enrollment.pk] = reason
            result[delivery.pk] = Skip(reason, _EXIT_MESSAGES.get(reason, ""), exit=True)
            continue
        definition = batch.definitions.get((enrollment.journey_id, enrollment.journey_version)) or journey.definition
        if delivery.step_key == CONFIRM_STEP and enrollment.journey_key == JourneyKey.WELCOME:
            step = {"key": CONFIRM_STEP, "channel": "email", "delay_seconds": 0,
                    "templates": (definition.get("trigger") or {}).get("confirm_templates")}
        else:
            step = step_effective(definition, delivery.step_key, enrollment.variant)
        if step is None:
            result[delivery.pk] = Skip("step_removed", "The journey version of this enrollment has no such step.")
            continue
        address = batch.addresses.get((enrollment.customer_id, delivery.channel))
        if not address:
            result[delivery.pk] = Skip("no_address", f"No {delivery.channel} address for this person.")
            continue
        ready.append((delivery, enrollment, step, definition))
    _exit(store_id, exits, now)

    extras = _codes_for(batch, ready, now)
    from tertulia.journeys.rendering import default_templates, delivery_render

    for delivery, enrollment, step, definition in ready:
        try:
            if step["key"] == CONFIRM_STEP and not step.get("templates"):
                templates = default_templates(JourneyKey.WELCOME, CONFIRM_STEP, "email")
            else:
                templates = step_templates(enrollment.journey_key, step)
            context = _context(batch, enrollment, step, definition, extras.get(delivery.pk, {}))
            delivery.store = batch.store  # the renderer falls back to the store's language and time zone
            customer = batch.customers[enrollment.customer_id]
            rendered = delivery_render(delivery=delivery, templates=templates, context=context,
                                       language=customer.language)
        except Exception as exc:  # noqa: BLE001 - a message that cannot be built is recorded, never sent half-done
            log.exception("journey step could not be rendered", extra={"delivery_id": delivery.pk})
            result[delivery.pk] = Skip("render_failed", f"{type(exc).__name__}: {exc}"[:1000])
            continue
        result[delivery.pk] = Send(
            to=batch.addresses[(enrollment.customer_id, delivery.channel)], subject=rendered.subject,
            text=rendered.text, html=rendered.html, links=list(rendered.links), headers=dict(rendered.headers),
            language=getattr(rendered, "language", "") or customer.language or batch.store.language,
        )
    return result


def _codes_for(batch: _Batch, ready: list[tuple[Delivery, Enrollment, dict, dict]], now: datetime) -> dict[int, dict]:
    """The codes the ready steps show: discount codes of their enrollments, referral codes of their people."""
    extras: dict[int, dict] = defaultdict(dict)
    wanted: dict[int, tuple[int, int, int | None]] = {}
    for _delivery, enrollment, step, _ in ready:
        discount = step.get("discount")
        if discount:
            wanted[enrollment.pk] = (int(discount["percent"]), int(discount["valid_seconds"]), enrollment.customer_id)
    issued = codes.enrollment_discount_codes(store=batch.store.pk, wanted=wanted, now=now) if wanted else {}
    referrers = {e.customer_id: batch.customers[e.customer_id].first_name for _, e, _, _ in ready
                 if e.journey_key == JourneyKey.REFERRAL_REQUEST}
    referral_codes = codes.referral_codes_ensure(store=batch.store.pk, customers=referrers) if referrers else {}
    for delivery, enrollment, step, definition in ready:
        code = issued.get(enrollment.pk) if step.get("discount") else None
        if code is not None:
            extras[delivery.pk].update({"discount_code": code.code, "discount_percent": code.percent,
                                        "discount_expires_at": code.expires_at})
        if enrollment.customer_id in referral_codes:
            referral = {**DEFAULTS[JourneyKey.REFERRAL_REQUEST]["referral"], **(definition.get("referral") or {})}
            code_text = referral_codes[enrollment.customer_id]
            extras[delivery.pk].update({
                "referral_code": code_text,
                "referral_url": codes.referral_link(template=referral["link"],
                                                    store_url=batch.store.website_url or public_url(""), code=code_text),
                "reward_percent": int(referral["reward_percent"]),
            })
    return extras

