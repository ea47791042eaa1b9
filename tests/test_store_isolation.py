"""Two stores, each with its own key and look-alike data: no endpoint reads or writes the other's rows."""

from datetime import UTC, datetime, timedelta

import pytest
from conftest import ApiClient

from tertulia.catalog.models import Category, Product
from tertulia.commerce.models import Cart, Order
from tertulia.core.services import api_key_create
from tertulia.customers.models import ConsentChange, Customer, Identity
from tertulia.events.models import Event

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def history(tag: str) -> list[dict]:
    """The same ids, sku, e-mail, phone and handle in both stores; only names and amounts tell them apart."""
    who = {"email": "ana@example.com", "phone": "+34600111222", "handles": {"x": "ana"}}
    return [
        {"id": "e-cat", "type": "category_upserted", "occurred_at": _at(0), "data": {"id": "tazas", "name": f"Tazas {tag}"}},
        {"id": "e-prod", "type": "product_upserted", "occurred_at": _at(0),
         "data": {"sku": "TAZA-01", "title": f"Taza {tag}", "category_id": "tazas", "price": "10.00"}},
        {"id": "e-cust", "type": "customer_upserted", "occurred_at": _at(0),
         "data": {"customer": {**who, "first_name": f"Ana {tag}"}}},
        {"id": "e-consent", "type": "consent_changed", "occurred_at": _at(1),
         "data": {"customer": who, "channel": "email", "status": "subscribed", "source": f"form-{tag}"}},
        {"id": "e-cart", "type": "cart_updated", "occurred_at": _at(2),
         "data": {"cart_id": "c1", "customer": who, "items": [{"sku": "TAZA-01", "quantity": 1}],
                  "total": "10.00" if tag == "A" else "99.00", "currency": "EUR",
                  "recovery_url": f"https://{tag}.example/cart/c1"}},
        {"id": "e-cart2", "type": "cart_updated", "occurred_at": _at(2),
         "data": {"cart_id": "c2", "customer": who, "items": [{"sku": "TAZA-01", "quantity": 1}],
                  "total": "10.00", "currency": "EUR"}},
        {"id": "e-order", "type": "order_placed", "occurred_at": _at(3),
         "data": {"order_id": "o1", "cart_id": "c1", "customer": who, "items": [{"sku": "TAZA-01", "quantity": 1}],
                  "total": "10.00" if tag == "A" else "99.00", "currency": "EUR"}},
    ]


def _at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def stores(client, store, other_store):
    """Store A and store B, each loaded through POST /api/v1/events with its own key."""
    a = ApiClient(client, api_key_create(store=store, name="a").secret)
    b = ApiClient(client, api_key_create(store=other_store, name="b").secret)
    for api, tag in ((a, "A"), (b, "B")):
        response = api.post("/api/v1/events", {"events": history(tag)})
        assert response.status_code == 200, response.content
        assert response.json()["accepted"] == len(history(tag))  # same client ids as the other store: not duplicates
    ana_a = Customer.objects.for_store(store).get()
    ana_b = Customer.objects.for_store(other_store).get()
    return a, b, ana_a, ana_b


def test_events_posted_with_a_key_land_only_in_its_store(stores, store, other_store):
    for model in (Event, Category, Product, Customer, Identity, ConsentChange, Cart, Order):
        assert model.objects.for_store(store).count() == model.objects.for_store(other_store).count() > 0, model
    assert Product.objects.for_store(store).get().title == "Taza A"
    assert Product.objects.for_store(other_store).get().title == "Taza B"
    assert Product.objects.for_store(other_store).get().category.store_id == other_store.pk
    for model in (Cart, Order, Identity, ConsentChange):
        assert {row.customer.store_id for row in model.objects.for_store(other_store)} == {other_store.pk}, model


def test_a_replayed_id_in_one_store_does_not_touch_the_other(stores, other_store):
    a, _b, _, _ = stores
    response = a.post("/api/v1/events", {"events": history("A")})
    assert response.json()["duplicates"] == len(history("A"))
    changed = dict(history("A")[1], id="e-prod-2")
    changed["data"] = dict(changed["data"], title="Taza A2")
    a.post("/api/v1/events", changed)
    assert Product.objects.for_store(other_store).get().title == "Taza B"


@pytest.mark.parametrize("path", ["/api/v1/products", "/api/v1/customers", "/api/v1/carts", "/api/v1/orders"])
def test_lists_show_only_own_rows(stores, store, other_store, path):
    a, b, _, _ = stores
    for api, mine, theirs in ((a, store, other_store), (b, other_store, store)):
        model = {"products": Product, "customers": Customer, "carts": Cart, "orders": Order}[path.rsplit("/", 1)[1]]
        ids = [row["id"] for row in api.get(path).json()["data"]]
        assert ids == list(model.objects.for_store(mine).order_by("pk").values_list("pk", flat=True))
        assert not set(ids) & set(model.objects.for_store(theirs).values_list("pk", flat=True))


def test_filters_never_reach_the_other_store(stores):
    a, _b, ana_a, ana_b = stores
    assert [c["id"] for c in a.get("/api/v1/customers", email="ana@example.com").json()["data"]] == [ana_a.pk]
    assert [c["id"] for c in a.get("/api/v1/customers", phone="+34600111222").json()["data"]] == [ana_a.pk]
    assert [c["id"] for c in a.get("/api/v1/customers", handle="x:ana").json()["data"]] == [ana_a.pk]
    assert [p["title"] for p in a.get("/api/v1/products", sku="TAZA-01").json()["data"]] == ["Taza A"]
    assert [p["title"] for p in a.get("/api/v1/products", category="tazas").json()["data"]] == ["Taza A"]
    assert a.get("/api/v1/carts", customer=ana_b.pk).json()["data"] == []
    assert a.get("/api/v1/orders", customer=ana_b.pk).json()["data"] == []
    assert [o["total"] for o in a.get("/api/v1/orders", status="placed").json()["data"]] == ["10.00"]


def test_a_cursor_does_not_open_the_other_store(stores, store):
    a, b, _, _ = stores
    cursor = b.get("/api/v1/carts", limit=1).json()["next_cursor"]
    page = a.get("/api/v1/carts", cursor=cursor).json()["data"]
    assert {row["external_id"] for row in page} <= {"c1", "c2"}
    assert {row["id"] for row in page} <= set(Cart.objects.for_store(store).values_list("pk", flat=True))


@pytest.mark.parametrize("suffix", ["", "/export"])
def test_the_other_stores_customer_is_404(stores, suffix):
    a, b, ana_a, ana_b = stores
    response = a.get(f"/api/v1/customers/{ana_b.pk}{suffix}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert b.get(f"/api/v1/customers/{ana_a.pk}{suffix}").status_code == 404
    assert a.get(f"/api/v1/customers/{ana_a.pk}{suffix}").status_code == 200


def test_export_holds_only_own_store(stores):
    a, _b, ana_a, _ = stores
    body = a.get(f"/api/v1/customers/{ana_a.pk}/export").json()
    text = str(body)
    assert "Ana A" in text and "Ana B" not in text and "form-B" not in text and "99.00" not in text
    assert {e["payload"]["data"].get("total") for e in body["events"] if e["type"] == "order_placed"} == {"10.00"}
    assert body["store"] == "tienda"


def test_erase_with_one_stores_key_never_touches_the_other(stores, other_store):
    a, b, ana_a, ana_b = stores
    assert a.post(f"/api/v1/customers/{ana_b.pk}/erase", {}).status_code == 404
    ana_b.refresh_from_db()
    assert ana_b.erased_at is None and ana_b.first_name == "Ana B"

    assert a.post(f"/api/v1/customers/{ana_a.pk}/erase", {}).status_code == 200
    # B's person with the very same e-mail, phone and handle keeps everything.
    ana_b.refresh_from_db()
    assert ana_b.erased_at is None and ana_b.first_name == "Ana B"
    assert Identity.objects.for_store(other_store).count() == 3
    assert Cart.objects.for_store(other_store).get(external_id="c1").recovery_url == "https://B.example/cart/c1"
    assert ConsentChange.objects.for_store(other_store).get().evidence != {"erased": True}
    assert Event.objects.for_store(other_store).get(client_id="e-cust").payload["data"]["customer"]["email"] == "ana@example.com"
    assert [c["id"] for c in b.get("/api/v1/customers", email="ana@example.com").json()["data"]] == [ana_b.pk]
    assert a.get("/api/v1/customers", email="ana@example.com").json()["data"] == []
