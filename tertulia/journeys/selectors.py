"""Reads of the journeys area: journeys, their figures and uplift, deliveries (docs/analytics-journeys.md).

Figures come from three grouped queries per request (enrollments, deliveries, attributions), whatever
the number of journeys, steps or variants. Uplift is the difference between the conversion of the
treated and of the holdout with a 95 % Newcombe (hybrid score) interval: unlike the Wald interval it
stays inside [-1, 1] and keeps its coverage with small groups and rates near 0 or 1, which is exactly
what a fresh journey with a 10 % holdout looks like.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from tertulia.channels.models import Delivery, DeliveryStatus
from tertulia.commerce.models import OrderStatus
from tertulia.core.models import Store
from tertulia.customers.models import Customer
from tertulia.journeys.models import Attribution, Enrollment, Journey, JourneyKey

# Two-sided 95 %: the 0.975 quantile of the standard normal distribution.
Z_95 = 1.959963984540054
UPLIFT_METHOD = "newcombe_hybrid_score"
JOURNEY_ORDER = [choice.value for choice in JourneyKey]


# --- journeys ---------------------------------------------------------------------------------------

def journeys_list(*, store: Store) -> list[Journey]:
    """The store's journeys in the product's order (abandoned cart first), then any newer key."""
    journeys = list(Journey.objects.for_store(store))
    return sorted(journeys, key=lambda j: (JOURNEY_ORDER.index(j.key) if j.key in JOURNEY_ORDER else 99, j.key))


def journey_get(*, store: Store, key: str) -> Journey | None:
    return Journey.objects.for_store(store).filter(key=key).first()


def journey_steps(journey: Journey) -> list[dict[str, Any]]:
    steps = (journey.definition or {}).get("steps")
    return [step for step in steps if isinstance(step, dict)] if isinstance(steps, list) else []


def variant_delays(journey: Journey) -> dict[str, int | None]:
    """The delay of the first step under each variant ("" = no variant), as the definition says now."""
    definition = journey.definition or {}
    steps = journey_steps(journey)
    first_key = steps[0].get("key") if steps else None
    base = steps[0].get("delay_seconds") if steps else None
    delays: dict[str, int | None] = {"": base if isinstance(base, int) else None}
    for variant in definition.get("variants") or []:
        if not isinstance(variant, dict) or not isinstance(variant.get("key"), str):
            continue
        override = ((variant.get("steps") or {}).get(first_key) or {}) if first_key else {}
        delay = override.get("delay_seconds", base) if isinstance(override, dict) else base
        delays[variant["key"]] = delay if isinstance(delay, int) else None
    return delays


# --- uplift -----------------------------------------------------------------------------------------

def wilson_interval(successes: int, trials: int, *, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion (trials > 0)."""
    p = successes / trials
    centre = 2 * trials * p + z * z
    spread = z * math.sqrt(z * z + 4 * trials * p * (1 - p))
    denominator = 2 * (trials + z * z)
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


@dataclass(frozen=True, slots=True)
class Uplift:
    treated: int
    treated_conversions: int
    holdout: int
    holdout_conversions: int
    treated_rate: float | None
    holdout_rate: float | None
    difference: float | None  # treated_rate - holdout_rate
    ci_low: float | None
    ci_high: float | None
    # "ok", or why there is no estimate: "no_enrollments", "no_treated", "no_holdout".
    status: str
    method: str = UPLIFT_METHOD
    confidence: float = 0.95

    @property
    def significant(self) -> bool:
        """True when the interval leaves out zero: the messages made a difference (either way)."""
        return self.ci_low is not None and self.ci_high is not None and (self.ci_low > 0 or self.ci_high < 0)


def uplift_estimate(*, treated: int, treated_conversions: int, holdout: int, holdout_conversions: int,
                    z: float = Z_95) -> Uplift:
    """Conversion of the treated minus conversion of the holdout, with Newcombe's hybrid score interval.

    Newcombe (1998), "Interval estimation for the difference between independent proportions",
    method 10: the Wilson intervals (l1, u1) and (l2, u2) of both rates give
    low = d - sqrt((p1 - l1)^2 + (u2 - p2)^2), high = d + sqrt((u1 - p1)^2 + (p2 - l2)^2).
    With an empty group there is no difference to estimate: the rates that exist are given, the rest is None.
    """
    treated_rate = treated_conversions / treated if treated else None
    holdout_rate = holdout_conversions / holdout if holdout else None
    if not treated or not holdout:
        status = "no_enrollments" if not treated and not holdout else ("no_treated" if not treated else "no_holdout")
        return Uplift(treated, treated_conversions, holdout, holdout_conversions, treated_rate, holdout_rate,
                      None, None, None, status)
    assert treated_rate is not None and holdout_rate is not None
    l1, u1 = wilson_interval(treated_conversions, treated, z=z)
    l2, u2 = wilson_interval(holdout_conversions, holdout, z=z)
    difference = treated_rate - holdout_rate
    low = difference - math.sqrt((treated_rate - l1) ** 2 + (u2 - holdout_rate) ** 2)
    high = difference + math.sqrt((u1 - treated_rate) ** 2 + (holdout_rate - l2) ** 2)
    return Uplift(treated, treated_conversions, holdout, holdout_conversions, treated_rate, holdout_rate,
                  difference, max(-1.0, low), min(1.0, high), "ok")


# --- figures ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class MessageFigures:
    scheduled: int = 0  # waiting (scheduled or being sent)
    sent: int = 0  # accepted by the provider (sent, delivered, opened or clicked later)
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0

    def add(self, other: "MessageFigures") -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class Breakdown:
    """Messages and what they brought for one step, channel or variant."""

    key: str
    messages: MessageFigures = field(default_factory=MessageFigures)
    attributed_orders: int = 0
    revenue: Decimal = Decimal("0.00")


@dataclass(slots=True)
class DelayBucket:
    """One variant of the journey: its first-step delay, how often it recovered, and what it brought."""

    variant: str
    delay_seconds: int | None
    enrollments: int = 0
    conversions: int = 0
    attributed_orders: int = 0
    revenue: Decimal = Decimal("0.00")

    @property
    def rate(self) -> float | None:
        return self.conversions / self.enrollments if self.enrollments else None


@dataclass(slots=True)
class JourneyStats:
    key: str
    enabled: bool
    version: int
    currency: str
    since: datetime | None
    until: datetime | None
    enrollments: int = 0
    treated: int = 0
    holdout: int = 0
    conversions: int = 0  # treated and holdout
    conversion_revenue: Decimal = Decimal("0.00")  # orders of converted treated enrollments
    messages: MessageFigures = field(default_factory=MessageFigures)
    attributed_orders: int = 0
    recovered_revenue: Decimal = Decimal("0.00")  # attributed (last-touch) revenue
    by_step: list[Breakdown] = field(default_factory=list)
    by_channel: list[Breakdown] = field(default_factory=list)
    by_variant: list[Breakdown] = field(default_factory=list)
    by_delay: list[DelayBucket] = field(default_factory=list)
    uplift: Uplift | None = None

    @property
    def recovery_rate(self) -> float | None:
        return self.uplift.treated_rate if self.uplift else None


def _messages_from(row: dict[str, Any]) -> MessageFigures:
    return MessageFigures(
        scheduled=row["scheduled"], sent=row["sent"], delivered=row["delivered"], opened=row["opened"],
        clicked=row["clicked"], failed=row["failed"], skipped=row["skipped"], cancelled=row["cancelled"],
    )


def journeys_stats(*, store: Store, keys: list[str] | None = None, since: datetime | None = None,
                   until: datetime | None = None) -> dict[str, JourneyStats]:
    """Figures of the store's journeys (all, or `keys`), for enrollments/messages/orders in [since, until)."""
    journeys = [j for j in journeys_list(store=store) if keys is None or j.key in keys]
    if not journeys:
        return {}
    wanted = [j.key for j in journeys]
    stats = {j.key: JourneyStats(key=j.key, enabled=j.enabled, version=j.version, currency=store.currency,
                                 since=since, until=until) for j in journeys}

    def in_range(column: str) -> Q:
        window = Q()
        if since is not None:
            window &= Q(**{f"{column}__gte": since})
        if until is not None:
            window &= Q(**{f"{column}__lt": until})
        return window

    # 1. Enrollments per journey, variant and holdout, with their conversions (cancelled orders do not count).
    converted = Q(converted_order__isnull=False) & ~Q(converted_order__status=OrderStatus.CANCELLED)
    enrollment_rows = (
        Enrollment.objects.for_store(store).filter(in_range("enrolled_at"), journey_key__in=wanted)
        .values("journey_key", "variant", "holdout")
        .annotate(n=Count("id"), converted=Count("id", filter=converted),
                  revenue=Sum("converted_order__total", filter=converted))
        .order_by()
    )
    variants: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    holdout_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in enrollment_rows:
        figures = stats[row["journey_key"]]
        figures.enrollments += row["n"]
        figures.conversions += row["converted"]
        if row["holdout"]:
            figures.holdout += row["n"]
            holdout_counts[row["journey_key"]][0] += row["n"]
            holdout_counts[row["journey_key"]][1] += row["converted"]
        else:
            figures.treated += row["n"]
            figures.conversion_revenue += row["revenue"] or Decimal("0.00")
            pair = variants[row["journey_key"]][row["variant"]]
            pair[0] += row["n"]
            pair[1] += row["converted"]

    # 2. Messages per journey, step, channel and variant.
    waiting = (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING)
    delivery_rows = (
        Delivery.objects.for_store(store).filter(in_range("created_at"), journey_key__in=wanted)
        .values("journey_key", "step_key", "channel", "variant")
        .annotate(
            scheduled=Count("id", filter=Q(status__in=waiting)),
            sent=Count("id", filter=Q(sent_at__isnull=False)),
            delivered=Count("id", filter=Q(delivered_at__isnull=False) | Q(status=DeliveryStatus.DELIVERED)),
            opened=Count("id", filter=Q(opened_at__isnull=False)),
            clicked=Count("id", filter=Q(clicked_at__isnull=False)),
            failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
            skipped=Count("id", filter=Q(status=DeliveryStatus.SKIPPED)),
            cancelled=Count("id", filter=Q(status=DeliveryStatus.CANCELLED)),
        )
        .order_by()
    )
    # 3. Attributed orders per journey, step, channel and variant (an order cancelled since is left out).
    attribution_rows = (
        Attribution.objects.for_store(store).filter(in_range("placed_at"), journey_key__in=wanted)
        .exclude(order__status=OrderStatus.CANCELLED)
        .values("journey_key", "step_key", "channel", "variant")
        .annotate(n=Count("id"), revenue=Sum("revenue"))
        .order_by()
    )

    parts: dict[str, dict[str, dict[str, Breakdown]]] = defaultdict(
        lambda: {"step": {}, "channel": {}, "variant": {}})

    def bucket(journey_key: str, kind: str, key: str) -> Breakdown:
        table = parts[journey_key][kind]
        if key not in table:
            table[key] = Breakdown(key=key)
        return table[key]

    for row in delivery_rows:
        figures = _messages_from(row)
        stats[row["journey_key"]].messages.add(figures)
        for kind, key in (("step", row["step_key"]), ("channel", row["channel"]), ("variant", row["variant"])):
            bucket(row["journey_key"], kind, key).messages.add(figures)
    attributed_by_variant: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0, Decimal("0.00")]))
    for row in attribution_rows:
        revenue = row["revenue"] or Decimal("0.00")
        journey_figures = stats[row["journey_key"]]
        journey_figures.attributed_orders += row["n"]
        journey_figures.recovered_revenue += revenue
        for kind, key in (("step", row["step_key"]), ("channel", row["channel"]), ("variant", row["variant"])):
            part = bucket(row["journey_key"], kind, key)
            part.attributed_orders += row["n"]
            part.revenue += revenue
        attributed_by_variant[row["journey_key"]][row["variant"]][0] += row["n"]
        attributed_by_variant[row["journey_key"]][row["variant"]][1] += revenue

    for journey in journeys:
        figures = stats[journey.key]
        step_order = [step.get("key") for step in journey_steps(journey)]
        journey_parts = parts[journey.key]
        figures.by_step = sorted(journey_parts["step"].values(),
                                 key=lambda b: (step_order.index(b.key) if b.key in step_order else 99, b.key))
        figures.by_channel = sorted(journey_parts["channel"].values(), key=lambda b: b.key)
        figures.by_variant = sorted(journey_parts["variant"].values(), key=lambda b: b.key)
        delays = variant_delays(journey)
        seen = set(variants[journey.key]) | set(attributed_by_variant[journey.key])
        if len(delays) > 1:
            seen |= set(delays) - {""}  # configured variants show even before their first enrollment
        elif not seen:
            seen = {""}
        buckets = []
        for variant in seen:
            enrolled, conversions = variants[journey.key].get(variant, [0, 0])
            orders, revenue = attributed_by_variant[journey.key].get(variant, [0, Decimal("0.00")])
            buckets.append(DelayBucket(variant=variant, delay_seconds=delays.get(variant), enrollments=enrolled,
                                       conversions=conversions, attributed_orders=orders, revenue=revenue))
        figures.by_delay = sorted(buckets, key=lambda b: (b.delay_seconds is None, b.delay_seconds or 0, b.variant))
        held, held_converted = holdout_counts.get(journey.key, [0, 0])
        treated_converted = sum(pair[1] for pair in variants[journey.key].values())
        figures.uplift = uplift_estimate(treated=figures.treated, treated_conversions=treated_converted,
                                         holdout=held, holdout_conversions=held_converted)
    return stats


def journey_stats(*, store: Store, key: str, since: datetime | None = None,
                  until: datetime | None = None) -> JourneyStats | None:
    return journeys_stats(store=store, keys=[key], since=since, until=until).get(key)


# --- deliveries -------------------------------------------------------------------------------------

def deliveries_list(*, store: Store, customer_id: int | None = None, journey_key: str | None = None,
                    status: str | None = None, channel: str | None = None) -> QuerySet[Delivery]:
    """Messages of the store, filters combined with AND (the API pages through them in id order)."""
    deliveries = Delivery.objects.for_store(store)
    if customer_id is not None:
        deliveries = deliveries.filter(customer_id=customer_id)
    if journey_key is not None:
        deliveries = deliveries.filter(journey_key=journey_key)
    if status is not None:
        deliveries = deliveries.filter(status=status)
    if channel is not None:
        deliveries = deliveries.filter(channel=channel)
    return deliveries


def customer_deliveries(*, store: Store, customer: Customer, limit: int = 100) -> list[Delivery]:
    """A person's messages, newest first, for their timeline (the sent body is left for the outbox page)."""
    return list(
        Delivery.objects.for_store(store).filter(customer=customer)
        .only("id", "store_id", "customer_id", "channel", "journey_key", "step_key", "variant", "status", "due_at",
              "reason", "subject", "sent_at", "delivered_at", "opened_at", "clicked_at", "created_at")
        .order_by("-created_at", "-id")[:limit]
    )


def delivery_moment(delivery: Delivery) -> datetime:
    """When a message belongs on a timeline: sent, else due (waiting or skipped), else created."""
    return delivery.sent_at or delivery.due_at or delivery.created_at
