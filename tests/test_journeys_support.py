"""Shared set-up for the journeys tests: people, carts and orders made through event ingestion."""

from datetime import UTC, datetime, timedelta

from tertulia.channels.models import Delivery
from tertulia.customers.models import Customer
from tertulia.events.services import events_ingest
from tertulia.journeys.models import Enrollment
from tertulia.journeys.triggers import sweep_state_reset
from tests.conftest import make_event

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def person(email: str, **extra) -> dict:
    return {"email": email, **extra}


def subscribe(store, email: str, *, channel: str = "email", at: datetime | None = None, status: str = "subscribed",
              **fields) -> Customer:
    events_ingest(store=store, events=[make_event("consent_changed", {
        "customer": person(email, **fields), "channel": channel, "status": status, "source": "test"},
        at=at or NOW - timedelta(days=30))])
    return Customer.objects.for_store(store).get(identities__kind="email", identities__value=email)


def cart(store, email: str, cart_id: str, *, at: datetime, items=None, event_id: str | None = None) -> None:
    items = [{"sku": "ACE-1", "quantity": 1, "price": "12.50", "title": "Aceite"}] if items is None else items
    total = str(sum(float(i["price"]) * i["quantity"] for i in items)) if items else "0"
    events_ingest(store=store, events=[make_event("cart_updated", {
        "cart_id": cart_id, "customer": person(email), "items": items, "total": total, "currency": "EUR",
        "recovery_url": f"https://tienda.example/cart/{cart_id}"}, at=at, event_id=event_id)])


def order(store, email: str, order_id: str, *, at: datetime, cart_id: str | None = None, codes=None,
          items=None) -> None:
    data = {"order_id": order_id, "customer": person(email),
            "items": items or [{"sku": "ACE-1", "quantity": 1, "price": "12.50"}], "total": "12.50", "currency": "EUR"}
    if cart_id:
        data["cart_id"] = cart_id
    if codes is not None:
        data["discount_codes"] = codes
    events_ingest(store=store, events=[make_event("order_placed", data, at=at)])


def moment(store, kind: str, order_id: str, *, at: datetime) -> None:
    events_ingest(store=store, events=[make_event(kind, {"order_id": order_id}, at=at)])


def enrollments(store, key: str | None = None):
    query = Enrollment.objects.for_store(store)
    return query.filter(journey_key=key) if key else query


def deliveries(store, key: str | None = None):
    query = Delivery.objects.for_store(store).order_by("due_at", "id")
    return query.filter(journey_key=key) if key else query


def fresh() -> None:
    """Each test starts with no sweep memory (ids are reused between tests)."""
    sweep_state_reset()
