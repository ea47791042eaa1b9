"""The read API: products, customers, carts, orders; cursor pagination; bad input; OpenAPI and docs."""

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tertulia.core.services import api_key_create
from tertulia.customers.models import Customer

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def post(api, *events):
    response = api.post("/api/v1/events", {"events": list(events)})
    assert response.status_code == 200, response.content
    return response.json()


def seed_catalogue(api, event, count=5):
    post(api, event("category_upserted", {"id": "tazas", "name": "Tazas"}, at=T0),
         event("category_upserted", {"id": "teteras", "name": "Teteras"}, at=T0))
    post(api, *[
        event("product_upserted", {"sku": f"SKU-{n}", "title": f"Producto {n}", "price": "9.90", "currency": "EUR",
                                   "stock": n, "category_id": "tazas" if n % 2 else "teteras", "active": n != 3},
              at=T0)
        for n in range(1, count + 1)
    ])


def customer_id(store, email):
    return Customer.objects.for_store(store).get(identities__kind="email", identities__value=email).pk


def error_code(response):
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return body["error"]["code"]


# --- products ---------------------------------------------------------------------------------------


def test_products_list_shape_and_order(api, store, event):
    seed_catalogue(api, event)
    response = api.get("/api/v1/products")
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [p["sku"] for p in body["data"]] == ["SKU-1", "SKU-2", "SKU-3", "SKU-4", "SKU-5"]
    first = body["data"][0]
    assert first["title"] == "Producto 1" and first["price"] == "9.90" and first["stock"] == 1
    assert first["category"]["external_id"] == "tazas" and first["category"]["name"] == "Tazas"
    ids = [p["id"] for p in body["data"]]
    assert ids == sorted(ids)


def test_products_filters(api, store, event):
    seed_catalogue(api, event)
    assert [p["sku"] for p in api.get("/api/v1/products", category="tazas").json()["data"]] == ["SKU-1", "SKU-3", "SKU-5"]
    assert [p["sku"] for p in api.get("/api/v1/products", sku="SKU-4").json()["data"]] == ["SKU-4"]
    assert [p["sku"] for p in api.get("/api/v1/products", active="false").json()["data"]] == ["SKU-3"]
    both = api.get("/api/v1/products", category="tazas", active="true").json()["data"]
    assert [p["sku"] for p in both] == ["SKU-1", "SKU-5"]
    assert api.get("/api/v1/products", category="nope").json() == {"data": [], "next_cursor": None}


def test_products_bad_filter_value_is_422(api, store):
    response = api.get("/api/v1/products", active="maybe")
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"
    assert response.json()["error"]["details"][0]["field"] == "active"


# --- pagination -------------------------------------------------------------------------------------


def test_cursor_walks_every_row_once(api, store, event):
    seed_catalogue(api, event, count=7)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = api.get("/api/v1/products", **params).json()
        assert len(body["data"]) <= 3
        seen += [p["sku"] for p in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"SKU-{n}" for n in range(1, 8)]


def test_rows_added_between_pages_are_not_skipped(api, store, event):
    seed_catalogue(api, event, count=4)
    first = api.get("/api/v1/products", limit=2).json()
    post(api, event("product_upserted", {"sku": "NEW", "title": "Nuevo"}, at=T0))
    second = api.get("/api/v1/products", limit=10, cursor=first["next_cursor"]).json()
    assert [p["sku"] for p in second["data"]] == ["SKU-3", "SKU-4", "NEW"]


def test_exact_page_has_no_next_cursor(api, store, event):
    seed_catalogue(api, event, count=4)
    assert api.get("/api/v1/products", limit=4).json()["next_cursor"] is None


def test_default_limit_is_50(api, store, event):
    post(api, *[event("product_upserted", {"sku": f"S{n}", "title": "x"}, at=T0) for n in range(51)])
    body = api.get("/api/v1/products").json()
    assert len(body["data"]) == 50 and body["next_cursor"]


@pytest.mark.parametrize("cursor", [
    "not-a-cursor!!",
    base64.urlsafe_b64encode(b"something else").decode(),
    base64.urlsafe_b64encode(b"id1:-4").decode(),
    base64.urlsafe_b64encode(b"id1:99999999999999999999999").decode(),
    base64.urlsafe_b64encode("id1:١٢".encode()).decode(),
    "A" * 500,
    "%%%",
])
@pytest.mark.parametrize("path", ["/api/v1/products", "/api/v1/customers", "/api/v1/carts", "/api/v1/orders"])
def test_bad_cursor_is_400(api, store, path, cursor):
    response = api.get(path, cursor=cursor)
    assert response.status_code == 400, response.content
    assert error_code(response) == "invalid_cursor"
    assert response.json()["error"]["details"][0]["field"] == "cursor"


@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten", "1.5"])
def test_limit_out_of_range_is_422(api, store, limit):
    response = api.get("/api/v1/orders", limit=limit)
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"
    assert response.json()["error"]["details"][0]["field"] == "limit"


def test_limit_bounds_are_accepted(api, store):
    assert api.get("/api/v1/carts", limit=1).status_code == 200
    assert api.get("/api/v1/carts", limit=500).status_code == 200


# --- customers --------------------------------------------------------------------------------------


def seed_people(api, event):
    post(api,
         event("customer_upserted", {"customer": {"email": "Ana@Example.com", "phone": "+34 600 111 222",
                                                  "handles": {"x": "@AnaG"}, "first_name": "Ana"}}, at=T0),
         event("customer_upserted", {"customer": {"email": "luis@example.com", "first_name": "Luis"}}, at=T0))


def test_customers_lookup_by_each_identity_normalised(api, store, event):
    seed_people(api, event)
    ana = customer_id(store, "ana@example.com")
    for params in ({"email": "ANA@example.COM"}, {"email": " ana@example.com "}, {"phone": "+34600111222"},
                   {"phone": "+34 600 11 12 22"}, {"handle": "x:anag"}, {"handle": "X:@AnaG"},
                   {"email": "ana@example.com", "phone": "+34600111222"}):
        body = api.get("/api/v1/customers", **params).json()
        assert [c["id"] for c in body["data"]] == [ana], params
    body = api.get("/api/v1/customers", email="ana@example.com").json()["data"][0]
    assert body["first_name"] == "Ana"
    assert {(i["kind"], i["value"]) for i in body["identities"]} == {
        ("email", "ana@example.com"), ("phone", "+34600111222"), ("x", "anag")}


def test_customers_lookup_filters_combine_with_and(api, store, event):
    seed_people(api, event)
    assert api.get("/api/v1/customers", email="luis@example.com", phone="+34600111222").json()["data"] == []
    assert api.get("/api/v1/customers", email="nadie@example.com").json()["data"] == []
    assert len(api.get("/api/v1/customers").json()["data"]) == 2


@pytest.mark.parametrize(("params", "field", "code"), [
    ({"email": "not-an-email"}, "email", "invalid_email"),
    ({"phone": "600"}, "phone", "invalid_phone"),
    ({"phone": "hello"}, "phone", "invalid_phone"),
    ({"handle": "anag"}, "handle", "invalid_handle"),
    ({"handle": "myspace:ana"}, "handle", "unknown_network"),
    ({"handle": "x:"}, "handle", "invalid_handle"),
    ({"handle": "x:ana garcia"}, "handle", "invalid_handle"),
])
def test_customers_bad_lookup_is_422(api, store, params, field, code):
    response = api.get("/api/v1/customers", **params)
    assert response.status_code == 422, response.content
    assert error_code(response) == "invalid_request"
    detail = response.json()["error"]["details"][0]
    assert (detail["field"], detail["code"]) == (field, code)


def test_merged_profiles_are_left_out_of_the_list(api, store, event):
    seed_people(api, event)
    ana, luis = customer_id(store, "ana@example.com"), customer_id(store, "luis@example.com")
    # One event names both: they are one person, and the newer profile folds into the older.
    post(api, event("customer_upserted", {"customer": {"email": "luis@example.com", "phone": "+34600111222"}}, at=T0))
    listed = [c["id"] for c in api.get("/api/v1/customers").json()["data"]]
    assert listed == [min(ana, luis)]
    assert [c["id"] for c in api.get("/api/v1/customers", email="luis@example.com").json()["data"]] == [min(ana, luis)]
    loser = api.get(f"/api/v1/customers/{max(ana, luis)}").json()
    assert loser["merged_into_id"] == min(ana, luis)


def test_customer_detail_with_identities_and_consent(api, store, event):
    seed_people(api, event)
    ana = customer_id(store, "ana@example.com")
    who = {"email": "ana@example.com"}
    post(api,
         event("consent_changed", {"customer": who, "channel": "email", "status": "unsubscribed",
                                   "source": "footer_link"}, at=T0 + timedelta(days=2)),
         event("consent_changed", {"customer": who, "channel": "email", "status": "subscribed",
                                   "source": "checkout", "evidence": {"ip": "203.0.113.9"}}, at=T0 + timedelta(days=1)),
         event("consent_changed", {"customer": who, "channel": "sms", "status": "pending_confirmation",
                                   "source": "form"}, at=T0))
    response = api.get(f"/api/v1/customers/{ana}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == ana and body["first_name"] == "Ana" and body["merged_into_id"] is None
    assert {i["kind"] for i in body["identities"]} == {"email", "phone", "x"}
    # The ledger arrived out of order; the current state is still the newest change.
    assert body["consent"]["email"]["status"] == "unsubscribed"
    assert body["consent"]["email"]["source"] == "footer_link"
    assert body["consent"]["sms"]["status"] == "pending_confirmation"
    assert body["consent"]["social_dm"] is None
    ledger = body["consent_ledger"]
    assert [(c["channel"], c["status"]) for c in ledger] == [
        ("sms", "pending_confirmation"), ("email", "subscribed"), ("email", "unsubscribed")]
    assert ledger[1]["evidence"]["ip"] == "203.0.113.9"


def test_unknown_customer_is_404(api, store):
    response = api.get("/api/v1/customers/987654")
    assert response.status_code == 404
    assert error_code(response) == "not_found"


@pytest.mark.parametrize("bad_id", ["abc", "0", "-3", "99999999999999999999999", "1.5"])
def test_malformed_customer_id_is_422(api, store, bad_id):
    for suffix in ("", "/export"):
        response = api.get(f"/api/v1/customers/{bad_id}{suffix}")
        assert response.status_code == 422, (bad_id, response.content)
        assert error_code(response) == "invalid_request"


# --- carts and orders -------------------------------------------------------------------------------


def seed_commerce(api, event):
    def cart(cart_id, email):
        return {"cart_id": cart_id, "customer": {"email": email}, "currency": "EUR", "total": "20.00",
                "items": [{"sku": "SKU-1", "quantity": 2, "price": "10.00", "title": "Taza"}]}

    post(api, event("cart_updated", cart("c1", "ana@example.com"), at=T0),
         event("cart_updated", cart("c2", "luis@example.com"), at=T0),
         event("cart_updated", cart("c3", "ana@example.com"), at=T0))
    post(api, event("order_placed", {"order_id": "o1", "cart_id": "c1", "customer": {"email": "ana@example.com"},
                                     "items": [{"sku": "SKU-1", "quantity": 2}], "total": "20.00",
                                     "currency": "EUR"}, at=T0 + timedelta(minutes=5)),
         event("order_placed", {"order_id": "o2", "customer": {"email": "luis@example.com"},
                                "items": [{"sku": "SKU-2", "quantity": 1}], "total": "5.00",
                                "currency": "EUR"}, at=T0 + timedelta(minutes=5)))
    post(api, event("order_fulfilled", {"order_id": "o2"}, at=T0 + timedelta(days=1)))


def test_carts_list_and_filters(api, store, event):
    seed_commerce(api, event)
    carts = api.get("/api/v1/carts").json()["data"]
    assert [c["external_id"] for c in carts] == ["c1", "c2", "c3"]
    assert carts[0]["status"] == "converted" and carts[0]["order_external_id"] == "o1"
    assert carts[1]["items"] == [{"sku": "SKU-1", "quantity": 2, "price": "10.00", "title": "Taza"}]
    assert carts[1]["total"] == "20.00"
    assert [c["external_id"] for c in api.get("/api/v1/carts", status="open").json()["data"]] == ["c2", "c3"]
    ana = customer_id(store, "ana@example.com")
    assert [c["external_id"] for c in api.get("/api/v1/carts", customer=ana).json()["data"]] == ["c1", "c3"]
    both = api.get("/api/v1/carts", customer=ana, status="open").json()["data"]
    assert [c["external_id"] for c in both] == ["c3"]


def test_orders_list_and_filters(api, store, event):
    seed_commerce(api, event)
    orders = api.get("/api/v1/orders").json()["data"]
    assert [(o["external_id"], o["status"], o["total"]) for o in orders] == [
        ("o1", "placed", "20.00"), ("o2", "fulfilled", "5.00")]
    assert orders[1]["fulfilled_at"] is not None
    assert [o["external_id"] for o in api.get("/api/v1/orders", status="fulfilled").json()["data"]] == ["o2"]
    luis = customer_id(store, "luis@example.com")
    assert [o["external_id"] for o in api.get("/api/v1/orders", customer=luis).json()["data"]] == ["o2"]
    assert api.get("/api/v1/orders", customer=987654).json()["data"] == []


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/api/v1/carts", {"status": "lost"}, "status"),
    ("/api/v1/orders", {"status": "open"}, "status"),
    ("/api/v1/orders", {"customer": "ana"}, "customer"),
    ("/api/v1/carts", {"customer": "99999999999999999999999"}, "customer"),
    ("/api/v1/products", {"sku": "x" * 200}, "sku"),
    ("/api/v1/products", {"sku": "a\x00b"}, "sku"),
    ("/api/v1/products", {"category": "\x00"}, "category"),
    ("/api/v1/customers", {"email": "a\x00b@example.com"}, "email"),
    ("/api/v1/customers", {"handle": "x:a\x00"}, "handle"),
])
def test_bad_filters_are_422(api, store, path, params, field):
    response = api.get(path, **params)
    assert response.status_code == 422, response.content
    assert response.json()["error"]["details"][0]["field"] == field


# --- authentication ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/products", "/api/v1/customers", "/api/v1/customers/1",
                                  "/api/v1/customers/1/export", "/api/v1/carts", "/api/v1/orders"])
def test_reads_need_a_key(client, store, path):
    assert client.get(path).status_code == 401
    response = client.get(path, headers={"Authorization": "Bearer tk_nothere_xyz"})
    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"


def test_read_only_key_can_read(client, store, event):
    secret = api_key_create(store=store, name="reader", scope="read").secret
    response = client.get("/api/v1/orders", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200


def test_wrong_method_gets_the_error_shape(api, store):
    response = api.post("/api/v1/products", {})
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"


# --- no N+1 -----------------------------------------------------------------------------------------


def _queries(api, path):
    with CaptureQueriesContext(connection) as captured:
        assert api.get(path).status_code == 200
    return len(captured)


@pytest.mark.parametrize("path", ["/api/v1/products", "/api/v1/customers", "/api/v1/carts", "/api/v1/orders"])
def test_list_queries_do_not_grow_with_rows(api, store, event, path):
    def grow(tag, count):
        post(api, *[event("category_upserted", {"id": f"{tag}{n}", "name": "c"}, at=T0) for n in range(count)])
        post(api, *[event("product_upserted", {"sku": f"{tag}{n}", "title": "t", "category_id": f"{tag}{n}"}, at=T0)
                    for n in range(count)])
        post(api, *[event("cart_updated", {"cart_id": f"{tag}{n}", "customer": {"email": f"{tag}{n}@example.com",
                                                                               "phone": f"+3460011{n:04d}"},
                                           "items": [], "total": "0", "currency": "EUR"}, at=T0)
                    for n in range(count)])
        post(api, *[event("order_placed", {"order_id": f"{tag}{n}", "customer": {"email": f"{tag}{n}@example.com"},
                                           "items": [{"sku": "x", "quantity": 1}], "total": "1", "currency": "EUR"},
                          at=T0) for n in range(count)])

    grow("a", 2)
    api.get(path)  # the key's last_used_at write happens once a minute; keep it out of the count
    few = _queries(api, path)
    grow("b", 20)
    assert _queries(api, path) == few


def test_detail_queries_do_not_grow_with_ledger(api, store, event):
    seed_people(api, event)
    ana = customer_id(store, "ana@example.com")

    def count():
        with CaptureQueriesContext(connection) as captured:
            assert api.get(f"/api/v1/customers/{ana}").status_code == 200
        return len(captured)

    post(api, event("consent_changed", {"customer": {"email": "ana@example.com"}, "channel": "email",
                                        "status": "subscribed"}, at=T0))
    few = count()
    post(api, *[event("consent_changed", {"customer": {"email": "ana@example.com"}, "channel": channel,
                                          "status": "subscribed"}, at=T0 + timedelta(minutes=n))
                for n in range(10) for channel in ("email", "sms", "social_dm")])
    assert count() == few


# --- OpenAPI and docs -------------------------------------------------------------------------------


def test_openapi_document_is_complete_and_typed(client, db):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    expected = {
        ("/api/v1/products", "get"): "ProductPage",
        ("/api/v1/customers", "get"): "CustomerPage",
        ("/api/v1/customers/{customer_id}", "get"): "CustomerDetail",
        ("/api/v1/customers/{customer_id}/export", "get"): "CustomerExport",
        ("/api/v1/customers/{customer_id}/erase", "post"): "ErasureOut",
        ("/api/v1/carts", "get"): "CartPage",
        ("/api/v1/orders", "get"): "OrderPage",
    }
    for (path, method), schema in expected.items():
        operation = paths[path][method]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ok == f"#/components/schemas/{schema}"
        assert operation["security"] == [{"ApiKeyAuth": []}]
        assert "422" in operation["responses"] and "401" in operation["responses"]
    assert "404" in paths["/api/v1/customers/{customer_id}"]["get"]["responses"]
    assert "403" in paths["/api/v1/customers/{customer_id}/erase"]["post"]["responses"]
    schemas = document["components"]["schemas"]
    assert schemas["ProductPage"]["properties"]["data"]["items"]["$ref"] == "#/components/schemas/ProductOut"
    assert set(schemas["CartOut"]["properties"]["status"]["$ref"].split("/")[-1:]) == {"CartStatus"}
    assert schemas["CartStatus"]["enum"] == ["open", "emptied", "converted"]
    assert {"email", "sms", "social_dm"} <= set(schemas["ConsentByChannel"]["properties"])
    assert "ErrorOut" in schemas
    parameters = {p["name"]: p for p in paths["/api/v1/orders"]["get"]["parameters"]}
    assert parameters["limit"]["schema"]["maximum"] == 500 and parameters["limit"]["schema"]["minimum"] == 1
    assert document["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"


def test_docs_page_works_offline_with_debug_off(client, db, settings):
    assert settings.DEBUG is False
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "cdn" not in html.lower()
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content if served.streaming else [served.content])
