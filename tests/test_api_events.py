"""POST /api/v1/events: batches, idempotency, projection and out-of-order delivery."""

from datetime import UTC, datetime, timedelta

from tertulia.commerce.models import Cart, Order
from tertulia.customers.models import Customer, Identity
from tertulia.events.models import Event

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def cart(cart_id="c1", email="ana@example.com", items=None, total="59.90", **extra):
    items = [{"sku": "TAZA-01", "quantity": 2, "price": "29.95"}] if items is None else items
    return {"cart_id": cart_id, "customer": {"email": email}, "items": items, "total": total, "currency": "EUR",
            "recovery_url": "https://tienda.example/cart/c1", **extra}


def order(order_id="o1", cart_id="c1", email="ana@example.com"):
    return {"order_id": order_id, "cart_id": cart_id, "customer": {"email": email},
            "items": [{"sku": "TAZA-01", "quantity": 2, "price": "29.95"}], "total": "59.90", "currency": "EUR"}


def test_single_event_is_stored_and_projected(api, store, event):
    response = api.post("/api/v1/events", event("cart_updated", cart(), at=T0, event_id="e1"))
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0, "events": [{"id": "e1", "status": "created"}]}
    stored = Cart.objects.for_store(store).get(external_id="c1")
    assert stored.status == "open"
    assert str(stored.total) == "59.90"
    assert stored.items[0]["sku"] == "TAZA-01"
    customer = Customer.objects.for_store(store).get()
    assert stored.customer_id == customer.pk
    assert Identity.objects.get(customer=customer).value == "ana@example.com"
    assert Event.objects.for_store(store).get().customer_id == customer.pk


def test_replayed_event_is_stored_once(api, store, event):
    body = {"events": [event("cart_updated", cart(), at=T0, event_id="same")]}
    assert api.post("/api/v1/events", body).json()["accepted"] == 1
    again = api.post("/api/v1/events", body).json()
    assert again["accepted"] == 0 and again["duplicates"] == 1
    assert Event.objects.for_store(store).count() == 1


def test_duplicate_inside_one_batch_counts_once(api, store, event):
    one = event("cart_updated", cart(), at=T0, event_id="twice")
    answer = api.post("/api/v1/events", {"events": [one, one]}).json()
    assert (answer["accepted"], answer["duplicates"]) == (1, 1)


def test_late_cart_update_does_not_reopen_converted_cart(api, store, event):
    api.post("/api/v1/events", {"events": [
        event("order_placed", order(), at=T0 + timedelta(minutes=10)),
    ]})
    assert Cart.objects.for_store(store).get(external_id="c1").status == "converted"
    api.post("/api/v1/events", event("cart_updated", cart(), at=T0 + timedelta(minutes=20)))
    assert Cart.objects.for_store(store).get(external_id="c1").status == "converted"


def test_older_cart_state_never_overwrites_newer(api, store, event):
    api.post("/api/v1/events", event("cart_updated", cart(total="10.00"), at=T0 + timedelta(minutes=5)))
    api.post("/api/v1/events", event("cart_updated", cart(total="99.00"), at=T0))
    assert str(Cart.objects.for_store(store).get(external_id="c1").total) == "10.00"


def test_emptied_cart(api, store, event):
    api.post("/api/v1/events", event("cart_updated", cart(), at=T0))
    api.post("/api/v1/events", event("cart_updated", cart(items=[], total="0"), at=T0 + timedelta(minutes=1)))
    assert Cart.objects.for_store(store).get(external_id="c1").status == "emptied"


def test_order_moments_in_any_order(api, store, event):
    api.post("/api/v1/events", event("order_delivered", {"order_id": "o1"}, at=T0 + timedelta(days=3)))
    api.post("/api/v1/events", event("order_fulfilled", {"order_id": "o1"}, at=T0 + timedelta(days=1)))
    api.post("/api/v1/events", event("order_placed", order(), at=T0))
    placed = Order.objects.for_store(store).get(external_id="o1")
    assert placed.status == "delivered"
    assert placed.placed_at == T0 and placed.fulfilled_at == T0 + timedelta(days=1)
    assert str(placed.total) == "59.90"
    api.post("/api/v1/events", event("order_cancelled", {"order_id": "o1"}, at=T0 + timedelta(days=4)))
    assert Order.objects.for_store(store).get(external_id="o1").status == "cancelled"


def test_linking_identities_merges_profiles(api, store, event):
    api.post("/api/v1/events", event("customer_upserted", {"customer": {"email": "ana@example.com"}}))
    api.post("/api/v1/events", event("customer_upserted", {"customer": {"phone": "+34600111222"}}))
    api.post("/api/v1/events", event("cart_updated", cart(email="ana@example.com"), at=T0))
    assert Customer.objects.for_store(store).filter(merged_into__isnull=True).count() == 2
    api.post("/api/v1/events", event("customer_upserted", {
        "customer": {"email": "ANA@example.com", "phone": "+34 600 111 222", "first_name": "Ana"}}))
    alive = Customer.objects.for_store(store).filter(merged_into__isnull=True)
    assert alive.count() == 1
    survivor = alive.get()
    assert survivor.first_name == "Ana"
    assert set(Identity.objects.filter(customer=survivor).values_list("kind", flat=True)) == {"email", "phone"}
    assert Cart.objects.for_store(store).get(external_id="c1").customer_id == survivor.pk


def test_late_checkout_started_still_records_when_checkout_began(api, store, event):
    api.post("/api/v1/events", event("cart_updated", cart(), at=T0 + timedelta(minutes=10)))
    api.post("/api/v1/events", event("checkout_started", {"cart_id": "c1"}, at=T0 + timedelta(minutes=2)))
    stored = Cart.objects.for_store(store).get(external_id="c1")
    assert stored.checkout_started_at == T0 + timedelta(minutes=2)
    assert str(stored.total) == "59.90"  # the stale checkout did not overwrite the newer contents


def test_consent_ledger_keeps_every_change_and_the_newest_wins(api, store, event):
    from tertulia.customers.models import Consent, ConsentChange

    who = {"email": "ana@example.com"}
    api.post("/api/v1/events", {"events": [
        event("consent_changed", {"customer": who, "channel": "email", "status": "unsubscribed"},
              at=T0 + timedelta(days=2)),
        event("consent_changed", {"customer": who, "channel": "email", "status": "subscribed",
                                  "source": "checkout", "evidence": {"form": "checkout"}}, at=T0),
        event("consent_changed", {"customer": who, "channel": "sms", "status": "subscribed"}, at=T0),
    ]})
    # An older change arriving later is recorded but does not move the current state.
    api.post("/api/v1/events", event("consent_changed", {"customer": who, "channel": "email",
                                                           "status": "subscribed"}, at=T0 + timedelta(days=1)))
    current = dict(Consent.objects.for_store(store).values_list("channel", "status"))
    assert current == {"email": "unsubscribed", "sms": "subscribed"}
    ledger = list(ConsentChange.objects.for_store(store).filter(channel="email").order_by("occurred_at")
                  .values_list("status", "source"))
    assert ledger == [("subscribed", "checkout"), ("subscribed", "api"), ("unsubscribed", "api")]
    assert ConsentChange.objects.for_store(store).get(source="checkout").evidence["form"] == "checkout"
