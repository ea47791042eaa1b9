"""Which message brought an order, and which enrollments ended in one (docs/analytics-journeys.md).

`orders_attribute` is run by the worker loop (channels.dispatch) every few seconds and by hand. For every
order placed since the last run it does two things, each with a handful of set-wise queries:

1. **Attribution** (last touch): the order is credited to one message. A discount or referral code used
   on the order wins, because typing a code at checkout is the last and most direct touch there is;
   otherwise the message the person clicked last (or opened, for journeys whose attribution basis is
   `open`) within the journey's window before the order (default 5 days). One Attribution row per
   order (a one-to-one), written with ON CONFLICT DO NOTHING, so running twice changes nothing.
2. **Conversion**: every enrollment of that person, holdout included, whose order came within the
   journey's window after enrolling gets `converted_order`/`converted_at` (the first such order).
   Uplift compares these conversions between the treated and the holdout (journeys.selectors).

"Since the last run" is a watermark kept in the process (orders updated after it, minus a margin for
transactions still open then) with an anti-join on Attribution for idempotency; a fresh process looks
back the longest attribution window once. A cancelled order is neither attributed nor a conversion.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from tertulia.channels.models import Delivery
from tertulia.commerce.models import Order, OrderStatus
from tertulia.core.db import chunks, db_datetime, execute_many, insert_returning, is_sqlite
from tertulia.core.models import Store
from tertulia.journeys.models import (
    Attribution,
    AttributionBasis,
    DiscountCode,
    DiscountKind,
    Enrollment,
    Journey,
    JourneyKey,
    Referral,
    ReferralCode,
)

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS = 5 * 24 * 3600
DEFAULT_BASIS = AttributionBasis.CLICK
# Orders updated this long before the previous run are looked at again: a transaction that was still
# open then (an order, a click, an enrollment) has committed by now. Idempotent, so only a cost.
WATERMARK_MARGIN = timedelta(minutes=2)
# The longest look-back a journey may ask for; a bad definition must not make every run scan years.
MAX_WINDOW = timedelta(days=90)

# Process-local: the wall-clock start of the last finished run, per store id (None = every store).
_watermarks: dict[int | None, datetime] = {}


@dataclass(frozen=True, slots=True)
class AttributionSettings:
    window: timedelta
    basis: str  # AttributionBasis.CLICK or OPEN


@dataclass(frozen=True, slots=True)
class AttributionResult:
    attributed: int  # new Attribution rows
    converted: int  # enrollments newly marked converted


def journey_attribution_settings(definition: dict[str, Any] | None) -> AttributionSettings:
    """The window and basis a journey definition asks for, with the defaults for anything missing or odd."""
    section = (definition or {}).get("attribution") or {}
    window = section.get("window_seconds", DEFAULT_WINDOW_SECONDS) if isinstance(section, dict) else None
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        window = DEFAULT_WINDOW_SECONDS
    basis = section.get("basis", DEFAULT_BASIS) if isinstance(section, dict) else DEFAULT_BASIS
    if basis not in (AttributionBasis.CLICK, AttributionBasis.OPEN):
        basis = DEFAULT_BASIS
    return AttributionSettings(window=min(timedelta(seconds=window), MAX_WINDOW), basis=str(basis))


def orders_attribute(*, store: Store | None = None, now: datetime | None = None) -> int:
    """Attribute orders placed since the last run and mark conversions; returns the new attributions.

    Called by the dispatcher's loop for every store (store=None); `now` is for tests and back-fills.
    """
    return attribution_run(store=store, now=now).attributed


def attribution_run(*, store: Store | None = None, now: datetime | None = None,
                    full: bool = False) -> AttributionResult:
    """`orders_attribute` with both counts. `full` ignores the watermark (a back-fill after a window change)."""
    started = timezone.now()
    now = now or started
    key = store.pk if store is not None else None
    settings_by_journey = _journey_settings(store=store)
    longest = max((s.window for s in settings_by_journey.values()), default=timedelta(seconds=DEFAULT_WINDOW_SECONDS))

    orders = Order.objects.filter(placed_at__isnull=False, placed_at__lte=now,
                                  customer__isnull=False).exclude(status=OrderStatus.CANCELLED)
    if store is not None:
        orders = orders.filter(store=store)
    watermark = None if full else _watermarks.get(key)
    if watermark is not None:
        orders = orders.filter(updated_at__gte=watermark - WATERMARK_MARGIN)
    else:
        # A fresh process: orders placed within the longest window, and any that arrived within it
        # (an order placed long ago but sent late may still follow a click inside its window).
        orders = orders.filter(Q(placed_at__gte=now - longest) | Q(updated_at__gte=started - longest))

    attributed = 0
    first: dict[int, tuple[datetime, int]] = {}
    for batch, pending in _order_batches(orders):
        _conversions_find(batch, settings_by_journey, longest, first)
        if pending:
            credits = _touch_credits(pending, settings_by_journey)
            credits.update(_code_credits(pending))  # a code used at checkout is the last touch
            attributed += _insert(pending, credits)
    converted = _conversions_write(first)
    _watermarks[key] = started
    if attributed or converted:
        logger.info("orders attributed", extra={"attributed": attributed, "converted": converted})
    return AttributionResult(attributed=attributed, converted=converted)


def watermarks_forget() -> None:
    """Make the next run look back the whole window again (tests; after restoring a backup)."""
    _watermarks.clear()


# --- settings ---------------------------------------------------------------------------------------

def _journey_settings(*, store: Store | None) -> dict[tuple[int, str], AttributionSettings]:
    journeys = Journey.objects.all() if store is None else Journey.objects.for_store(store)
    return {
        (store_id, key): journey_attribution_settings(definition)
        for store_id, key, definition in journeys.values_list("store_id", "key", "definition")
    }


def _settings_for(settings_by_journey, store_id: int, journey_key: str) -> AttributionSettings:
    found = settings_by_journey.get((store_id, journey_key))
    return found or AttributionSettings(window=timedelta(seconds=DEFAULT_WINDOW_SECONDS), basis=DEFAULT_BASIS)


# --- conversions ------------------------------------------------------------------------------------

def _conversions_find(batch: dict[int, "_Order"], settings_by_journey, longest: timedelta,
                      first: dict[int, tuple[datetime, int]]) -> None:
    """Note, for each open enrollment of these orders' buyers, its first order within the window after enrolling."""
    if not batch:
        return
    by_customer: dict[int, list[_Order]] = defaultdict(list)
    for order in batch.values():
        by_customer[order.customer_id].append(order)
    earliest = min(o.placed_at for o in batch.values()) - longest
    latest = max(o.placed_at for o in batch.values())
    # Driven by the batch's buyers (the customer index), not by a join of every enrollment with every order.
    enrollments = (
        Enrollment.objects.filter(customer_id__in=list(by_customer), converted_order__isnull=True,
                                  enrolled_at__gte=earliest, enrolled_at__lte=latest)
        .values_list("id", "store_id", "customer_id", "journey_key", "enrolled_at", "trigger_type", "trigger_id")
    )
    for enrollment_id, store_id, customer_id, journey_key, enrolled_at, trigger_type, trigger_id in enrollments:
        window = _settings_for(settings_by_journey, store_id, journey_key).window
        for order in by_customer.get(customer_id, ()):
            if order.store_id != store_id or not enrolled_at <= order.placed_at <= enrolled_at + window:
                continue
            if trigger_type == "order" and trigger_id == order.external_id:
                continue  # the order that started the enrollment (a thank-you) is not its conversion
            best = first.get(enrollment_id)
            if best is None or (order.placed_at, order.id) < best:
                first[enrollment_id] = (order.placed_at, order.id)


def _conversions_write(first: dict[int, tuple[datetime, int]]) -> int:
    if not first:
        return 0
    lite = is_sqlite()
    rows = [(order_id, db_datetime(placed_at, sqlite=lite), enrollment_id)
            for enrollment_id, (placed_at, order_id) in sorted(first.items())]
    # The guard keeps a conversion already recorded (by a concurrent run) as it is.
    for part in chunks(rows, 5000):
        if lite:
            execute_many("UPDATE journeys_enrollment SET converted_order_id = %s, converted_at = %s "
                         "WHERE id = %s AND converted_order_id IS NULL", part)
            continue
        # PostgreSQL: one statement for the whole part, the values as three arrays.
        orders, moments, enrollments = (list(column) for column in zip(*part, strict=True))
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE journeys_enrollment AS e SET converted_order_id = v.order_id, converted_at = v.at "
                "FROM unnest(%s::bigint[], %s::timestamptz[], %s::bigint[]) AS v(order_id, at, enrollment_id) "
                "WHERE e.id = v.enrollment_id AND e.converted_order_id IS NULL",
                [orders, moments, enrollments])
    return len(rows)


# --- attributions -----------------------------------------------------------------------------------

@dataclass(slots=True)
class _Order:
    id: int
    store_id: int
    customer_id: int
    placed_at: datetime
    total: Decimal
    currency: str
    external_id: str
    codes: list[str]


@dataclass(slots=True)
class _Credit:
    basis: str
    touched_at: datetime
    delivery_id: int | None
    enrollment_id: int | None
    journey_key: str
    step_key: str = ""
    channel: str = ""
    variant: str = ""


BATCH = 2000


def _order_batches(orders):
    """Candidate orders in id order, 2,000 at a time (keyset pages, no cursor held open while writing):
    every one (for conversions) and those not attributed yet."""
    fields = ["id", "store_id", "customer_id", "placed_at", "total", "currency", "external_id"]
    has_codes = any(field.name == "discount_codes" for field in Order._meta.get_fields())
    if has_codes:  # Order.discount_codes arrives with the order discount-code plumbing
        fields.append("discount_codes")
    rows = orders.annotate(attributed=Exists(Attribution.objects.filter(order_id=OuterRef("pk"))))
    last = 0
    while True:
        part = list(rows.filter(pk__gt=last).order_by("pk").values_list(*fields, "attributed")[:BATCH])
        if not part:
            return
        last = part[-1][0]
        batch = {row[0]: _Order(*row[:7], codes=_codes_of(row[7]) if has_codes else []) for row in part}
        pending = {row[0]: batch[row[0]] for row in part if not row[-1]}
        yield batch, pending
        if len(part) < BATCH:
            return


def _codes_of(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(code).strip() for code in value if isinstance(code, str | int) and str(code).strip()][:20]


def _touch_credits(batch: dict[int, _Order], settings_by_journey) -> dict[int, _Credit]:
    """The last message each order's buyer clicked (or opened) within its journey's window."""
    if not batch:
        return {}
    longest = max((s.window for s in settings_by_journey.values()),
                  default=timedelta(seconds=DEFAULT_WINDOW_SECONDS))
    earliest = min(o.placed_at for o in batch.values()) - longest
    latest = max(o.placed_at for o in batch.values())
    by_customer: dict[int, list[_Order]] = defaultdict(list)
    for order in batch.values():
        by_customer[order.customer_id].append(order)
    touched = (
        Delivery.objects.filter(enrollment__isnull=False, customer_id__in=list(by_customer))
        .filter(Q(clicked_at__gte=earliest, clicked_at__lte=latest) | Q(opened_at__gte=earliest, opened_at__lte=latest))
        .values_list("id", "store_id", "customer_id", "enrollment_id", "journey_key", "step_key", "channel",
                     "variant", "clicked_at", "opened_at")
    )
    best: dict[int, _Credit] = {}
    for (delivery_id, store_id, customer_id, enrollment_id, journey_key, step_key, channel, variant,
         clicked_at, opened_at) in touched.iterator(chunk_size=2000):
        rule = _settings_for(settings_by_journey, store_id, journey_key)
        for order in by_customer.get(customer_id, ()):
            if order.store_id != store_id:
                continue
            moments = [(clicked_at, AttributionBasis.CLICK)]
            if rule.basis == AttributionBasis.OPEN:
                # A click implies the message was opened, even when the pixel was blocked.
                moments.append((opened_at, AttributionBasis.OPEN))
            eligible = [(at, basis) for at, basis in moments
                        if at is not None and order.placed_at - rule.window <= at <= order.placed_at]
            if not eligible:
                continue
            at, basis = max(eligible, key=lambda pair: pair[0])
            current = best.get(order.id)
            if current is None or (at, delivery_id) > (current.touched_at, current.delivery_id or 0):
                best[order.id] = _Credit(basis=str(basis), touched_at=at, delivery_id=delivery_id,
                                         enrollment_id=enrollment_id, journey_key=journey_key, step_key=step_key,
                                         channel=channel, variant=variant)
    return best


def _code_credits(batch: dict[int, _Order]) -> dict[int, _Credit]:
    """Orders that used one of our discount codes or a referral code (marked by the engine, or named on the order)."""
    credits: dict[int, _Credit] = {}
    order_ids = list(batch)
    store_ids = {o.store_id for o in batch.values()}
    named = {code.upper() for o in batch.values() for code in o.codes}

    # Discount codes: the engine links a used code to its order; codes named on the order count too.
    code_match = Q(order_id__in=order_ids)
    if named:
        code_match |= Q(code__in=sorted(named | {c.lower() for c in named}))
    used_codes = (DiscountCode.objects.filter(code_match, store_id__in=store_ids)
                  .values_list("store_id", "code", "kind", "order_id", "enrollment_id",
                               "enrollment__journey_key", "enrollment__variant"))
    by_code: dict[tuple[int, str], tuple] = {}
    for row in used_codes:
        by_code[(row[0], row[1].upper())] = row
    for order in batch.values():
        candidates = [row for row in by_code.values() if row[3] == order.id]
        candidates += [by_code[(order.store_id, code.upper())] for code in order.codes
                       if (order.store_id, code.upper()) in by_code]
        # A single-use code the engine already tied to another order does not explain this one.
        candidates = [row for row in candidates if row[3] in (None, order.id)]
        if not candidates:
            continue
        _store, _code, kind, _order, enrollment_id, journey_key, variant = candidates[0]
        if not journey_key:
            journey_key = JourneyKey.ABANDONED_CART if kind == DiscountKind.RECOVERY else JourneyKey.REFERRAL_REQUEST
        # The friend's code of a referral link is a referral; the others are the journey's own discount.
        basis = AttributionBasis.REFERRAL if kind == DiscountKind.REFERRAL else AttributionBasis.DISCOUNT_CODE
        credits[order.id] = _Credit(basis=basis, touched_at=order.placed_at,
                                    delivery_id=None, enrollment_id=enrollment_id, journey_key=journey_key,
                                    variant=variant or "")

    # Referrals: the engine records a Referral per order; a referral code named on the order counts too.
    referrers: dict[int, int] = dict(Referral.objects.filter(order_id__in=order_ids).values_list("order_id", "referrer_id"))
    if named:
        owners = {(store_id, code.upper()): customer_id for store_id, code, customer_id in
                  ReferralCode.objects.filter(store_id__in=store_ids, code__in=sorted(named | {c.lower() for c in named}))
                  .values_list("store_id", "code", "customer_id")}
        for order in batch.values():
            for code in order.codes:
                owner = owners.get((order.store_id, code.upper()))
                if owner is not None and owner != order.customer_id:
                    referrers.setdefault(order.id, owner)
    referrers = {order_id: referrer for order_id, referrer in referrers.items() if order_id not in credits}
    if referrers:
        enrollments = (Enrollment.objects.filter(customer_id__in=set(referrers.values()),
                                                 journey_key=JourneyKey.REFERRAL_REQUEST)
                       .values_list("id", "customer_id", "variant", "enrolled_at").order_by("enrolled_at", "id"))
        latest_of: dict[int, list[tuple]] = defaultdict(list)
        for row in enrollments:
            latest_of[row[1]].append(row)
        for order_id, referrer in referrers.items():
            order = batch[order_id]
            before = [row for row in latest_of.get(referrer, []) if row[3] <= order.placed_at]
            enrollment_id, variant = (before[-1][0], before[-1][2]) if before else (None, "")
            credits[order_id] = _Credit(basis=AttributionBasis.REFERRAL, touched_at=order.placed_at, delivery_id=None,
                                        enrollment_id=enrollment_id, journey_key=JourneyKey.REFERRAL_REQUEST,
                                        variant=variant)

    # A code credit names its enrollment; the message that carried it is that enrollment's last one sent.
    enrollment_ids = {c.enrollment_id for c in credits.values() if c.enrollment_id}
    if enrollment_ids:
        sent = (Delivery.objects.filter(enrollment_id__in=enrollment_ids, sent_at__isnull=False)
                .values_list("enrollment_id", "id", "step_key", "channel", "sent_at").order_by("sent_at", "id"))
        by_enrollment: dict[int, list[tuple]] = defaultdict(list)
        for row in sent:
            by_enrollment[row[0]].append(row)
        for order_id, credit in credits.items():
            messages = [row for row in by_enrollment.get(credit.enrollment_id, []) if row[4] <= batch[order_id].placed_at]
            if messages:
                _e, credit.delivery_id, credit.step_key, credit.channel, _sent = messages[-1]
    return credits


def _insert(batch: dict[int, _Order], credits: dict[int, _Credit]) -> int:
    if not credits:
        return 0
    lite = is_sqlite()
    created = db_datetime(timezone.now(), sqlite=lite)
    columns = ["store_id", "order_id", "delivery_id", "enrollment_id", "journey_key", "step_key", "channel",
               "variant", "basis", "revenue", "currency", "placed_at", "created_at"]
    rows = []
    for order_id, credit in sorted(credits.items()):
        order = batch[order_id]
        rows.append((order.store_id, order_id, credit.delivery_id, credit.enrollment_id, credit.journey_key,
                     credit.step_key, credit.channel, credit.variant, credit.basis,
                     str(order.total), order.currency or "", db_datetime(order.placed_at, sqlite=lite), created))
    written = insert_returning(Attribution._meta.db_table, columns, rows, conflict=["order_id"], returning=["id"])
    return len(written)
