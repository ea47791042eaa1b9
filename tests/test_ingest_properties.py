"""Properties of ingestion: an event is stored once however it is replayed and batched; garbage never 500s."""

import itertools
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tertulia.core.models import Store
from tertulia.core.services import api_key_create, store_create
from tertulia.events.models import Event, EventType

URL = "/api/v1/events"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_stores = itertools.count(1)


def _fresh_client() -> tuple[Client, object]:
    """Each example gets its own store, so examples never see each other's events."""
    store = store_create(slug=f"prop-{next(_stores)}", name="Propiedades")
    client = Client(headers={"Authorization": f"Bearer {api_key_create(store=store, name='p').secret}"})
    return client, store


def _shared_client() -> Client:
    """One store for every example of a test: garbage tests only look at answers, not at what is stored."""
    store = Store.objects.filter(slug="garbage").first() or store_create(slug="garbage", name="Basura")
    return Client(headers={"Authorization": f"Bearer {api_key_create(store=store, name='g').secret}"})


def _event(number: int, variant: int) -> dict:
    """Event number `number`; `variant` changes its content but not its client id (a client bug, not a new event)."""
    at = T0 + timedelta(minutes=number, seconds=variant)
    email = f"persona{number % 5}@example.com"
    kind = number % 5
    if kind == 0:
        return {"id": f"e{number}", "type": "cart_updated", "occurred_at": at.isoformat(), "data": {
            "cart_id": f"c{number % 4}", "customer": {"email": email}, "total": f"{10 + variant}.00", "currency": "EUR",
            "items": [{"sku": f"S{number % 3}", "quantity": 1 + variant % 3}]}}
    if kind == 1:
        return {"id": f"e{number}", "type": "order_placed", "occurred_at": at.isoformat(), "data": {
            "order_id": f"o{number % 3}", "cart_id": f"c{number % 4}", "customer": {"email": email},
            "items": [{"sku": "S1", "quantity": 1}], "total": "10.00", "currency": "EUR"}}
    if kind == 2:
        return {"id": f"e{number}", "type": "customer_upserted", "occurred_at": at.isoformat(), "data": {
            "customer": {"email": email, "phone": f"+3460011122{number % 3}", "first_name": f"Nombre{variant}"}}}
    if kind == 3:
        return {"id": f"e{number}", "type": "consent_changed", "occurred_at": at.isoformat(), "data": {
            "customer": {"email": email}, "channel": "email",
            "status": "subscribed" if variant % 2 == 0 else "unsubscribed"}}
    return {"id": f"e{number}", "type": "product_upserted", "occurred_at": at.isoformat(), "data": {
        "sku": f"S{number % 3}", "title": f"Taza {variant}", "price": "9.95", "stock": variant}}


sends = st.lists(st.tuples(st.integers(0, 24), st.integers(0, 3)), min_size=1, max_size=60)


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(sent=sends, cuts=st.lists(st.integers(1, 60), max_size=8))
def test_each_client_id_is_stored_once_however_replayed_and_batched(sent, cuts):
    client, store = _fresh_client()
    events = [_event(number, variant) for number, variant in sent]
    bounds = sorted({0, len(events), *(cut for cut in cuts if cut < len(events))})
    accepted = duplicates = 0
    for start, end in itertools.pairwise(bounds):
        batch = events[start:end]
        response = client.post(URL, orjson.dumps({"events": batch}), content_type="application/json")
        assert response.status_code == 200, response.content
        answer = response.json()
        assert answer["accepted"] + answer["duplicates"] == len(batch)
        assert [item["id"] for item in answer["events"]] == [event["id"] for event in batch]
        accepted += answer["accepted"]
        duplicates += answer["duplicates"]
    distinct = {event["id"] for event in events}
    assert accepted == len(distinct)
    assert accepted + duplicates == len(events)
    stored = list(Event.objects.for_store(store).values_list("client_id", flat=True))
    assert sorted(stored) == sorted(distinct)


# --- Garbage ---------------------------------------------------------------------------------

_ENVELOPE = ["id", "type", "occurred_at", "data"]
_DATA = ["cart_id", "order_id", "items", "total", "currency", "customer", "recovery_url", "sku", "title", "price",
         "stock", "category_id", "channel", "status", "evidence", "source", "name", "parent_id", "url", "image_url",
         "active", "reason", "tracking_url", "external_id", "quantity", "description"]
_PERSON = ["email", "phone", "external_id", "handles", "first_name", "last_name", "language", "timezone"]
_WORDS = [
    *(t.value for t in EventType), "2026-11-20T10:00:00Z", "2026-02-30T10:00:00Z", "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-23:59", "2026-11-20T10:00:00", "ana@example.com", "ana@", "+34600111222", "600111222",
    "EUR", "eur", "email", "sms", "subscribed", "x", "mastodon", "https://tienda.example/c", "javascript:1",
    "Europe/Madrid", "es", "1e999", "NaN", "-1", "12.50", "", " ", "\x00", "a\x00b", "ñandú", "🛒",
]
scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(_WORDS) | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
people = st.dictionaries(st.sampled_from(_PERSON), json_values | st.sampled_from(_WORDS), max_size=5)
items = st.lists(st.dictionaries(st.sampled_from(["sku", "quantity", "price", "title"]), json_values, max_size=4),
                 max_size=3)
data = st.dictionaries(st.sampled_from(_DATA), json_values | people | items, max_size=8)
events = st.fixed_dictionaries(
    {}, optional={"id": st.text(max_size=10) | json_values, "type": st.sampled_from(_WORDS) | json_values,
                  "occurred_at": st.sampled_from(_WORDS) | json_values, "data": data | json_values},
)
bodies = (
    events
    | st.fixed_dictionaries({"events": st.lists(events | json_values, max_size=5)})
    | st.fixed_dictionaries({"events": json_values})
    | json_values
)


def _assert_answer(response) -> None:
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "details"}
        assert all(set(detail) == {"index", "field", "code", "message"} for detail in error["details"])


@pytest.mark.django_db
@settings(PROPERTY_SETTINGS, max_examples=120)
@given(body=bodies)
def test_garbage_json_never_gets_a_5xx(body):
    client = _shared_client()
    _assert_answer(client.post(URL, orjson.dumps(body), content_type="application/json"))


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(body=st.binary(max_size=200))
def test_garbage_bytes_never_get_a_5xx(body):
    client = _shared_client()
    _assert_answer(client.post(URL, body, content_type="application/json"))
