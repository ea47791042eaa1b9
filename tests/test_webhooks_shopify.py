"""POST /webhooks/shopify/<store>: Shopify's own sample payloads, signed, mapped into native events."""

import base64
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tertulia.catalog.models import Category, Product
from tertulia.commerce.models import Cart, Order
from tertulia.customers.models import Consent, Customer, Identity
from tertulia.events.models import Event, WebhookDelivery
from tertulia.events.webhooks.shopify import shopify_events

FIXTURES = Path(__file__).parent / "fixtures" / "ecommerce" / "shopify"
SAMPLES = FIXTURES / "trigger_dev_sample_payloads"  # Shopify's webhook samples (ids lost precision)
CLIENT = FIXTURES / "shopify_python_api_fixtures"  # Shopify's REST objects: a webhook body is the inner object


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def client_object(name: str, key: str) -> bytes:
    return json.dumps(json.loads((CLIENT / name).read_text())[key]).encode()


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture
def deliver(client, store):
    counter = iter(range(1, 10_000))

    def post(topic, body: bytes, *, secret=None, signature=..., delivery_id=None, slug=None, **headers):
        sent = {"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": delivery_id or f"delivery-{next(counter)}",
                "X-Shopify-Shop-Domain": "tienda.myshopify.com", **headers}
        if signature is ...:
            signature = sign(body, secret or store.shopify_secret)
        if signature is not None:
            sent["X-Shopify-Hmac-Sha256"] = signature
        return client.post(f"/webhooks/shopify/{slug or store.slug}", body, content_type="application/json",
                           headers=sent)

    return post


def nothing_stored(store):
    return (Event.objects.for_store(store).count(), WebhookDelivery.objects.for_store(store).count(),
            Customer.objects.for_store(store).count()) == (0, 0, 0)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_checkout_create_becomes_an_open_cart_with_its_recovery_url(deliver, store):
    response = deliver("checkouts/create", sample("CheckoutsCreate.json"))
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["duplicate"], answer["accepted"], answer["duplicates"]) == (False, 2, 0)
    cart = Cart.objects.for_store(store).get(external_id="123123123")
    assert cart.status == "open"
    assert cart.total == Decimal("398.00") and cart.currency == "USD"
    assert [(i["sku"], i["quantity"]) for i in cart.items] == [("IPOD2008PINK", 1), ("IPOD2008PINK", 1)]
    assert cart.recovery_url == "https://checkout.local/548380009/checkouts/123123123/recover?key=example-secret-token"
    assert cart.checkout_started_at == utc("2021-12-31T19:00:00-05:00")
    customer = Customer.objects.for_store(store).get()
    assert cart.customer_id == customer.pk
    assert set(Identity.objects.filter(customer=customer).values_list("kind", "value")) == {
        ("email", "john@example.com"), ("external", "603851970716743400")}
    assert (customer.first_name, customer.last_name) == ("John", "Smith")
    assert set(Event.objects.for_store(store).values_list("type", "source")) == {
        ("checkout_started", "shopify"), ("cart_updated", "shopify")}


def test_checkout_update_with_items_falls_back_to_the_customer_and_its_total(deliver, store):
    body = client_object("abandoned_checkout.json", "checkout")
    assert deliver("checkouts/update", body).status_code == 200
    cart = Cart.objects.for_store(store).get(external_id="2a1ace52255252df566af0faaedfbfa7")
    assert cart.total == Decimal("409.94")
    assert [i["sku"] for i in cart.items] == ["IPOD2008RED", "IPOD2008PINK"]
    assert cart.items[0]["price"] == "199.00"
    assert Identity.objects.for_store(store).filter(kind="email", value="bob.norman@hostmail.com").exists()
    # The billing phone 555-625-1199 is not a real number: it is left out instead of failing the delivery.
    assert not Identity.objects.for_store(store).filter(kind="phone").exists()


def test_order_create_places_the_order_and_converts_its_cart(deliver, store):
    response = deliver("orders/create", client_object("order.json", "order"))
    assert response.status_code == 200, response.content
    order = Order.objects.for_store(store).get(external_id="450789469")
    assert order.status == "placed"
    assert order.placed_at == utc("2008-01-10T11:00:00-05:00")
    assert order.total == Decimal("409.94") and order.currency == "USD"
    assert order.cart_external_id == "68778783ad298f1c80c3bafcddeea02f"
    assert [i["sku"] for i in order.items] == ["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"]
    assert Cart.objects.for_store(store).get(external_id=order.cart_external_id).status == "converted"
    email = Identity.objects.for_store(store).get(kind="email")
    assert email.value == "bob.norman@hostmail.com" and order.customer_id == email.customer_id


def test_order_fulfilled_records_the_fulfilment_time_and_tracking(deliver, store):
    response = deliver("orders/fulfilled", client_object("order.json", "order"))
    assert response.json()["accepted"] == 2
    order = Order.objects.for_store(store).get(external_id="450789469")
    assert order.status == "fulfilled"
    assert order.fulfilled_at == utc("2014-01-22T15:58:27-05:00")
    fulfilled = Event.objects.for_store(store).get(type="order_fulfilled")
    assert fulfilled.payload["data"]["tracking_url"].startswith("http://wwwapps.ups.com/")


def test_orders_placed_then_fulfilled_keep_one_order(deliver, store):
    body = client_object("order.json", "order")
    deliver("orders/create", body)
    second = deliver("orders/fulfilled", body).json()
    # The placement arrives again inside the fulfilment delivery and is recognised.
    assert (second["accepted"], second["duplicates"]) == (1, 1)
    assert Order.objects.for_store(store).get().status == "fulfilled"


def test_order_cancelled_sample(deliver, store):
    response = deliver("orders/cancelled", sample("Order.json"))
    assert response.status_code == 200, response.content
    order = Order.objects.for_store(store).get(external_id="820982911946154500")
    assert order.status == "cancelled"
    assert order.cancelled_at == utc("2021-12-31T19:00:00-05:00")
    assert order.total == Decimal("388.00")
    assert Event.objects.for_store(store).get(type="order_cancelled").payload["data"]["reason"] == "customer"
    # The order says the buyer ticked "accepts marketing": an opt-in with its evidence.
    consent = Consent.objects.for_store(store).get(channel="email")
    assert consent.status == "subscribed" and consent.change.source == "shopify"
    assert consent.change.evidence["field"] == "buyer_accepts_marketing"


def test_product_create_upserts_each_variant(deliver, store):
    response = deliver("products/create", sample("Product.json"))
    assert response.json()["accepted"] == 2
    small = Product.objects.for_store(store).get(sku="example-shirt-s")
    assert small.title == "Example T-Shirt - Small"
    assert (small.price, small.stock, small.external_id) == (Decimal("19.99"), 75, "642667041472714000")
    assert small.url == "https://tienda.myshopify.com/products/example-t-shirt?variant=642667041472714000"
    assert small.category.external_id == "Shirts"
    assert Product.objects.for_store(store).get(sku="example-shirt-m").stock == 50


def test_product_update_takes_images_and_moves_stock(deliver, store):
    body = client_object("product.json", "product")
    deliver("products/update", body)
    products = {p.sku: p for p in Product.objects.for_store(store)}
    assert set(products) == {"IPOD2008PINK", "IPOD2008RED", "IPOD2008GREEN", "IPOD2008BLACK"}
    assert products["IPOD2008RED"].title == "IPod Nano - 8GB - Red"
    assert products["IPOD2008RED"].image_url == "http://static.shopify.com/s/files/1/6909/3384/products/ipod-nano.png?0"
    assert Category.objects.for_store(store).get().external_id == "Cult Products"
    # Same product, same updated_at, stock sold down: still a change, so it is stored.
    changed = json.loads(body)
    changed["variants"][0]["inventory_quantity"] = 7
    answer = deliver("products/update", json.dumps(changed).encode()).json()
    assert (answer["accepted"], answer["duplicates"]) == (1, 3)
    assert Product.objects.for_store(store).get(sku="IPOD2008PINK").stock == 7


def test_blank_sku_falls_back_to_the_variant_id(store):
    payload = json.loads(sample("Product.json"))
    payload["variants"] = payload["variants"][:1]
    payload["variants"][0]["sku"] = ""
    (only,) = shopify_events(topic="products/update", payload=payload, shop_url="")
    assert only["data"]["sku"] == "shopify-642667041472714000"
    assert only["data"]["title"] == "Example T-Shirt"  # one variant: no " - variant" suffix


def test_customer_create_records_the_profile_and_the_marketing_opt_in(deliver, store):
    response = deliver("customers/create", sample("CustomersCreate.json"))
    assert response.json()["accepted"] == 2
    customer = Customer.objects.for_store(store).get()
    assert (customer.first_name, customer.last_name) == ("Bob", "Biller")
    consent = Consent.objects.for_store(store).get(customer=customer, channel="email")
    assert consent.status == "subscribed"
    assert consent.changed_at == utc("2021-12-31T19:00:00-05:00")
    assert consent.change.source == "shopify"
    assert consent.change.evidence["field"] == "accepts_marketing" and consent.change.evidence["value"] is True


def test_customer_update_without_consent_evidence_changes_no_consent(deliver, store):
    response = deliver("customers/update", client_object("customer.json", "customer"))
    assert response.json()["accepted"] == 1
    customer = Customer.objects.for_store(store).get()
    assert (customer.first_name, customer.last_name) == ("Bob", "Norman")
    assert Identity.objects.filter(customer=customer, kind="external", value="207119551").exists()
    assert not Consent.objects.for_store(store).exists()


def test_email_marketing_consent_states_map_to_the_ledger(store):
    payload = json.loads(sample("CustomersCreate.json"))
    payload["email_marketing_consent"] = {"state": "unsubscribed", "opt_in_level": "single_opt_in",
                                          "consent_updated_at": "2022-03-01T10:00:00+01:00"}
    consent = [e for e in shopify_events(topic="customers/update", payload=payload) if e["type"] == "consent_changed"]
    assert [(e["data"]["status"], e["occurred_at"]) for e in consent] == [("unsubscribed", "2022-03-01T09:00:00Z")]
    payload["email_marketing_consent"]["state"] = "not_subscribed"
    assert [e["type"] for e in shopify_events(topic="customers/update", payload=payload)] == ["customer_upserted"]


def test_bad_signature_is_refused_and_nothing_stored(deliver, store):
    response = deliver("orders/create", sample("Order.json"), signature=sign(b"another body", store.shopify_secret))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert nothing_stored(store)


def test_missing_signature_is_refused(deliver, store):
    response = deliver("orders/create", sample("Order.json"), signature=None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_signature"
    assert nothing_stored(store)


def test_another_stores_secret_does_not_sign_for_this_store(deliver, store, other_store):
    response = deliver("orders/create", sample("Order.json"), secret=other_store.shopify_secret)
    assert response.status_code == 401
    assert nothing_stored(store) and nothing_stored(other_store)
    assert deliver("orders/create", sample("Order.json"), secret=other_store.shopify_secret,
                   slug=other_store.slug).status_code == 200


def test_unknown_topic_is_accepted_logged_and_not_stored(deliver, store, caplog):
    with caplog.at_level(logging.INFO, logger="tertulia.webhooks"):
        response = deliver("orders/paid", sample("Order.json"), delivery_id="paid-1")
    assert response.status_code == 202
    assert response.json()["ignored"] is True
    assert nothing_stored(store)
    (record,) = [r for r in caplog.records if r.getMessage() == "webhook topic ignored"]
    assert (record.topic, record.store, record.delivery_id) == ("orders/paid", store.slug, "paid-1")


def test_replayed_delivery_id_is_stored_once(deliver, store):
    body = sample("CheckoutsCreate.json")
    assert deliver("checkouts/create", body, delivery_id="d-1").json()["accepted"] == 2
    again = deliver("checkouts/create", body, delivery_id="d-1")
    assert again.status_code == 200 and again.json() == {"duplicate": True}
    assert Event.objects.for_store(store).count() == 2
    assert WebhookDelivery.objects.for_store(store).get().events_created == 2


def test_same_change_under_a_new_delivery_id_is_stored_once(deliver, store):
    body = sample("CheckoutsCreate.json")
    deliver("checkouts/create", body, delivery_id="d-1")
    answer = deliver("checkouts/update", body, delivery_id="d-2").json()
    assert (answer["duplicate"], answer["accepted"], answer["duplicates"]) == (False, 0, 2)
    assert Event.objects.for_store(store).count() == 2


def test_body_that_is_not_json_is_refused(deliver, store):
    response = deliver("orders/create", b"id=1&total=3")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert nothing_stored(store)


def test_payload_that_maps_to_invalid_events_stores_nothing(deliver, store):
    order = json.loads(sample("Order.json"))
    order["total_price"] = order["current_total_price"] = "free"
    response = deliver("orders/create", json.dumps(order).encode())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_events"
    assert {d["field"] for d in error["details"]} == {"data.total"}
    assert nothing_stored(store)


def test_payload_without_an_id_is_refused(deliver, store):
    response = deliver("products/update", b'{"title": "no id", "variants": []}')
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unmappable_payload"
    assert nothing_stored(store)


def test_payload_of_the_wrong_shape_is_a_4xx(deliver, store):
    for body in (b"[]", b'{"id": 1, "line_items": "x", "customer": 3, "created_at": 5}'):
        response = deliver("orders/create", body)
        assert 400 <= response.status_code < 500, response.content
        assert "error" in response.json()
    assert nothing_stored(store)


def test_unknown_store_is_404(deliver, store):
    response = deliver("orders/create", sample("Order.json"), slug="no-such-store")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_store"


def test_only_post_is_allowed(client, store):
    response = client.get(f"/webhooks/shopify/{store.slug}")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_oversized_body_is_413_and_nothing_stored(deliver, store, settings):
    body = b'{"id": 1, "note": "' + b"x" * (settings.TERTULIA_MAX_BODY_BYTES + 1) + b'"}'
    response = deliver("orders/create", body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert nothing_stored(store)


def test_url_with_a_trailing_slash_is_accepted(deliver, store):
    assert deliver("customers/update", client_object("customer.json", "customer"), slug=f"{store.slug}/").status_code == 200


def test_no_csrf_token_is_needed(store):
    from django.test import Client

    body = client_object("customer.json", "customer")
    response = Client(enforce_csrf_checks=True).post(
        f"/webhooks/shopify/{store.slug}", body, content_type="application/json",
        headers={"X-Shopify-Topic": "customers/update", "X-Shopify-Hmac-Sha256": sign(body, store.shopify_secret)})
    assert response.status_code == 200, response.content
