"""Triggers: who enters which journey, found in sets by a sweep the worker runs every second.

`triggers_sweep` looks, journey by journey, for facts whose moment has come: carts quiet for the
set delay, orders placed, orders delivered a set time ago, subscriptions, last orders long ago,
purchase intent heard on social media. Each kind of fact is one set-wise query (candidates that are
reachable and not enrolled yet), and each batch of candidates is enrolled with one insert that
ignores conflicts on the enrollment's unique (journey, person, trigger), so a replayed event or two
workers sweeping side by side never enroll anybody twice. Enrollment writes every step of the
person's journey as a scheduled Delivery, due at the trigger moment plus the step's delay; holdout
enrollments get none.

Sweeps are cheap when nothing happened: each kind remembers (in the process) how far it looked and
next time looks only at facts since then, minus a small overlap; every few minutes, and after any
edit of the journey, it looks at the whole look-back window again, which catches facts that arrived
late. Enrollment runs a few seconds ahead of the moment (LOOKAHEAD), so a message is waiting in
its row when it falls due instead of being created after.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from tertulia.channels.models import Delivery, DeliveryStatus
from tertulia.commerce.models import Cart, CartStatus, Order, OrderStatus
from tertulia.core.db import (
    atomic_with_retry,
    chunks,
    column_values,
    db_datetime,
    insert_returning,
    is_postgres,
    keyed,
    select_in,
    store_scope,
)
from tertulia.customers.models import Consent, ConsentStatus
from tertulia.journeys.definitions import CONFIRM_STEP, assignment_for, journey_channels, steps_effective
from tertulia.journeys.models import Enrollment, EnrollmentStatus, Journey, JourneyKey, TriggerType
from tertulia.listening.models import Intent, Mention

log = logging.getLogger("tertulia.journeys")

DEFAULT_LOOKAHEAD_SECONDS = 5.0
# Incremental sweeps look this far behind where the last one stopped (transactions that were still
# open then). A fact is late only if it arrives after its own moment (a cart after its delay), and
# late facts are found by the full look every FULL_EVERY; a short overlap keeps each look small.
OVERLAP = timedelta(seconds=1)
FULL_EVERY = timedelta(minutes=5)
# Most full looks only need rows written since the previous one (a fact that arrived late was
# written late); a whole look, which also finds people who became reachable later, runs less often.
WHOLE_EVERY = timedelta(minutes=30)
WRITTEN_MARGIN = timedelta(minutes=1)
SETTLE_EVERY = timedelta(minutes=10)
_LOCK_NAMESPACE = 0x7E48  # pg_try_advisory_lock(namespace, store id) while a store is swept


def lookahead() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "TERTULIA_JOURNEYS_LOOKAHEAD_SECONDS", DEFAULT_LOOKAHEAD_SECONDS)))


@dataclass(slots=True)
class Candidate:
    """One person about to enter one journey because of one fact."""

    customer_id: int
    trigger_type: str
    trigger_id: str
    trigger_at: datetime  # the fact's moment; step delays count from here
    shift_seconds: int = 0  # a journey-specific wait beyond trigger.delay_seconds moves every step
    context: dict[str, Any] = field(default_factory=dict)


# --- Enrollment ----------------------------------------------------------------------------------------


def enrollments_create(*, journey: Journey, candidates: Iterable[Candidate], now: datetime,
                       steps: list[dict] | None = None, holdout_allowed: bool = True) -> int:
    """Enroll candidates (once each) and schedule their steps; returns how many were enrolled.

    `steps` replaces the journey's steps (the double opt-in confirmation is a journey of one step
    of its own); `holdout_allowed=False` keeps everybody in (nobody may be held out of a
    confirmation they asked for).
    """
    unique: dict[tuple[int, str, str], Candidate] = {}
    for candidate in candidates:
        unique.setdefault((candidate.customer_id, candidate.trigger_type, candidate.trigger_id), candidate)
    if not unique:
        return 0
    # One lock order for every writer: candidates sorted by the unique key.
    ordered = [unique[key] for key in sorted(unique)]
    definition = journey.definition or {}
    plans = []
    for candidate in ordered:
        if holdout_allowed:
            assigned = assignment_for(store_id=journey.store_id, journey_key=journey.key,
                                      customer_id=candidate.customer_id, definition=definition)
            variant, holdout = assigned.variant, assigned.holdout
        else:
            variant, holdout = "", False
        plans.append((candidate, variant, holdout))

    def write() -> int:
        created = 0
        for part in chunks(plans, 500):
            rows = [{
                "store_id": journey.store_id, "journey_id": journey.pk, "journey_key": journey.key,
                "customer_id": c.customer_id, "trigger_type": c.trigger_type, "trigger_id": c.trigger_id,
                "trigger_at": c.trigger_at, "journey_version": journey.version, "variant": variant,
                "holdout": holdout,
                "status": EnrollmentStatus.HOLDOUT if holdout else EnrollmentStatus.ACTIVE,
                "exit_reason": "", "answer": "",
                "context": {**c.context, "shift_seconds": c.shift_seconds} if c.shift_seconds else c.context,
                "enrolled_at": now,
            } for c, variant, holdout in part]
            columns, values = column_values(Enrollment, rows)
            inserted = insert_returning(
                Enrollment._meta.db_table, columns, values,
                conflict=["journey_id", "customer_id", "trigger_type", "trigger_id"],
                returning=["id", "customer_id", "trigger_type", "trigger_id"],
            )
            created += len(inserted)
            by_key = {(c.customer_id, c.trigger_type, c.trigger_id): (c, variant, holdout) for c, variant, holdout in part}
            deliveries = []
            for enrollment_id, customer_id, trigger_type, trigger_id in inserted:
                candidate, variant, holdout = by_key[(customer_id, trigger_type, trigger_id)]
                if holdout:
                    continue
                for step in steps if steps is not None else steps_effective(definition, variant):
                    due = candidate.trigger_at + timedelta(seconds=candidate.shift_seconds + int(step["delay_seconds"]))
                    deliveries.append({
                        "store_id": journey.store_id, "customer_id": customer_id, "channel": step["channel"],
                        "enrollment_id": enrollment_id, "journey_key": journey.key, "step_key": step["key"],
                        "variant": variant, "status": DeliveryStatus.SCHEDULED, "due_at": due,
                        "created_at": now, "updated_at": now,
                    })
            if deliveries:
                columns, values = column_values(Delivery, deliveries)
                insert_returning(Delivery._meta.db_table, columns, values, conflict=None, returning=["id"])
        return created

    created = atomic_with_retry(write)
    if created:
        log.info("enrolled", extra={"store_id": journey.store_id, "journey": journey.key, "count": created})
    return created


# --- Finders: one set-wise query per kind of fact ----------------------------------------------------


# Finders read a range of facts with one indexed query, then drop who is enrolled already, not
# reachable or gone with lookups keyed by the ids found (one array each on PostgreSQL). Correlated
# NOT EXISTS filters would say the same, but right after a bulk load PostgreSQL's statistics are
# stale and it may plan them as scans per row: keyed lookups stay linear whatever the planner knows.


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # raw rows from SQLite: Django's naive-UTC text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _keep(journey: Journey, rows: list[tuple], trigger_type: str) -> list[tuple]:
    """Rows (customer id, trigger id, moment, ...) of people reachable, alive and not enrolled for that trigger.

    Enrolled is by trigger whoever it was for: a cart that changed hands, or two profiles merged,
    is still enrolled once.
    """
    if not rows:
        return []
    store_id = journey.store_id
    enrolled = {row[0] for row in select_in(
        "SELECT trigger_id FROM journeys_enrollment WHERE journey_id = %s AND trigger_type = %s",
        [journey.pk, trigger_type], "trigger_id", sorted({str(r[1]) for r in rows}))}
    rows = [r for r in rows if r[1] not in enrolled]
    customers = sorted({r[0] for r in rows})
    reachable: set[int] = set()
    for channel in sorted(journey_channels(journey.definition)):
        reachable.update(row[0] for row in select_in(
            f"SELECT customer_id FROM customers_consent WHERE {keyed('store_id')} = %s AND channel = %s "  # noqa: S608
            "AND status = %s",
            [store_id, channel, ConsentStatus.SUBSCRIBED.value], "customer_id", customers))
    live = {row[0] for row in select_in(
        f"SELECT id FROM customers_customer WHERE {keyed('store_id')} = %s AND erased_at IS NULL "  # noqa: S608
        "AND merged_into_id IS NULL",
        [store_id], "id", sorted(reachable))}
    return [r for r in rows if r[0] in live]


def _last_orders_of(store_id: int, customers: list[int]) -> dict[int, datetime]:
    """Each person's most recent order that was not cancelled."""
    latest: dict[int, datetime] = {}
    for customer_id, placed_at in select_in(
            "SELECT customer_id, placed_at FROM commerce_order WHERE store_id = %s AND placed_at IS NOT NULL "
            "AND status <> 'cancelled'", [store_id], "customer_id", customers):
        placed_at = _aware(placed_at)
        if customer_id not in latest or placed_at > latest[customer_id]:
            latest[customer_id] = placed_at
    return latest


@dataclass(slots=True)
class Window:
    """Facts to look at: fact moments in (low, high], and with `written_since`, only rows written since then."""

    low: datetime
    high: datetime
    written_since: datetime | None = None


def _written(window: Window) -> dict[str, datetime]:
    return {"updated_at__gt": window.written_since} if window.written_since is not None else {}


def _wait(journey: Journey) -> int:
    return int((journey.definition.get("trigger") or {}).get("delay_seconds") or 0)


def _lookback(journey: Journey) -> timedelta:
    return timedelta(seconds=int((journey.definition.get("trigger") or {}).get("lookback_seconds") or 86400))


def _full_window(journey: Journey, now: datetime, wait: int) -> Window:
    high = now - timedelta(seconds=wait) + lookahead()
    return Window(low=now - timedelta(seconds=wait) - _lookback(journey), high=high)


def carts_abandoned(journey: Journey, window: Window, now: datetime) -> list[Candidate]:
    """Open carts with items and a reachable person, quiet since the window, with no order since."""
    rows = list(
        Cart.objects.for_store(journey.store_id)
        .filter(status=CartStatus.OPEN, last_event_at__gt=window.low, last_event_at__lte=window.high,
                customer__isnull=False, **_written(window))
        .exclude(items=[])
        .values_list("customer_id", "external_id", "last_event_at")
    )
    rows = _keep(journey, rows, TriggerType.CART)
    latest = _last_orders_of(journey.store_id, sorted({r[0] for r in rows}))
    return [Candidate(customer_id, TriggerType.CART, external_id, at) for customer_id, external_id, at in rows
            if not (customer_id in latest and latest[customer_id] >= at)]


def orders_placed(journey: Journey, window: Window, now: datetime) -> list[Candidate]:
    rows = list(
        Order.objects.for_store(journey.store_id)
        .filter(placed_at__gt=window.low, placed_at__lte=window.high, customer__isnull=False, **_written(window))
        .exclude(status=OrderStatus.CANCELLED)
        .values_list("customer_id", "external_id", "placed_at")
    )
    return [Candidate(c, TriggerType.ORDER, external_id, at) for c, external_id, at in _keep(journey, rows, TriggerType.ORDER)]


def category_waits(*, store_id: int, skus: set[str], category_delays: dict[str, int]) -> dict[str, int]:
    """The review delay each SKU asks for: its category's, else the nearest ancestor's with one."""
    from tertulia.catalog.models import Category, Product

    if not category_delays or not skus:
        return {}
    parents = dict(Category.objects.for_store(store_id).values_list("id", "parent_id"))
    external = dict(Category.objects.for_store(store_id).values_list("id", "external_id"))
    waits = {}
    for sku, category_id in Product.objects.for_store(store_id).filter(sku__in=sorted(skus)).values_list("sku", "category_id"):
        seen = set()
        while category_id is not None and category_id not in seen:
            seen.add(category_id)
            if external.get(category_id) in category_delays:
                waits[sku] = int(category_delays[external[category_id]])
                break
            category_id = parents.get(category_id)
    return waits


def orders_delivered_for_review(journey: Journey, window: Window, now: datetime) -> list[Candidate]:
    """Delivered orders whose review moment (delivery + their category's delay) has come.

    An order whose items ask for different delays waits for the longest, so every item has been
    tried when the buyer is asked about all of them.
    """
    trigger = journey.definition.get("trigger") or {}
    default = _wait(journey)
    delays = {str(k): int(v) for k, v in (trigger.get("category_delays") or {}).items()}
    waits = [default, *delays.values()]
    low = now - timedelta(seconds=max(waits)) - _lookback(journey)
    high = now - timedelta(seconds=min(waits)) + lookahead()
    rows = _keep(journey, list(
        Order.objects.for_store(journey.store_id)
        .filter(delivered_at__gt=low, delivered_at__lte=high, cancelled_at__isnull=True, customer__isnull=False)
        .values_list("customer_id", "external_id", "delivered_at", "items")
    ), TriggerType.ORDER)
    skus = {str(item.get("sku")) for *_, items in rows for item in (items or []) if isinstance(item, dict)}
    by_sku = category_waits(store_id=journey.store_id, skus=skus, category_delays=delays)
    candidates = []
    for customer_id, external_id, delivered_at, items in rows:
        wait = max([default] + [by_sku[str(i.get("sku"))] for i in items or []
                                if isinstance(i, dict) and str(i.get("sku")) in by_sku])
        moment = delivered_at + timedelta(seconds=wait)
        if now - _lookback(journey) < moment <= now + lookahead():
            candidates.append(Candidate(customer_id, TriggerType.ORDER, external_id, delivered_at,
                                        shift_seconds=wait - default))
    return candidates


def _cooling(journey: Journey, now: datetime, customers: list[int]) -> set[int]:
    """People asked by this journey within its cooldown."""
    cooldown = int((journey.definition.get("trigger") or {}).get("cooldown_seconds") or 0)
    if not cooldown or not customers:
        return set()
    since = db_datetime(now - timedelta(seconds=cooldown))
    return {row[0] for row in select_in("SELECT customer_id FROM journeys_enrollment WHERE journey_id = %s "
                                        "AND enrolled_at > %s", [journey.pk, since], "customer_id", customers)}


def orders_delivered_for_referral(journey: Journey, window: Window, now: datetime) -> list[Candidate]:
    """Buyers whose order was delivered the set time ago, not asked for a referral lately."""
    trigger = journey.definition.get("trigger") or {}
    after = trigger.get("after_delivery_seconds")
    if after is None:
        return []
    rows = _keep(journey, list(
        Order.objects.for_store(journey.store_id)
        .filter(delivered_at__gt=window.low, delivered_at__lte=window.high, cancelled_at__isnull=True,
                customer__isnull=False, **_written(window))
        .values_list("customer_id", "external_id", "delivered_at")
    ), TriggerType.ORDER)
    cooling = _cooling(journey, now, sorted({r[0] for r in rows}))
    latest: dict[int, Candidate] = {}
    shift = int(after) - _wait(journey)
    for customer_id, external_id, delivered_at in rows:
        if customer_id in cooling:
            continue
        if customer_id not in latest or delivered_at > latest[customer_id].trigger_at:
            latest[customer_id] = Candidate(customer_id, TriggerType.ORDER, external_id, delivered_at, shift_seconds=shift)
    return list(latest.values())


def subscriptions(journey: Journey, window: Window, now: datetime) -> list[Candidate]:
    """People whose e-mail consent became `subscribed` in the window: welcomed once each."""
    welcomed = Exists(Enrollment.objects.filter(journey_id=journey.pk, customer_id=OuterRef("customer_id"),
                                                trigger_type=TriggerType.SUBSCRIPTION, trigger_id__startswith="email:"))
    rows = (
        Consent.objects.for_store(journey.store_id)
        .filter(channel="email", status=ConsentStatus.SUBSCRIBED, changed_at__gt=window.low, changed_at__lte=window.high,
                customer__erased_at__isnull=True, customer__merged_into__isnull=True)
        .exclude(welcomed)
        .values_list("customer_id", "changed_at")
    )
    return [welcome_candidate(customer_id, at) for customer_id, at in rows]


def welcome_candidate(customer_id: int, at: datetime) -> Candidate:
    """The welcome's trigger names the person (`email:<id>`): merging two welcomed profiles keeps both rows."""
    return Candidate(customer_id, TriggerType.SUBSCRIPTION, f"email:{customer_id}", at)


def confirmations(journey: Journey, window: Window, now: datetime) -> list[Candidate]:
    """Double opt-in: people whose e-mail consent is pending confirmation get the confirmation e-mail."""
    if not (journey.definition.get("trigger") or {}).get("double_opt_in"):
        return []
    rows = (
        Consent.objects.for_store(journey.store_id)
        .filter(channel="email", status=ConsentStatus.PENDING, changed_at__gt=window.low, changed_at__lte=window.high,
                customer__erased_at__isnull=True, customer__merged_into__isnull=True)
        .values_list("customer_id", "changed_at", "change_id")
    )
    candidates = [Candidate(c, TriggerType.SUBSCRIPTION, f"{CONFIRM_STEP}:{change}", at) for c, at, change in rows]
    if not candidates:
        return []
    done = set(Enrollment.objects.filter(journey_id=journey.pk, trigger_type=TriggerType.SUBSCRIPTION,
                                         customer_id__in=[c.customer_id for c in candidates],
                                         trigger_id__in=[c.trigger_id for c in candidates])
               .values_list("customer_id", "trigger_id"))
    return [c for c in candidates if (c.customer_id, c.trigger_id) not in done]


def last_orders(journey: Journey, window: Window, now: datetime) -> list[Candidate]:
    """Win-back: people whose most recent order was placed the set time ago and who bought nothing since."""
    after = int((journey.definition.get("trigger") or {}).get("after_last_order_seconds") or 0)
    rows = _keep(journey, list(
        Order.objects.for_store(journey.store_id)
        .filter(placed_at__gt=window.low, placed_at__lte=window.high, customer__isnull=False)
        .exclude(status=OrderStatus.CANCELLED)
        .values_list("customer_id", "external_id", "placed_at")
    ), TriggerType.ORDER)
    latest = _last_orders_of(journey.store_id, sorted({r[0] for r in rows}))
    shift = after - _wait(journey)
    return [Candidate(c, TriggerType.ORDER, external_id, at, shift_seconds=shift) for c, external_id, at in rows
            if latest.get(c) == at]


# Networks where people talk in public (and can be answered there first); an e-mail to the store is
# the inbox's to answer, not a journey's.
SOCIAL_NETWORKS = ("mastodon", "bluesky", "x")
# At or above this the post is abuse whatever else it says (listening.classify's scale): no sales pitch.
MAX_TOXICITY = 0.5


def mentions_with_purchase_intent(journey: Journey, window: Window, now: datetime) -> list[Candidate]:
    """People the store knows who said on social media they want to buy, heard the set delay ago.

    The fact's moment is when the mention was heard (`received_at`): a post heard late still leaves
    the team the whole delay to answer it in public. It must also have been posted within the
    look-back window, so a new source catching up on last month's posts mails nobody. One
    enrollment per mention, and at most one per person per `trigger.cooldown_seconds` (the earliest
    mention of a person wins, as it would have if the sweeps had seen them one by one).
    """
    posted_since = now - timedelta(seconds=_wait(journey)) - _lookback(journey)
    # A mention is written when it is heard: "written since" and "heard since" are one bound.
    heard_since = max(window.low, window.written_since) if window.written_since is not None else window.low
    # One query on mention_by_intent (store, intent, posted_at); mention_received would serve a narrow window.
    rows = [(customer_id, str(mention_id), received_at) for customer_id, mention_id, received_at in
            Mention.objects.for_store(journey.store_id)
            .filter(intent=Intent.PURCHASE_INTENT, posted_at__gt=posted_since, posted_at__lte=window.high,
                    received_at__gt=heard_since, received_at__lte=window.high, network__in=SOCIAL_NETWORKS,
                    customer__isnull=False, toxicity__lt=MAX_TOXICITY)
            .values_list("customer_id", "id", "received_at")]
    rows = _keep(journey, rows, TriggerType.MENTION)
    cooling = _cooling(journey, now, sorted({r[0] for r in rows}))
    first: dict[int, Candidate] = {}
    for customer_id, mention_id, received_at in sorted(rows, key=lambda r: (r[2], int(r[1]))):
        if customer_id not in cooling and customer_id not in first:
            first[customer_id] = Candidate(customer_id, TriggerType.MENTION, mention_id, received_at)
    return list(first.values())


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of fact a journey reacts to, and how often and how far back to look for it."""

    name: str
    find: Callable[[Journey, Window, datetime], list[Candidate]]
    every: timedelta
    wait: Callable[[Journey], int]  # seconds between the fact and the trigger moment
    incremental: bool = True


def _after_delivery(journey: Journey) -> int:
    return int((journey.definition.get("trigger") or {}).get("after_delivery_seconds") or 0)


def _after_last_order(journey: Journey) -> int:
    return int((journey.definition.get("trigger") or {}).get("after_last_order_seconds") or 0)


KINDS: dict[str, list[Kind]] = {
    JourneyKey.ABANDONED_CART: [Kind("carts", carts_abandoned, timedelta(seconds=1), _wait)],
    JourneyKey.THANK_YOU: [Kind("placed", orders_placed, timedelta(seconds=1), _wait)],
    # Category delays differ per order: the window is always the whole one.
    JourneyKey.REVIEW_REQUEST: [Kind("delivered", orders_delivered_for_review, timedelta(seconds=30), _wait,
                                     incremental=False)],
    JourneyKey.REFERRAL_REQUEST: [Kind("delivered", orders_delivered_for_referral, timedelta(seconds=30), _after_delivery)],
    JourneyKey.WELCOME: [Kind("subscribed", subscriptions, timedelta(seconds=2), _wait),
                         Kind("pending", confirmations, timedelta(seconds=2), lambda j: 0)],
    JourneyKey.WINBACK: [Kind("last_order", last_orders, timedelta(minutes=1), _after_last_order, incremental=False)],
    JourneyKey.PURCHASE_INTENT: [Kind("mentions", mentions_with_purchase_intent, timedelta(seconds=2), _wait)],
}


# --- The sweep ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Seen:
    ran_at: datetime
    high: datetime
    full_at: datetime
    whole_at: datetime


# Process-local memory of each (database, journey incarnation and version, kind): when it last ran
# and how far it looked. Losing it (a restart) costs one full look, nothing else.
_state: dict[tuple, _Seen] = {}
_state_lock = threading.Lock()
_settled: dict[tuple, datetime] = {}


def _state_key(journey: Journey, kind: Kind) -> tuple:
    return (connection.alias, connection.settings_dict.get("NAME"), journey.pk, journey.created_at, journey.version,
            kind.name)


def _window(journey: Journey, kind: Kind, now: datetime, full: bool) -> tuple[Window | None, bool]:
    """What to look at now (None: not due yet), and whether it is a full look."""
    key = _state_key(journey, kind)
    with _state_lock:
        seen = _state.get(key)
    if seen is not None and now < seen.ran_at:
        seen = None  # the clock went back (tests): start over
    if not full and seen is not None and now - seen.ran_at < kind.every:
        return None, False
    window = _full_window(journey, now, kind.wait(journey))
    is_full = full or seen is None or not kind.incremental or now - seen.full_at >= FULL_EVERY
    if not is_full:
        window.low = max(window.low, seen.high - OVERLAP)
    elif not full and seen is not None and kind.incremental and now - seen.whole_at < WHOLE_EVERY:
        window.written_since = seen.full_at - WRITTEN_MARGIN
    return window, is_full


def _remember(journey: Journey, kind: Kind, now: datetime, window: Window, full: bool) -> None:
    key = _state_key(journey, kind)
    with _state_lock:
        previous = _state.get(key)
        whole = full and window.written_since is None
        _state[key] = _Seen(ran_at=now, high=window.high,
                            full_at=now if full or previous is None else previous.full_at,
                            whole_at=now if whole or previous is None else previous.whole_at)


def sweep_state_reset() -> None:
    """Forget every watermark: the next sweep looks at whole windows (tests, after a restore)."""
    with _state_lock:
        _state.clear()
        _settled.clear()
        _ensured.clear()


def _store_lock(store_id: int) -> bool:
    if not is_postgres():
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, store_id])
        return bool(cursor.fetchone()[0])


def _store_unlock(store_id: int) -> None:
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, store_id])


def triggers_sweep(*, now: datetime | None = None, store: Any = None, full: bool = False) -> int:
    """Enroll everyone whose trigger moment has come, in every enabled journey; returns enrollments made.

    The worker calls this about every second; each kind of fact decides for itself whether it is
    due (carts and orders every second, deliveries every 30 s, last orders every minute). `full`
    looks at every kind's whole window now (tests, and `tertulia journeys sweep`). On PostgreSQL
    one process sweeps a store at a time; a second one skips it rather than doing the work twice.
    """
    moment = now or timezone.now()
    _defaults_if_due(moment, store)
    journeys = Journey.objects.filter(enabled=True).order_by("store_id", "id")
    if store is not None:
        journeys = journeys.filter(store_id=store if isinstance(store, int) else store.pk)
    by_store: dict[int, list[Journey]] = {}
    for journey in journeys:
        by_store.setdefault(journey.store_id, []).append(journey)
    total = 0
    for store_id, store_journeys in by_store.items():
        if not _store_lock(store_id):
            continue
        try:
            for journey in store_journeys:
                total += _sweep_journey(journey, moment, full)
            carts = journeys_has(store_journeys, JourneyKey.ABANDONED_CART)
            if carts is not None:
                carts_reschedule(journey=carts, now=moment, full=full)
            _settle_if_due(store_id, moment, full)
        finally:
            _store_unlock(store_id)
    return total


ENSURE_EVERY = timedelta(seconds=30)
_ensured: dict[tuple, datetime] = {}


def _defaults_if_due(now: datetime, store: Any) -> None:
    """Stores that lack a journey get it with its defaults (on), so every store has every journey.

    New stores get all of them, and stores made before a journey was added get the new one.
    Done here rather than in store_create so that creating a store stays a core matter; a new
    store's journeys exist within ENSURE_EVERY, and `journey_update` and the demo ensure them at once.
    """
    from tertulia.core.models import Store
    from tertulia.journeys.definitions import journey_keys, journeys_ensure_defaults

    key = (connection.alias, connection.settings_dict.get("NAME"), None if store is None else getattr(store, "pk", store))
    last = _ensured.get(key)
    if last is not None and last <= now and now - last < ENSURE_EVERY:
        return
    _ensured[key] = now
    # One probe of the (store, key) unique index per key and store.
    lacking = Q()
    for journey_key in journey_keys():
        lacking |= ~Exists(Journey.objects.filter(store_id=OuterRef("pk"), key=journey_key))
    stores = Store.objects.filter(lacking)
    if store is not None:
        stores = stores.filter(pk=getattr(store, "pk", store))
    for bare in stores:
        journeys_ensure_defaults(store=bare)


def journeys_has(journeys: list[Journey], key: str) -> Journey | None:
    return next((j for j in journeys if j.key == key), None)


def _sweep_journey(journey: Journey, now: datetime, full: bool) -> int:
    created = 0
    for kind in KINDS.get(journey.key, []):
        window, is_full = _window(journey, kind, now, full)
        if window is None:
            continue
        started = time.monotonic()
        candidates = kind.find(journey, window, now) if window.low < window.high else []
        if kind.name == "pending":
            confirm = [{"key": CONFIRM_STEP, "channel": "email", "delay_seconds": 0}]
            created += enrollments_create(journey=journey, candidates=candidates, now=now, steps=confirm,
                                          holdout_allowed=False)
        else:
            created += enrollments_create(journey=journey, candidates=candidates, now=now)
        _remember(journey, kind, now, window, is_full)
        if candidates:
            log.debug("swept", extra={"journey": journey.key, "kind": kind.name, "candidates": len(candidates),
                                      "seconds": round(time.monotonic() - started, 4), "full": is_full})
    return created


_RESCHEDULE = Kind("moved", lambda j, w, n: [], timedelta(seconds=1), lambda j: 0)


def carts_reschedule(*, journey: Journey, now: datetime, full: bool = False) -> int:
    """A cart enrolled but active again before anything was sent: its steps move with its new last activity.

    Carts are enrolled a few seconds ahead of their moment, and steps may wait longer than the
    trigger delay (an A/B test of delays), so a person can come back in between; what is due then
    counts from their latest activity. Looks only at carts active since the last look.
    """
    key = _state_key(journey, _RESCHEDULE)
    with _state_lock:
        seen = _state.get(key)
    if seen is not None and now < seen.ran_at:
        seen = None
    if not full and seen is not None and now - seen.ran_at < _RESCHEDULE.every:
        return 0
    # Rows written since the last look are all it needs (activity writes the row): a whole look only
    # without memory of one.
    is_full = full or seen is None
    low = now - _lookback(journey) if is_full else max(now - _lookback(journey), seen.high - OVERLAP)
    active_since = Enrollment.objects.filter(
        journey_id=journey.pk, trigger_type=TriggerType.CART, trigger_id=OuterRef("external_id"),
        status=EnrollmentStatus.ACTIVE, trigger_at__lt=OuterRef("last_event_at"))
    carts = dict(
        Cart.objects.for_store(journey.store_id)
        # Written since the last look, not only active: a cart whose activity is recent but whose
        # row was not touched since has been looked at already.
        .filter(status=CartStatus.OPEN, last_event_at__gt=low, updated_at__gt=low, customer__isnull=False)
        .filter(Exists(active_since))
        .values_list("external_id", "last_event_at")
    )
    _remember(journey, _RESCHEDULE, now, Window(low, now), is_full)
    if not carts:
        return 0
    started = Delivery.objects.filter(enrollment_id=OuterRef("pk")).exclude(
        status__in=[DeliveryStatus.SCHEDULED, DeliveryStatus.CANCELLED])
    enrollments = list(
        Enrollment.objects.for_store(journey.store_id)
        .filter(journey_id=journey.pk, trigger_type=TriggerType.CART, status=EnrollmentStatus.ACTIVE,
                trigger_id__in=sorted(carts))
        .exclude(Exists(started))
        .values_list("id", "trigger_id", "trigger_at")
    )

    def write() -> int:
        count = 0
        for enrollment_id, trigger_id, old in enrollments:
            new = carts.get(trigger_id)
            if new is None or new <= old:
                continue
            # Guarded on the old moment: a concurrent sweep that moved it first wins, nothing moves twice.
            if not Enrollment.objects.filter(pk=enrollment_id, trigger_at=old, status=EnrollmentStatus.ACTIVE).update(
                    trigger_at=new):
                continue
            for delivery_id, due in Delivery.objects.filter(enrollment_id=enrollment_id,
                                                            status=DeliveryStatus.SCHEDULED).values_list("id", "due_at"):
                Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.SCHEDULED).update(
                    due_at=due + (new - old), updated_at=now)
            count += 1
        return count

    return atomic_with_retry(write) if enrollments else 0


def _settle_if_due(store_id: int, now: datetime, full: bool) -> None:
    key = (connection.alias, connection.settings_dict.get("NAME"), store_id)
    last = _settled.get(key)
    if not full and last is not None and last <= now and now - last < SETTLE_EVERY:
        return
    _settled[key] = now
    enrollments_settle(store_id=store_id, now=now)


def enrollments_settle(*, store_id: int, now: datetime, enrollment_ids: list[int] | None = None) -> int:
    """Complete active enrollments that have nothing left to send (every step sent, failed or skipped)."""
    if enrollment_ids is not None:
        # The dispatcher's batch: keyed lookups, whatever the planner knows about the tables.
        if not enrollment_ids:
            return 0
        waiting = {row[0] for row in select_in(
            f"SELECT enrollment_id FROM channels_delivery WHERE {keyed('status')} IN ('scheduled', 'sending')", [],  # noqa: S608
            "enrollment_id", sorted(set(enrollment_ids)))}
        done = sorted(set(enrollment_ids) - waiting)
        if not done:
            return 0
        return store_scope(Enrollment.objects.filter(pk__in=done, status=EnrollmentStatus.ACTIVE), store_id).update(
            status=EnrollmentStatus.COMPLETED, ended_at=now)
    pending = Delivery.objects.filter(enrollment_id=OuterRef("pk"),
                                      status__in=[DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING])
    query = Enrollment.objects.for_store(store_id).filter(status=EnrollmentStatus.ACTIVE).exclude(Exists(pending))
    return query.update(status=EnrollmentStatus.COMPLETED, ended_at=now)

