"""Reads behind the staff dashboard: which stores a user may see, overview figures, customers, timeline."""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from tertulia.commerce.models import Cart, CartStatus, Order, OrderStatus
from tertulia.core.models import Membership, Store
from tertulia.customers.models import Channel, Consent, ConsentChange, ConsentStatus, Customer, Identity
from tertulia.events.models import Event

CONSENT_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.SOCIAL_DM)


# --- Stores and access ----------------------------------------------------------------------

def stores_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Store]:
    """The stores a staff user may open: their memberships, or every store for a superuser."""
    if not user.is_authenticated or not user.is_active:
        return Store.objects.none()
    if user.is_superuser:
        return Store.objects.order_by("name", "slug")
    member_of = Membership.objects.filter(user_id=user.pk).values("store_id")
    return Store.objects.filter(pk__in=member_of).order_by("name", "slug")


def store_for_user(*, user: AbstractBaseUser | AnonymousUser, store_id: int | None) -> Store | None:
    """The store to show: the one asked for if the user may see it, else their first store, else None."""
    stores = stores_for_user(user=user)
    if store_id is not None:
        chosen = stores.filter(pk=store_id).first()
        if chosen is not None:
            return chosen
    return stores.first()


def membership_role(*, store: Store, user: AbstractBaseUser) -> str | None:
    return Membership.objects.for_store(store).filter(user_id=user.pk).values_list("role", flat=True).first()


# --- Login throttling -----------------------------------------------------------------------

def login_throttle_keys(*, username: str, client_ip: str) -> list[str]:
    # Hashed so any username (spaces, unicode, 150 characters) makes a valid key for every cache backend.
    def key(kind: str, value: str) -> str:
        return f"dashboard:login-failures:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"

    keys = [key("ip", client_ip or "unknown")]
    if username:
        keys.insert(0, key("user", username.strip().lower()))
    return keys


def login_throttled(*, username: str, client_ip: str) -> bool:
    """True when this username or this address has failed too often within the window."""
    limit = settings.LOGIN_THROTTLE_ATTEMPTS
    counts = cache.get_many(login_throttle_keys(username=username, client_ip=client_ip))
    return any(count >= limit for count in counts.values())


# --- Overview -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class ConsentRate:
    channel: str
    subscribed: int
    customers: int

    @property
    def rate(self) -> float:
        return self.subscribed / self.customers if self.customers else 0.0


@dataclass(frozen=True, slots=True)
class Overview:
    store: Store
    generated_at: datetime
    events_today: int
    open_carts: int
    open_carts_value: Money
    orders_today: int
    revenue_today: Money
    orders_30d: int
    revenue_30d: Money
    customers: int
    consent: list[ConsentRate] = field(default_factory=list)


def store_zone(*, store: Store) -> ZoneInfo:
    try:
        return ZoneInfo(store.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def day_start(*, store: Store, now: datetime) -> datetime:
    """Midnight of `now`'s day in the store's own time zone: "today" is the shop's day, not UTC's."""
    local = now.astimezone(store_zone(store=store))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def overview_figures(*, store: Store, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    today = day_start(store=store, now=now)
    month_ago = now - timedelta(days=30)

    events_today = Event.objects.for_store(store).filter(received_at__gte=today).count()

    carts = Cart.objects.for_store(store).filter(status=CartStatus.OPEN).aggregate(n=Count("id"), value=Sum("total"))

    # Cancelled orders are not sales; they leave both the count and the revenue.
    orders = Order.objects.for_store(store).filter(placed_at__gte=month_ago).exclude(status=OrderStatus.CANCELLED)
    figures = orders.aggregate(
        n_30=Count("id"), revenue_30=Sum("total"),
        n_today=Count("id", filter=Q(placed_at__gte=today)), revenue_today=Sum("total", filter=Q(placed_at__gte=today)),
    )

    customers = Customer.objects.for_store(store).filter(merged_into__isnull=True).count()
    subscribed = dict(
        Consent.objects.for_store(store)
        .filter(status=ConsentStatus.SUBSCRIBED, customer__merged_into__isnull=True)
        .values_list("channel")
        .annotate(n=Count("id"))
        .values_list("channel", "n")
    )

    def money(value: Decimal | None) -> Money:
        return Money(value or Decimal("0.00"), store.currency)

    return Overview(
        store=store,
        generated_at=now,
        events_today=events_today,
        open_carts=carts["n"],
        open_carts_value=money(carts["value"]),
        orders_today=figures["n_today"],
        revenue_today=money(figures["revenue_today"]),
        orders_30d=figures["n_30"],
        revenue_30d=money(figures["revenue_30"]),
        customers=customers,
        consent=[ConsentRate(channel, subscribed.get(channel, 0), customers) for channel in CONSENT_CHANNELS],
    )


# --- Customers ------------------------------------------------------------------------------

_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")


def customers_search(*, store: Store, query: str = "") -> QuerySet[Customer]:
    """Live (not merged) customers whose name, e-mail, phone or handle contains every word of `query`."""
    customers = Customer.objects.for_store(store).filter(merged_into__isnull=True)
    for term in query.split()[:8]:
        variants = {term}
        compact = _PHONE_PUNCTUATION.sub("", term)
        if compact:
            variants.add(compact)
        identity_match = Q()
        for variant in variants:
            identity_match |= Q(value__icontains=variant)
        has_identity = Exists(
            Identity.objects.for_store(store).filter(identity_match, customer_id=OuterRef("pk"))
        )
        customers = customers.filter(Q(first_name__icontains=term) | Q(last_name__icontains=term) | has_identity)
    return customers.order_by("-created_at", "-id")


def customer_get(*, store: Store, customer_id: int) -> Customer | None:
    return Customer.objects.for_store(store).filter(pk=customer_id).first()


def customer_identities(*, store: Store, customer: Customer) -> QuerySet[Identity]:
    return Identity.objects.for_store(store).filter(customer=customer).order_by("kind", "value")


def customer_consents(*, store: Store, customer: Customer) -> list[dict[str, Any]]:
    """Current consent per channel, every channel listed (a channel never asked is "unknown")."""
    current = {
        consent.channel: consent
        for consent in Consent.objects.for_store(store).filter(customer=customer).select_related("change")
    }
    rows = []
    for channel in CONSENT_CHANNELS:
        consent = current.get(channel)
        rows.append({
            "channel": channel,
            "status": consent.status if consent else None,
            "changed_at": consent.changed_at if consent else None,
            "source": consent.change.source if consent else "",
        })
    return rows


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: str  # "event", "cart", "order" or "consent"
    code: str  # event type, cart/order status or consent status
    title: str  # the record's own identifier (event id, cart id, order id, channel)
    amount: Money | None = None
    details: dict[str, Any] = field(default_factory=dict)


def customer_timeline(*, store: Store, customer: Customer, limit: int = 200) -> list[TimelineEntry]:
    """Everything that happened to a person, newest first: events, carts, orders and consent changes."""
    entries: list[TimelineEntry] = []
    for event in Event.objects.for_store(store).filter(customer=customer).order_by("-occurred_at", "-id")[:limit]:
        data = event.payload.get("data") if isinstance(event.payload, dict) else None
        data = data if isinstance(data, dict) else {}
        reference = data.get("order_id") or data.get("cart_id") or data.get("channel") or ""
        entries.append(TimelineEntry(event.occurred_at, "event", event.type, event.client_id,
                                     details={"source": event.source, "reference": str(reference)}))
    for cart in Cart.objects.for_store(store).filter(customer=customer).order_by("-created_at")[:limit]:
        entries.append(TimelineEntry(cart.last_event_at or cart.created_at, "cart", cart.status, cart.external_id,
                                     amount=Money(cart.total, cart.currency or store.currency),
                                     details={"items": len(cart.items or []), "recovery_url": cart.recovery_url}))
    for order in Order.objects.for_store(store).filter(customer=customer).order_by("-created_at")[:limit]:
        entries.append(TimelineEntry(order.placed_at or order.last_event_at or order.created_at, "order", order.status,
                                     order.external_id, amount=Money(order.total, order.currency or store.currency),
                                     details={"items": len(order.items or [])}))
    for change in ConsentChange.objects.for_store(store).filter(customer=customer).order_by("-occurred_at")[:limit]:
        entries.append(TimelineEntry(change.occurred_at, "consent", change.status, change.channel,
                                     details={"source": change.source}))
    # An event and the cart or order it produced share a moment; a fixed rank keeps the page stable.
    order_of_kind = {"event": 0, "consent": 1, "order": 2, "cart": 3}
    entries.sort(key=lambda entry: (entry.at, -order_of_kind[entry.kind]), reverse=True)
    return entries[:limit]


def customer_carts(*, store: Store, customer: Customer) -> QuerySet[Cart]:
    return Cart.objects.for_store(store).filter(customer=customer).order_by("-last_event_at", "-id")


def customer_orders(*, store: Store, customer: Customer) -> QuerySet[Order]:
    return Order.objects.for_store(store).filter(customer=customer).order_by("-placed_at", "-id")
