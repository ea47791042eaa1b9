"""Two batches creating the same shopper at once still end with one profile per person."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction

from tertulia.customers import services as customer_services
from tertulia.customers.models import Customer, Identity
from tertulia.customers.services import PersonRef, customer_resolve, customers_resolve
from tertulia.events.models import Event
from tertulia.events.schema import validate_batch
from tertulia.events.services import events_store


def test_profile_created_by_a_losing_racer_folds_into_the_winner(store, monkeypatch):
    winner = customer_resolve(store=store, identities=[("email", "ana@example.com")])
    real_lookup = customer_services._identity_owners
    calls = []

    def first_lookup_misses(store_, keys):
        # The first lookup runs before the other transaction committed: it sees nothing.
        calls.append(keys)
        return {} if len(calls) == 1 else real_lookup(store_, keys)

    monkeypatch.setattr(customer_services, "_identity_owners", first_lookup_misses)
    with transaction.atomic():
        (resolved,) = customers_resolve(
            store=store, people=[PersonRef([("email", "ana@example.com"), ("phone", "+34600111222")], {})]
        )
    assert resolved == winner.pk
    assert Customer.objects.for_store(store).count() == 1  # the losing profile is gone
    assert set(Identity.objects.for_store(store).values_list("kind", "customer_id")) == {
        ("email", winner.pk), ("phone", winner.pk)}


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_the_same_new_shoppers(store):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time; the race needs PostgreSQL")
    start = datetime.now(UTC) - timedelta(hours=1)

    def batch(worker: int) -> list:
        events = []
        for n in range(200):
            events.append({
                "id": f"w{worker}-{n}", "type": "cart_updated",
                "occurred_at": (start + timedelta(seconds=n)).isoformat(),
                "data": {"cart_id": f"cart-{worker}-{n}", "customer": {"email": f"shopper{n}@example.com"},
                         "items": [{"sku": "A", "quantity": 1}], "total": "5.00", "currency": "EUR"},
            })
        return validate_batch(events)[0]

    batches = [batch(worker) for worker in range(4)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run(events):
        try:
            barrier.wait()
            events_store(store=store, events=events, source="api")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(events,)) for events in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Event.objects.for_store(store).count() == 800
    assert Customer.objects.for_store(store).filter(merged_into__isnull=True).count() == 200
    assert Identity.objects.for_store(store).count() == 200
    # every cart points at the one profile of its shopper
    owners = {}
    for email, customer_id in Identity.objects.for_store(store).values_list("value", "customer_id"):
        owners[email] = customer_id
    for event in Event.objects.for_store(store):
        assert event.customer_id == owners[event.payload["data"]["customer"]["email"]]
