"""Bad input on POST /api/v1/events: always a 4xx in the one error shape, nothing stored, never a 500."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from conftest import iso
from django.conf import settings
from django.test import override_settings

from tertulia.catalog.models import Category, Product
from tertulia.commerce.models import Cart, Order
from tertulia.core.models import ApiKeyScope
from tertulia.core.services import api_key_create, api_key_revoke
from tertulia.customers.models import ConsentChange, Customer, Identity
from tertulia.events.models import Event

URL = "/api/v1/events"
RECENT = datetime.now(UTC) - timedelta(hours=1)


def snapshot() -> dict[str, int]:
    models = (Event, Cart, Order, Customer, Identity, ConsentChange, Product, Category)
    return {model.__name__: model.objects.count() for model in models}


def cart_event(event_id: str, **data) -> dict:
    body = {"cart_id": f"cart-{event_id}", "customer": {"email": f"{event_id}@example.com"},
            "items": [{"sku": "TAZA-01", "quantity": 1, "price": "12.50"}], "total": "12.50", "currency": "EUR"}
    body.update(data)
    return {"id": event_id, "type": "cart_updated", "occurred_at": iso(RECENT), "data": body}


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is `status` in the one error shape; returns the error object."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    for detail in error["details"]:
        assert set(detail) == {"index", "field", "code", "message"}
    if code is not None:
        assert error["code"] == code
    return error


@pytest.fixture
def before(api):
    """One event already stored, so 'nothing stored' also means 'nothing changed or removed'."""
    response = api.post(URL, cart_event("seed"))
    assert response.status_code == 200, response.content
    return snapshot()


def reject_as_second(api, bad: dict) -> list[dict]:
    """Send [a valid event, `bad`]; the batch must be refused with problems for index 1 only."""
    response = api.post(URL, {"events": [cart_event("fine"), bad]})
    error = assert_error(response, 422, "invalid_events")
    assert error["details"], error
    assert {detail["index"] for detail in error["details"]} == {1}
    return error["details"]


# --- The body itself -------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"{not json", b"", b"   ", b'{"id": "a",}', b"\xff\xfe{}", b'{"total": NaN}', b'{"id": "\\ud800"}',
    b"[" * 5000 + b"]" * 5000, b'{"id": "a"} trailing',
], ids=["garbage", "empty", "blank", "trailing-comma", "not-utf8", "nan", "lone-surrogate", "too-deep", "trailing"])
def test_invalid_json(api, before, body):
    error = assert_error(api.post(URL, body), 400, "invalid_json")
    assert error["details"][0]["code"] == "invalid_json"
    assert snapshot() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_wrong_content_type(api, before, content_type):
    body = orjson.dumps(cart_event("typed"))
    response = api.client.post(URL, body, content_type=content_type, headers=api.headers)
    assert_error(response, 415, "unsupported_media_type")
    assert snapshot() == before


@pytest.mark.parametrize("body", [[], [cart_event("in-a-list")], 3, "text", None, True,
                                  {"events": None}, {"events": {}}, {"events": "x"}])
def test_body_that_is_neither_an_event_nor_a_batch(api, before, body):
    assert_error(api.post(URL, orjson.dumps(body)), 400)
    assert snapshot() == before


# --- Fields ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "field", "code"), [
    ({"id": 123}, "id", "invalid_id"),
    ({"id": ""}, "id", "invalid_id"),
    ({"id": "x" * 201}, "id", "invalid_id"),
    ({"type": ["cart_updated"]}, "type", "invalid_type"),
    ({"type": {"name": "cart_updated"}}, "type", "invalid_type"),
    ({"occurred_at": 1763629200}, "occurred_at", "invalid_timestamp"),
    ({"data": "cart"}, "data", "invalid_type"),
    ({"data": [1, 2]}, "data", "invalid_type"),
])
def test_wrong_types_in_the_envelope(api, before, change, field, code):
    details = reject_as_second(api, {**cart_event("bad"), **change})
    assert (field, code) in {(d["field"], d["code"]) for d in details}
    assert snapshot() == before


@pytest.mark.parametrize(("data", "field", "code"), [
    ({"cart_id": ["c1"]}, "data.cart_id", "invalid_type"),
    ({"items": "TAZA-01"}, "data.items", "invalid_type"),
    ({"items": ["TAZA-01"]}, "data.items[0]", "invalid_type"),
    ({"items": [{"sku": "T", "quantity": "2"}]}, "data.items[0].quantity", "invalid_type"),
    ({"items": [{"sku": "T", "quantity": 1.5}]}, "data.items[0].quantity", "invalid_type"),
    ({"items": [{"sku": "T", "quantity": 0}]}, "data.items[0].quantity", "out_of_range"),
    ({"items": [{"sku": "T", "quantity": True}]}, "data.items[0].quantity", "invalid_type"),
    ({"items": [{"sku": "T", "quantity": 1, "price": "cheap"}]}, "data.items[0].price", "invalid_number"),
    ({"total": True}, "data.total", "invalid_type"),
    ({"total": {"amount": 1}}, "data.total", "invalid_type"),
    ({"total": "-1"}, "data.total", "out_of_range"),
    ({"total": "1e12"}, "data.total", "out_of_range"),
    ({"total": "Infinity"}, "data.total", "out_of_range"),
    ({"currency": "euro"}, "data.currency", "invalid_currency"),
    ({"currency": 978}, "data.currency", "invalid_currency"),
    ({"customer": "ana@example.com"}, "data.customer", "invalid_type"),
    ({"customer": {}}, "data.customer", "no_identity"),
    ({"customer": {"email": "a@example.com", "handles": ["x"]}}, "data.customer.handles", "invalid_type"),
    ({"customer": {"email": "a@example.com", "handles": {"myspace": "ana"}}}, "data.customer.handles.myspace",
     "unknown_network"),
    ({"customer": {"email": "a@example.com", "timezone": "Mars/Olympus"}}, "data.customer.timezone",
     "invalid_timezone"),
    ({"customer": {"email": "a@example.com", "language": "klingon"}}, "data.customer.language", "invalid_language"),
    ({"recovery_url": "javascript:alert(1)"}, "data.recovery_url", "invalid_url"),
    ({"recovery_url": "https://tienda.example/" + "a" * 2100}, "data.recovery_url", "too_long"),
])
def test_wrong_types_and_values_in_a_cart(api, before, data, field, code):
    details = reject_as_second(api, cart_event("bad", **data))
    assert (field, code) in {(d["field"], d["code"]) for d in details}, details
    assert snapshot() == before


@pytest.mark.parametrize(("event_type", "data", "field", "code"), [
    ("product_upserted", {"sku": "S", "title": "T", "stock": 2**40}, "data.stock", "out_of_range"),
    ("product_upserted", {"sku": "S", "title": "T", "stock": "3"}, "data.stock", "invalid_type"),
    ("product_upserted", {"sku": "S", "title": "T", "active": "yes"}, "data.active", "invalid_type"),
    ("product_upserted", {"sku": "S", "title": "T", "url": "https://t.example/" + "p" * 1000}, "data.url", "too_long"),
    ("product_upserted", {"sku": "S", "title": "T", "image_url": "ftp://t.example/a.png"}, "data.image_url",
     "invalid_url"),
    ("category_upserted", {"id": "c", "name": "N", "url": "https://t.example/" + "c" * 1000}, "data.url", "too_long"),
    ("category_upserted", {"id": "c", "name": "N", "parent_id": {"id": "p"}}, "data.parent_id", "invalid_type"),
    ("consent_changed", {"customer": {"email": "a@example.com"}, "channel": ["email"], "status": "subscribed"},
     "data.channel", "invalid_choice"),
    ("consent_changed", {"customer": {"email": "a@example.com"}, "channel": "email", "status": {"ok": True}},
     "data.status", "invalid_choice"),
    ("consent_changed", {"customer": {"email": "a@example.com"}, "channel": "fax", "status": "subscribed"},
     "data.channel", "invalid_choice"),
    ("consent_changed", {"customer": {"email": "a@example.com"}, "channel": "email", "status": "subscribed",
                         "evidence": "clicked"}, "data.evidence", "invalid_type"),
    ("order_placed", {"order_id": "o", "items": [], "total": "1", "currency": "EUR", "cart_id": 1.5},
     "data.cart_id", "invalid_type"),
])
def test_wrong_values_in_other_types(api, before, event_type, data, field, code):
    bad = {"id": "bad", "type": event_type, "occurred_at": iso(RECENT), "data": data}
    details = reject_as_second(api, bad)
    assert (field, code) in {(d["field"], d["code"]) for d in details}, details
    assert snapshot() == before


@pytest.mark.parametrize(("event_type", "data", "missing"), [
    ("cart_updated", {}, {"data.cart_id", "data.items", "data.total", "data.currency"}),
    ("order_placed", {"items": []}, {"data.order_id", "data.total", "data.currency"}),
    ("order_fulfilled", {}, {"data.order_id"}),
    ("product_upserted", {"price": "3.00"}, {"data.sku", "data.title"}),
    ("category_upserted", {"id": "c"}, {"data.name"}),
    ("consent_changed", {"channel": "email", "status": "subscribed"}, {"data.customer"}),
    ("customer_upserted", {}, {"data.customer"}),
    ("order_placed", {"order_id": "o", "items": [{"quantity": 1}], "total": "1", "currency": "EUR"},
     {"data.items[0].sku"}),
])
def test_missing_fields_are_each_named(api, before, event_type, data, missing):
    bad = {"id": "bad", "type": event_type, "occurred_at": iso(RECENT), "data": data}
    details = reject_as_second(api, bad)
    assert {d["field"] for d in details if d["code"] == "required"} == missing
    assert snapshot() == before


def test_missing_envelope_fields(api, before):
    details = reject_as_second(api, {"data": {}})
    assert {(d["field"], d["code"]) for d in details} == {
        ("id", "required"), ("type", "required"), ("occurred_at", "required")}
    assert snapshot() == before


def test_unknown_event_type(api, before):
    details = reject_as_second(api, {**cart_event("bad"), "type": "cart_exploded"})
    assert [(d["field"], d["code"]) for d in details] == [("type", "unknown_type")]
    assert "cart_updated" in details[0]["message"]
    assert snapshot() == before


# --- Timestamps ------------------------------------------------------------------------------

@pytest.mark.parametrize(("stamp", "code"), [
    ("2026-02-30T10:00:00Z", "invalid_timestamp"),
    ("2026-13-01T10:00:00Z", "invalid_timestamp"),
    ("2026-11-20T25:00:00Z", "invalid_timestamp"),
    ("2026-11-20T10:00:00", "invalid_timestamp"),  # no time zone: ambiguous
    ("2026-11-20", "invalid_timestamp"),
    ("yesterday", "invalid_timestamp"),
    ("", "invalid_timestamp"),
    ("2026-11-20T10:00:00+25:00", "invalid_timestamp"),
    ("0001-01-01T00:00:00+14:00", "invalid_timestamp"),  # before year 1 in UTC
    ("9999-12-31T23:59:59-23:59", "invalid_timestamp"),  # after year 9999 in UTC
    ("1900-01-01T00:00:00Z", "timestamp_out_of_range"),
    ("1999-12-31T23:59:59Z", "timestamp_out_of_range"),
    ("2999-01-01T00:00:00Z", "timestamp_out_of_range"),
])
def test_impossible_timestamps(api, before, stamp, code):
    details = reject_as_second(api, {**cart_event("bad"), "occurred_at": stamp})
    assert [(d["field"], d["code"]) for d in details] == [("occurred_at", code)]
    assert snapshot() == before


def test_a_timestamp_two_days_ahead_is_refused(api, before):
    ahead = iso(datetime.now(UTC) + timedelta(days=2))
    details = reject_as_second(api, {**cart_event("bad"), "occurred_at": ahead})
    assert [d["code"] for d in details] == ["timestamp_out_of_range"]
    assert snapshot() == before


# --- Identities ------------------------------------------------------------------------------

@pytest.mark.parametrize(("email", "code"), [
    ("ana", "invalid_email"), ("ana@", "invalid_email"), ("@example.com", "invalid_email"),
    ("ana@example", "invalid_email"), ("ana maria@example.com", "invalid_email"), ("a@b@example.com", "invalid_email"),
    ("ana@-example.com", "invalid_email"), ("<ana@example.com>", "invalid_email"),
    ("a" * 250 + "@example.com", "invalid_email"), (42, "invalid_type"), (["ana@example.com"], "invalid_type"),
])
def test_malformed_emails(api, before, email, code):
    details = reject_as_second(api, cart_event("bad", customer={"email": email}))
    assert [(d["field"], d["code"]) for d in details] == [("data.customer.email", code)]
    assert snapshot() == before


@pytest.mark.parametrize(("phone", "code"), [
    ("600111222", "invalid_phone"),  # no country code
    ("+34 12", "invalid_phone"), ("phone", "invalid_phone"), ("+999 123 456 789", "invalid_phone"),
    ("+34" + "6" * 40, "invalid_phone"), (34600111222, "invalid_type"),
])
def test_malformed_phones(api, before, phone, code):
    details = reject_as_second(api, cart_event("bad", customer={"phone": phone}))
    assert [(d["field"], d["code"]) for d in details] == [("data.customer.phone", code)]
    assert snapshot() == before


def test_nul_characters_are_refused_before_any_database_sees_them(api, before):
    # PostgreSQL stores neither U+0000 in text nor \u0000 in jsonb; this used to be a 500 there.
    bad_id = {**cart_event("ok-but-nul"), "id": "a\x00b"}
    bad_note = cart_event("nul-note", note="hola\x00")
    response = api.post(URL, {"events": [cart_event("fine"), bad_id, cart_event("fine-2"), bad_note]})
    error = assert_error(response, 422, "invalid_events")
    problems = {(d["index"], d["field"], d["code"]) for d in error["details"]}
    assert problems == {(1, "id", "nul_character"), (3, "data.note", "nul_character")}
    assert snapshot() == before


def test_escaped_backslash_u_is_plain_text(api, before):
    # The text \u0000 written with an escaped backslash is six ordinary characters, not NUL.
    body = orjson.dumps(cart_event("backslash", note="C:\\u0000"))
    assert b"\\\\u0000" in body
    assert api.post(URL, body).status_code == 200
    assert snapshot()["Event"] == before["Event"] + 1


# --- Batches ---------------------------------------------------------------------------------

def test_only_the_invalid_events_of_a_batch_are_listed_and_nothing_is_stored(api, before):
    batch = [
        cart_event("e0"),
        {**cart_event("e1"), "occurred_at": "2026-02-30T10:00:00Z"},
        cart_event("e2"),
        cart_event("e3", customer={"email": "not-an-email", "phone": "12"}, currency="euros"),
    ]
    error = assert_error(api.post(URL, {"events": batch}), 422, "invalid_events")
    assert {(d["index"], d["field"], d["code"]) for d in error["details"]} == {
        (1, "occurred_at", "invalid_timestamp"),
        (3, "data.customer.email", "invalid_email"),
        (3, "data.customer.phone", "invalid_phone"),
        (3, "data.currency", "invalid_currency"),
    }
    assert "2 of 4" in error["message"]
    assert snapshot() == before


def test_a_batch_of_a_thousand_is_accepted(api, before):
    batch = [cart_event(f"k{n}") for n in range(settings.TERTULIA_MAX_BATCH)]
    response = api.post(URL, {"events": batch})
    assert response.status_code == 200, response.content[:500]
    assert response.json()["accepted"] == settings.TERTULIA_MAX_BATCH
    assert snapshot()["Event"] == before["Event"] + settings.TERTULIA_MAX_BATCH


def test_a_batch_over_a_thousand_is_refused(api, before):
    batch = [cart_event(f"k{n}") for n in range(settings.TERTULIA_MAX_BATCH + 1)]
    error = assert_error(api.post(URL, {"events": batch}), 400, "batch_too_large")
    assert error["details"][0]["field"] == "events"
    assert snapshot() == before


def test_an_empty_batch_is_refused(api, before):
    assert_error(api.post(URL, {"events": []}), 400, "empty_batch")
    assert snapshot() == before


def test_an_event_that_is_not_an_object(api, before):
    error = assert_error(api.post(URL, {"events": [cart_event("e0"), "cart", None]}), 422, "invalid_events")
    assert {(d["index"], d["code"]) for d in error["details"]} == {(1, "invalid_type"), (2, "invalid_type")}
    assert snapshot() == before


# --- Size ------------------------------------------------------------------------------------

def _padded(size: int) -> bytes:
    """A valid one-event batch padded with JSON whitespace to exactly `size` bytes."""
    body = orjson.dumps({"events": [cart_event("padded")]})
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_a_body_of_exactly_five_megabytes_is_read(api, before):
    body = _padded(settings.TERTULIA_MAX_BODY_BYTES)
    assert len(body) == 5 * 1024 * 1024
    assert api.post(URL, body).status_code == 200


def test_a_body_over_five_megabytes_is_refused_with_413(api, before):
    body = _padded(settings.TERTULIA_MAX_BODY_BYTES + 1)
    assert_error(api.post(URL, body), 413, "body_too_large")
    assert snapshot() == before


def test_a_declared_length_over_the_limit_is_refused_before_reading(api, before):
    response = api.post(URL, b"{}", CONTENT_LENGTH=str(50 * 1024 * 1024))
    assert_error(response, 413, "body_too_large")
    assert snapshot() == before


def test_a_lying_content_length_cannot_smuggle_a_big_body(api, before):
    # The server reads only what was declared: the rest of the body is never seen.
    body = _padded(settings.TERTULIA_MAX_BODY_BYTES + 1024)
    assert_error(api.post(URL, body, CONTENT_LENGTH="100"), 400, "invalid_json")
    assert snapshot() == before


def test_an_absent_content_length_reads_no_body(api, before):
    body = orjson.dumps({"events": [cart_event("unannounced")]})
    assert_error(api.post(URL, body, CONTENT_LENGTH=""), 400, "invalid_json")
    assert snapshot() == before


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_a_malformed_content_length(api, before, length):
    body = orjson.dumps(cart_event("odd-length"))
    assert_error(api.post(URL, body, CONTENT_LENGTH=length), 400, "invalid_content_length")
    assert snapshot() == before


@override_settings(TERTULIA_MAX_BODY_BYTES=10 * 1024 * 1024, DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
def test_djangos_own_size_limit_also_answers_413_in_the_error_shape(api, before):
    # Should a body pass the middleware's check, Django refuses it on read; that is our 413 too.
    body = _padded(4096)
    assert_error(api.post(URL, body), 413, "body_too_large")
    assert snapshot() == before


# --- Keys and URLs ---------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Bearer nonsense", "Bearer tk_000000000000_unknownsecret", "Basic dXNlcjpwYXNz",
    "tk_000000000000_unknownsecret",
])
def test_missing_or_unknown_key(client, before, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.post(URL, orjson.dumps(cart_event("anon")), content_type="application/json", headers=headers)
    assert_error(response, 401)
    assert snapshot() == before


def test_a_wrong_secret_for_a_real_key_prefix(client, store, api_key, before):
    forged = api_key[: api_key.rindex("_") + 1] + "x" * 43
    response = client.post(URL, orjson.dumps(cart_event("forged")), content_type="application/json",
                           headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401, "invalid_api_key")
    assert snapshot() == before


def test_a_revoked_key(client, store, before):
    issued = api_key_create(store=store, name="old")
    api_key_revoke(store=store, key_id=issued.key.pk)
    response = client.post(URL, orjson.dumps(cart_event("late")), content_type="application/json",
                           headers={"Authorization": f"Bearer {issued.secret}"})
    assert_error(response, 401, "invalid_api_key")
    assert snapshot() == before


def test_a_read_only_key_cannot_write(client, store, before):
    issued = api_key_create(store=store, name="reader", scope=ApiKeyScope.READ)
    response = client.post(URL, orjson.dumps(cart_event("reader")), content_type="application/json",
                           headers={"Authorization": f"Bearer {issued.secret}"})
    assert_error(response, 403, "read_only_key")
    assert snapshot() == before


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/v1/nothing-here"), ("post", "/api/v1/event"), ("post", "/api/v1/events/extra"),
    ("get", "/api/v2/events"), ("delete", "/api/v1/no/such/thing"),
])
def test_unknown_urls_under_the_api(api, before, method, path):
    response = getattr(api.client, method)(path, headers=api.headers)
    assert_error(response, 404, "not_found")
    assert snapshot() == before


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_wrong_method_on_events(api, before, method):
    response = getattr(api.client, method)(URL, headers=api.headers)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]
    assert snapshot() == before


def test_a_webhook_carrying_nul_characters_is_refused_not_a_500(client, store, before):
    # Same database limit as above, reached through the Shopify mapping.
    import base64
    import hashlib
    import hmac
    from pathlib import Path

    sample = Path(__file__).parent / "fixtures/ecommerce/shopify/trigger_dev_sample_payloads/CustomersCreate.json"
    payload = orjson.loads(sample.read_bytes())
    payload["first_name"] = "Ana\x00"
    body = orjson.dumps(payload)
    signature = base64.b64encode(hmac.new(store.shopify_secret.encode(), body, hashlib.sha256).digest()).decode()
    response = client.post(f"/webhooks/shopify/{store.slug}", body, content_type="application/json", headers={
        "X-Shopify-Topic": "customers/create", "X-Shopify-Webhook-Id": "nul-1", "X-Shopify-Hmac-Sha256": signature})
    error = assert_error(response, 422, "invalid_events")
    assert "nul_character" in {detail["code"] for detail in error["details"]}
    assert snapshot() == before
