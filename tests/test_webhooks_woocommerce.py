"""POST /webhooks/woocommerce/<store>: WooCommerce's documented payloads and a logged delivery, signed, mapped."""

import base64
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tertulia.catalog.models import Product
from tertulia.commerce.models import Cart, Order
from tertulia.customers.models import Customer, Identity
from tertulia.events.models import Event, WebhookDelivery
from tertulia.events.webhooks.woocommerce import woocommerce_events

FIXTURES = Path(__file__).parent / "fixtures" / "ecommerce" / "woocommerce"


def payload(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture
def deliver(client, store):
    counter = iter(range(1, 10_000))

    def post(topic, body: bytes, *, secret=None, signature=..., delivery_id=None, slug=None):
        resource, _, action = topic.partition(".")
        headers = {"X-WC-Webhook-Topic": topic, "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": action,
                   "X-WC-Webhook-Source": "https://example.com/", "X-WC-Webhook-ID": "142",
                   "X-WC-Webhook-Delivery-ID": delivery_id or str(next(counter))}
        if signature is ...:
            signature = sign(body, secret or store.woocommerce_secret)
        if signature is not None:
            headers["X-WC-Webhook-Signature"] = signature
        return client.post(f"/webhooks/woocommerce/{slug or store.slug}", body, content_type="application/json",
                           headers=headers)

    return post


def nothing_stored(store):
    return (Event.objects.for_store(store).count(), WebhookDelivery.objects.for_store(store).count(),
            Customer.objects.for_store(store).count()) == (0, 0, 0)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def with_status(status: str, **changes) -> dict:
    order = json.loads(payload("order_created_payload_wc-v3.json"))
    order.update(status=status, **changes)
    return order


def test_processing_order_is_placed(deliver, store):
    response = deliver("order.created", payload("order_created_payload_wc-v3.json"))
    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["duplicate"]) == (1, False)
    order = Order.objects.for_store(store).get(external_id="727")
    assert order.status == "placed"
    assert order.placed_at == utc("2017-03-22T19:28:02")  # date_created_gmt
    assert (order.total, order.currency) == (Decimal("29.35"), "USD")
    # A line without a sku is named after its product; the HTML entity in the name is decoded.
    assert [(i["sku"], i["quantity"], i["price"]) for i in order.items] == [
        ("woocommerce-93", 2, "3.00"), ("Bar3", 1, "12.00")]
    assert order.items[1]["title"] == "Ship Your Idea – Color: Black, Size: M Test"
    customer = Customer.objects.for_store(store).get()
    assert order.customer_id == customer.pk and (customer.first_name, customer.last_name) == ("John", "Doe")
    # customer_id 0 is a guest checkout: no store customer id to record.
    assert list(Identity.objects.filter(customer=customer).values_list("kind", "value")) == [
        ("email", "john.doe@example.com")]
    assert Event.objects.for_store(store).get().source == "woocommerce"


def test_completed_order_is_fulfilled(deliver, store):
    deliver("order.created", payload("order_created_payload_wc-v3.json"))
    answer = deliver("order.updated", payload("order_updated_payload_wc-v3.json")).json()
    assert (answer["accepted"], answer["duplicates"]) == (1, 1)
    order = Order.objects.for_store(store).get()
    assert order.status == "fulfilled"
    assert order.fulfilled_at == utc("2017-03-22T19:30:35")  # date_completed_gmt


def test_logged_legacy_delivery_is_read(deliver, store):
    """The delivery log holds a real order.updated request body from WooCommerce 2.6 (legacy API format)."""
    log = json.loads(payload("webhook_delivery_log_order.updated_wc-v2.json"))
    headers = log["request_headers"]
    body = log["request_body"].encode()
    response = deliver(headers["X-WC-Webhook-Topic"], body, delivery_id=str(headers["X-WC-Webhook-Delivery-ID"]))
    assert response.status_code == 200, response.content
    order = Order.objects.for_store(store).get(external_id="118")
    assert order.status == "fulfilled"
    assert (order.total, order.currency) == (Decimal("14.00"), "BRL")
    assert order.placed_at == utc("2016-05-03T18:10:00")
    assert order.fulfilled_at == utc("2016-05-16T03:29:19")
    assert [(i["sku"], i["quantity"]) for i in order.items] == [("12345", 2)]
    assert Identity.objects.for_store(store).filter(kind="email", value="john.doe@claudiosmweb.com").exists()
    # The logged signature was made with that shop's secret, not this store's.
    again = deliver("order.updated", body, signature=headers["X-WC-Webhook-Signature"], delivery_id="55")
    assert again.status_code == 401


def test_product_created_with_its_categories(deliver, store):
    response = deliver("product.created", payload("product_created_payload_wc-v3.json"))
    assert response.json()["accepted"] == 3  # two categories and the product
    product = Product.objects.for_store(store).get()
    assert (product.sku, product.external_id, product.title) == ("woocommerce-794", "794", "Premium Quality")
    assert product.price == Decimal("21.99") and product.stock is None and product.active
    assert product.url == "https://example.com/product/premium-quality-19/"
    assert product.image_url == "https://example.com/wp-content/uploads/2017/03/T_2_front-4.jpg"
    assert (product.category.external_id, product.category.name) == ("9", "Clothing")


def test_product_update_moves_stock(deliver, store):
    body = json.loads(payload("product_created_payload_wc-v3.json"))
    deliver("product.created", json.dumps(body).encode())
    body.update(manage_stock=True, stock_quantity=12)
    answer = deliver("product.updated", json.dumps(body).encode()).json()
    assert (answer["accepted"], answer["duplicates"]) == (1, 2)  # the categories did not change
    assert Product.objects.for_store(store).get().stock == 12


def test_customer_created(deliver, store):
    response = deliver("customer.created", payload("customer_created_payload_wc-v3.json"))
    assert response.json()["accepted"] == 1
    customer = Customer.objects.for_store(store).get()
    assert (customer.first_name, customer.last_name) == ("John", "Doe")
    assert set(Identity.objects.filter(customer=customer).values_list("kind", "value")) == {
        ("email", "john.doe@example.com"), ("external", "25")}
    update = json.loads(payload("customer_created_payload_wc-v3.json"))
    update.update(first_name="Johnny", date_modified_gmt="2017-04-01T10:00:00")
    assert deliver("customer.updated", json.dumps(update).encode()).json()["accepted"] == 1
    assert Customer.objects.for_store(store).get().first_name == "Johnny"


def test_pending_order_is_an_open_checkout_until_paid(deliver, store):
    pending = with_status("pending", date_paid=None, date_paid_gmt=None, date_modified_gmt="2017-03-22T19:28:02")
    deliver("order.created", json.dumps(pending).encode())
    assert not Order.objects.for_store(store).exists()
    cart = Cart.objects.for_store(store).get(external_id="woocommerce:order:727")
    assert cart.status == "open" and cart.checkout_started_at is not None and cart.total == Decimal("29.35")
    deliver("order.updated", payload("order_created_payload_wc-v3.json"))
    assert Order.objects.for_store(store).get().status == "placed"
    assert Cart.objects.for_store(store).get().status == "converted"


def test_cancelled_orders(store):
    paid = woocommerce_events(topic="order.updated", payload=with_status("refunded"))
    assert [(e["type"], e["data"].get("reason")) for e in paid] == [("order_placed", None), ("order_cancelled", "refunded")]
    unpaid = woocommerce_events(topic="order.updated", payload=with_status("cancelled", date_paid=None, date_paid_gmt=None))
    assert unpaid == []  # WooCommerce cancelling an unpaid order: the checkout stays abandoned


def test_ping_is_answered_and_nothing_stored(client, store):
    response = client.post(f"/webhooks/woocommerce/{store.slug}", "webhook_id=142",
                           content_type="application/x-www-form-urlencoded",
                           headers={"User-Agent": "WooCommerce/8.9.1 Hookshot (WordPress/6.5.3)"})
    assert response.status_code == 200
    assert response.json() == {"ping": True}
    assert nothing_stored(store)


def test_ping_shape_does_not_bypass_the_signature_for_a_topic(deliver, store):
    response = deliver("order.created", b"webhook_id=142", signature=None)
    assert response.status_code == 401
    assert nothing_stored(store)


def test_bad_signature_is_refused_and_nothing_stored(deliver, store):
    response = deliver("order.created", payload("order_created_payload_wc-v3.json"), signature="bm90IGEgc2lnbmF0dXJl")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert nothing_stored(store)


def test_missing_signature_is_refused(deliver, store):
    response = deliver("order.created", payload("order_created_payload_wc-v3.json"), signature=None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_signature"
    assert nothing_stored(store)


def test_another_stores_secret_does_not_sign_for_this_store(deliver, store, other_store):
    body = payload("order_created_payload_wc-v3.json")
    assert deliver("order.created", body, secret=other_store.woocommerce_secret).status_code == 401
    assert deliver("order.created", body, secret=store.shopify_secret).status_code == 401
    assert nothing_stored(store)


def test_unknown_topic_is_accepted_logged_and_not_stored(deliver, store, caplog):
    with caplog.at_level(logging.INFO, logger="tertulia.webhooks"):
        response = deliver("coupon.created", b'{"id": 720, "code": "free"}', delivery_id="77")
    assert response.status_code == 202
    assert nothing_stored(store)
    (record,) = [r for r in caplog.records if r.getMessage() == "webhook topic ignored"]
    assert (record.provider, record.topic, record.delivery_id) == ("woocommerce", "coupon.created", "77")


def test_replayed_delivery_id_is_stored_once(deliver, store):
    body = payload("order_updated_payload_wc-v3.json")
    assert deliver("order.updated", body, delivery_id="54").json()["accepted"] == 2
    again = deliver("order.updated", body, delivery_id="54")
    assert again.status_code == 200 and again.json() == {"duplicate": True}
    assert Event.objects.for_store(store).count() == 2
    assert WebhookDelivery.objects.for_store(store).get().delivery_id == "54"


def test_body_that_is_not_json_is_refused(deliver, store):
    response = deliver("order.created", b"<order id='727'/>")
    assert response.status_code == 400
    assert nothing_stored(store)


def test_payload_that_maps_to_invalid_events_stores_nothing(deliver, store):
    broken = with_status("processing", currency="US Dollar", total="-3")
    broken["date_created_gmt"] = None
    broken["date_modified_gmt"] = None
    response = deliver("order.created", json.dumps(broken).encode())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unmappable_payload"  # no time to place the order at
    broken["date_created_gmt"] = "2017-03-22T19:28:02"
    response = deliver("order.created", json.dumps(broken).encode())
    assert response.status_code == 422
    assert {d["field"] for d in response.json()["error"]["details"]} == {"data.total"}
    assert nothing_stored(store)


def test_unknown_store_is_404(deliver, store):
    response = deliver("order.created", payload("order_created_payload_wc-v3.json"), slug="nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_store"
