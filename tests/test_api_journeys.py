"""The journeys and deliveries API over HTTP: reads, edits (good and bad), stats, filters, keys, OpenAPI."""

import json
from datetime import timedelta

import pytest
from test_attribution import T0, enroll, journey, message, person, place

from tertulia.core.services import api_key_create
from tertulia.journeys.attribution import attribution_run, watermarks_forget
from tertulia.journeys.definitions import DEFAULTS
from tertulia.journeys.models import Journey, JourneyRevision
from tertulia.journeys.rendering import default_templates


@pytest.fixture(autouse=True)
def _fresh_watermark():
    watermarks_forget()
    yield
    watermarks_forget()


def error(response):
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return body["error"]


def default_journey(store, key="abandoned_cart"):
    """The engine's default definition, with the shipped texts spelled out."""
    definition = json.loads(json.dumps(DEFAULTS[key]))
    for step in definition["steps"]:
        step["templates"] = default_templates(key, step["key"], step["channel"])
    found, _ = Journey.objects.update_or_create(store=store, key=key, defaults={"definition": definition})
    return found


# --- reads ------------------------------------------------------------------------------------------

def test_list_and_one_journey(api, store, other_store):
    default_journey(store, "abandoned_cart")
    default_journey(store, "welcome")
    journey(other_store, "winback")
    body = api.get("/api/v1/journeys").json()
    # Every store has every journey, created on first sight.
    assert [j["key"] for j in body["data"]] == ["abandoned_cart", "thank_you", "review_request",
                                                "referral_request", "welcome", "winback", "purchase_intent"]
    assert api.get("/api/v1/journeys/winback").json()["definition"]["steps"][0]["key"] == "email_1"
    assert Journey.objects.filter(store=other_store, key="winback").count() == 1  # untouched
    one = api.get("/api/v1/journeys/abandoned_cart").json()
    assert one["enabled"] is True and one["version"] == 1
    steps = one["definition"]["steps"]
    assert steps[0]["channel"] == "email" and isinstance(steps[0]["delay_seconds"], int)
    assert "holdout_share" in one["definition"] and "variants" in one["definition"]
    response = api.get("/api/v1/journeys/nope")
    assert response.status_code == 422 and error(response)["details"][0]["field"] == "key"


def test_reads_need_a_key(client, store):
    for path in ("/api/v1/journeys", "/api/v1/journeys/abandoned_cart", "/api/v1/journeys/abandoned_cart/stats",
                 "/api/v1/deliveries"):
        assert client.get(path).status_code == 401


def test_stats_over_http(api, store):
    cart = journey(store)
    ana, bea = person(store, "ana@example.com"), person(store, "bea@example.com")
    treated = enroll(store, ana, cart)
    enroll(store, bea, cart, holdout=True, variant="")
    message(treated, sent=T0, clicked=T0 + timedelta(minutes=5))
    place(store, "o-1", "ana@example.com", T0 + timedelta(hours=1), total="42.00")
    attribution_run(store=store, now=T0 + timedelta(days=1))
    body = api.get("/api/v1/journeys/abandoned_cart/stats").json()
    assert (body["enrollments"], body["treated"], body["holdout"], body["conversions"]) == (2, 1, 1, 1)
    assert body["recovered_revenue"] == "42.00" and body["attributed_orders"] == 1
    assert body["messages"]["clicked"] == 1 and body["recovery_rate"] == 1.0
    uplift = body["uplift"]
    assert (uplift["status"], uplift["difference"], uplift["method"]) == ("ok", 1.0, "newcombe_hybrid_score")
    assert -1 <= uplift["ci_low"] <= uplift["ci_high"] <= 1
    assert [b["variant"] for b in body["by_delay"]] == ["15m", "1h"]
    assert body["by_delay"][0] == {"variant": "15m", "delay_seconds": 900, "enrollments": 1, "conversions": 1,
                                   "recovery_rate": 1.0, "attributed_orders": 1, "revenue": "42.00"}
    assert body["by_step"][0]["key"] == "email_1" and body["by_step"][0]["revenue"] == "42.00"
    later = api.get("/api/v1/journeys/abandoned_cart/stats", since=(T0 + timedelta(days=2)).isoformat()).json()
    assert later["enrollments"] == 0 and later["uplift"]["status"] == "no_enrollments"
    assert api.get("/api/v1/journeys/abandoned_cart/stats", since="yesterday").status_code == 422
    welcome = api.get("/api/v1/journeys/welcome/stats")
    # A journey the store lacks: created with its defaults.
    assert welcome.status_code == 200


# --- deliveries -------------------------------------------------------------------------------------

def test_deliveries_filters_and_pages(api, store, other_store):
    cart, winback = journey(store), journey(store, "winback")
    ana, bea = person(store, "ana@example.com"), person(store, "bea@example.com")
    a = enroll(store, ana, cart)
    b = enroll(store, bea, winback, variant="")
    first = message(a, sent=T0)
    second = message(a, "sms_1", "sms")
    third = message(b, sent=T0)
    elsewhere = enroll(other_store, person(other_store, "zoe@example.com"), journey(other_store))
    message(elsewhere, sent=T0)

    def ids(**params):
        return [d["id"] for d in api.get("/api/v1/deliveries", **params).json()["data"]]

    assert ids() == [first.pk, second.pk, third.pk]
    assert ids(customer=ana.pk) == [first.pk, second.pk]
    assert ids(journey="winback") == [third.pk]
    assert ids(status="scheduled") == [second.pk]
    assert ids(channel="sms") == [second.pk]
    assert ids(customer=ana.pk, channel="email", status="sent") == [first.pk]
    page = api.get("/api/v1/deliveries", limit=2).json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    rest = api.get("/api/v1/deliveries", limit=2, cursor=page["next_cursor"]).json()
    assert [d["id"] for d in rest["data"]] == [third.pk] and rest["next_cursor"] is None
    one = api.get("/api/v1/deliveries", customer=ana.pk, channel="email").json()["data"][0]
    assert (one["journey_key"], one["step_key"], one["variant"], one["status"]) == ("abandoned_cart", "email_1", "15m", "sent")
    assert one["enrollment_id"] == a.pk and one["sent_at"].startswith("2026-03-02T10:00:00")


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "lost"}, "status"), ({"channel": "fax"}, "channel"), ({"journey": "x"}, "journey"),
    ({"customer": "ana"}, "customer"), ({"limit": "0"}, "limit")])
def test_deliveries_bad_filters_are_422(api, store, params, field):
    response = api.get("/api/v1/deliveries", **params)
    assert response.status_code == 422
    assert error(response)["details"][0]["field"] == field


def test_deliveries_bad_cursor_is_400(api, store):
    response = api.get("/api/v1/deliveries", cursor="nope!")
    assert response.status_code == 400 and error(response)["code"] == "invalid_cursor"


# --- edits ------------------------------------------------------------------------------------------

def test_a_read_key_cannot_edit(client, store):
    default_journey(store)
    secret = api_key_create(store=store, name="reader", scope="read").secret
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/journeys", headers=headers).status_code == 200
    response = client.patch("/api/v1/journeys/abandoned_cart", json.dumps({"enabled": False}),
                            content_type="application/json", headers=headers)
    assert response.status_code == 403 and error(response)["code"] == "read_only_key"
    assert Journey.objects.get(store=store, key="abandoned_cart").enabled is True


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"colour": "red"}, 422, "colour"),
    ({}, 422, ""),
    ([1, 2], 400, ""),
])
def test_edits_of_the_wrong_shape(api, store, body, status, field):
    default_journey(store)
    response = api.patch("/api/v1/journeys/abandoned_cart", body)
    assert response.status_code == status
    assert error(response)["details"][0]["field"] == field


@pytest.mark.parametrize(("body", "field"), [
    ({"enabled": "yes"}, "enabled"), ({"holdout_share": 2}, "holdout_share"), ({"colour": "red"}, "colour"),
    ({"attribution": {"window_seconds": 60, "basis": "click"}}, "attribution.window_seconds"),
    ({"attribution": {"window_seconds": 86400, "basis": "sight"}}, "attribution.basis"),
])
def test_the_engine_names_the_field(api, store, body, field):
    default_journey(store)
    response = api.patch("/api/v1/journeys/abandoned_cart", body)
    assert response.status_code == 422, response.content
    assert field in [d["field"] for d in error(response)["details"]]


def test_a_nul_in_a_template_is_a_422_not_a_crash(api, store):
    default_journey(store)
    steps = api.get("/api/v1/journeys/abandoned_cart").json()["definition"]["steps"]
    steps[0]["templates"]["es"]["text"] += "\u0000"
    response = api.patch("/api/v1/journeys/abandoned_cart", {"steps": steps})
    assert response.status_code == 422, response.content
    assert error(response)["details"][0]["field"].startswith("steps[0]")


def test_edit_body_must_be_json(api, store):
    default_journey(store)
    response = api.client.patch("/api/v1/journeys/abandoned_cart", b"{", content_type="application/json",
                                headers=api.headers)
    assert response.status_code == 400 and error(response)["code"] == "invalid_json"
    assert api.patch("/api/v1/journeys/welcome", {"enabled": False}).status_code == 200


def test_a_good_edit_makes_a_new_version(api, store):
    cart = default_journey(store)
    steps = api.get("/api/v1/journeys/abandoned_cart").json()["definition"]["steps"]
    steps[0]["delay_seconds"] = 900
    response = api.patch("/api/v1/journeys/abandoned_cart", {"enabled": False, "steps": steps, "holdout_share": 0.2,
                                                             "trigger": {"delay_seconds": 900}})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["enabled"] is False and body["version"] == cart.version + 1
    assert body["definition"]["steps"][0]["delay_seconds"] == 900 and body["definition"]["holdout_share"] == 0.2
    assert "discount" not in body["definition"]["steps"][0]  # no empty fields added on the way out
    assert JourneyRevision.objects.filter(journey=cart, version=body["version"]).exists()


@pytest.mark.parametrize(("change", "field_start"), [
    (lambda steps: steps[0].update(delay_seconds=-5), "steps[0].delay_seconds"),
    (lambda steps: steps[0].update(channel="fax"), "steps[0].channel"),
    (lambda steps: steps[0]["templates"]["es"].update(text="Hola {{ nombre_secreto }}"), "steps[0].templates"),
    (lambda steps: steps[0]["templates"]["es"].update(text="Hola {% if %}"), "steps[0].templates"),
])
def test_a_bad_edit_names_the_field_and_keeps_the_last_good_version(api, store, change, field_start):
    default_journey(store)
    before = api.get("/api/v1/journeys/abandoned_cart").json()
    steps = json.loads(json.dumps(before["definition"]["steps"]))
    change(steps)
    response = api.patch("/api/v1/journeys/abandoned_cart", {"steps": steps})
    assert 400 <= response.status_code < 500, response.content
    details = error(response)["details"]
    assert any(d["field"].startswith(field_start) for d in details), details
    assert api.get("/api/v1/journeys/abandoned_cart").json() == before


# --- OpenAPI ----------------------------------------------------------------------------------------

def test_openapi_documents_journeys_and_deliveries(client, db):
    document = client.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    ok = {
        ("/api/v1/journeys", "get"): "JourneyList",
        ("/api/v1/journeys/{key}", "get"): "JourneyOut",
        ("/api/v1/journeys/{key}", "patch"): "JourneyOut",
        ("/api/v1/journeys/{key}/stats", "get"): "JourneyStatsOut",
        ("/api/v1/deliveries", "get"): "DeliveryPage",
    }
    for (path, method), schema in ok.items():
        operation = paths[path][method]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{schema}")
        assert operation["security"] == [{"ApiKeyAuth": []}]
        assert {"401", "422"} <= set(operation["responses"])
    patch = paths["/api/v1/journeys/{key}"]["patch"]
    body = patch["requestBody"]["content"]["application/json"]["schema"]
    assert {"enabled", "steps", "holdout_share", "variants"} <= set(body["properties"])
    assert "$ref" not in json.dumps(body)
    schemas = document["components"]["schemas"]
    assert "Step" in json.dumps(schemas["JourneyOut"]) or "Definition" in json.dumps(schemas["JourneyOut"])
    assert schemas["UpliftOut"]["properties"]["ci_low"]


# --- queries do not grow with rows ------------------------------------------------------------------

def _count(api, path):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert api.get(path).status_code == 200
    return len(captured)


@pytest.mark.parametrize("path", ["/api/v1/deliveries", "/api/v1/journeys/abandoned_cart/stats", "/api/v1/journeys"])
def test_reads_cost_the_same_whatever_the_rows(api, store, path):
    cart = journey(store)
    journey(store, "winback")

    def grow(tag, count):
        for n in range(count):
            who = person(store, f"{tag}{n}@example.com")
            enrollment = enroll(store, who, cart, holdout=n % 3 == 0, variant="" if n % 3 == 0 else "15m")
            message(enrollment, sent=T0, clicked=T0 + timedelta(minutes=1))
            message(enrollment, "sms_1", "sms")
            place(store, f"o-{tag}{n}", f"{tag}{n}@example.com", T0 + timedelta(hours=1))
        attribution_run(store=store, now=T0 + timedelta(days=1), full=True)

    grow("a", 2)
    api.get(path)  # the key's last_used_at write happens once a minute; keep it out of the count
    few = _count(api, path)
    grow("b", 12)
    assert _count(api, path) == few
