"""Export and erase a person (GDPR / LOPDGDD), through the API and `tertulia customer`."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from tertulia.commerce.models import Cart, Order
from tertulia.core.services import api_key_create
from tertulia.customers import privacy
from tertulia.customers.models import Consent, ConsentChange, Customer, Identity
from tertulia.customers.privacy import customer_erase
from tertulia.events.models import Event

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
ANA = {"email": "ana@example.com", "phone": "+34600111222", "handles": {"instagram": "ana.g"},
       "first_name": "Ana", "last_name": "García", "external_id": "shop-77", "language": "es",
       "timezone": "Europe/Madrid"}


def post(api, *events):
    response = api.post("/api/v1/events", {"events": list(events)})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def ana(api, store, event):
    """A person with a full history: profile, consent, two carts (one converted), an order, and a stranger."""
    post(api,
         event("customer_upserted", {"customer": ANA}, at=T0),
         event("customer_upserted", {"customer": {"email": "otro@example.com", "first_name": "Otro"}}, at=T0),
         event("consent_changed", {"customer": {"email": "ana@example.com"}, "channel": "email",
                                   "status": "subscribed", "source": "checkout",
                                   "evidence": {"ip": "203.0.113.9", "form_text": "Quiero ofertas"}},
               at=T0 + timedelta(minutes=1)),
         event("cart_updated", {"cart_id": "c1", "customer": {"email": "ana@example.com"}, "currency": "EUR",
                                "items": [{"sku": "TAZA", "quantity": 2, "price": "10.00"}], "total": "20.00",
                                "recovery_url": "https://tienda.example/cart/c1?token=secret"},
               at=T0 + timedelta(minutes=2)),
         event("cart_updated", {"cart_id": "c2", "customer": {"phone": "+34600111222"}, "currency": "EUR",
                                "items": [{"sku": "TETERA", "quantity": 1, "price": "35.00"}], "total": "35.00",
                                "recovery_url": "https://tienda.example/cart/c2"}, at=T0 + timedelta(minutes=3)),
         event("cart_updated", {"cart_id": "c9", "customer": {"email": "otro@example.com"}, "currency": "EUR",
                                "items": [{"sku": "TAZA", "quantity": 1}], "total": "10.00",
                                "recovery_url": "https://tienda.example/cart/c9"}, at=T0 + timedelta(minutes=3)))
    post(api, event("order_placed", {"order_id": "o1", "cart_id": "c1", "customer": {"email": "ana@example.com"},
                                     "items": [{"sku": "TAZA", "quantity": 2, "price": "10.00"}], "total": "20.00",
                                     "currency": "EUR"}, at=T0 + timedelta(minutes=10)))
    post(api, event("order_delivered", {"order_id": "o1", "tracking_url": "https://track.example/ana-home"},
                    at=T0 + timedelta(days=2)))
    return Customer.objects.for_store(store).get(identities__kind="email", identities__value="ana@example.com")


def figures(store):
    """What the store's reports are made of: counts and money, none of it personal."""
    return {
        "orders": Order.objects.for_store(store).aggregate(n=Count("id"), revenue=Sum("total")),
        "carts": Cart.objects.for_store(store).aggregate(n=Count("id"), value=Sum("total")),
        "events": Event.objects.for_store(store).count(),
        "customers": Customer.objects.for_store(store).count(),
        "consent_changes": ConsentChange.objects.for_store(store).count(),
        "subscribed": Consent.objects.for_store(store).filter(status="subscribed").count(),
    }


# --- export -----------------------------------------------------------------------------------------


def test_export_holds_everything_about_the_person(api, store, ana):
    response = api.get(f"/api/v1/customers/{ana.pk}/export")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["store"] == store.slug and body["exported_at"]
    profile = body["customer"]
    assert (profile["id"], profile["first_name"], profile["last_name"]) == (ana.pk, "Ana", "García")
    assert (profile["language"], profile["timezone"], profile["erased_at"]) == ("es", "Europe/Madrid", None)
    assert {(i["kind"], i["value"]) for i in body["identities"]} == {
        ("email", "ana@example.com"), ("phone", "+34600111222"), ("instagram", "ana.g"), ("external", "shop-77")}
    assert body["consent"]["email"]["status"] == "subscribed" and body["consent"]["sms"] is None
    assert body["consent_ledger"][0]["evidence"]["ip"] == "203.0.113.9"
    assert sorted(c["external_id"] for c in body["carts"]) == ["c1", "c2"]
    assert [(o["external_id"], o["total"], o["status"]) for o in body["orders"]] == [("o1", "20.00", "delivered")]
    types = [e["type"] for e in body["events"]]
    assert types == ["customer_upserted", "consent_changed", "cart_updated", "cart_updated", "order_placed",
                     "order_delivered"]
    assert body["events"][0]["payload"]["data"]["customer"]["email"] == "ana@example.com"
    assert "otro@example.com" not in response.content.decode()
    assert "c9" not in {c["external_id"] for c in body["carts"]}


def test_export_of_a_merged_profile_covers_the_whole_person(api, store, event, ana):
    post(api, event("customer_upserted", {"customer": {"email": "ana.work@example.com", "first_name": "Ana T."}}, at=T0))
    work = Customer.objects.for_store(store).get(identities__value="ana.work@example.com")
    post(api, event("customer_upserted", {"customer": {"email": "ana.work@example.com", "phone": "+34600111222"}},
                    at=T0 + timedelta(hours=1)))
    body = api.get(f"/api/v1/customers/{work.pk}/export").json()
    assert body["customer"]["id"] == ana.pk
    assert [p["id"] for p in body["merged_profiles"]] == [work.pk]
    assert body["merged_profiles"][0]["first_name"] == "Ana T."
    assert "ana.work@example.com" in {i["value"] for i in body["identities"]}


def test_export_unknown_customer_is_404(api, store):
    response = api.get("/api/v1/customers/424242/export")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- erase ------------------------------------------------------------------------------------------


def test_erase_removes_personal_data_and_keeps_figures(api, store, ana):
    before = figures(store)
    response = api.post(f"/api/v1/customers/{ana.pk}/erase", {})
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["customer_id"] == ana.pk and result["erased_at"]
    assert result["identities_deleted"] == 4 and result["profiles_erased"] == 1
    assert result["consent_changes_scrubbed"] == 1 and result["carts_scrubbed"] == 2
    assert result["events_scrubbed"] == 6

    assert figures(store) == before
    ana.refresh_from_db()
    assert (ana.first_name, ana.last_name, ana.external_id, ana.language, ana.timezone) == ("", "", "", "", "")
    assert ana.erased_at is not None
    assert not Identity.objects.filter(customer=ana).exists()
    # The fact of the consent change stays; what proved it (IP, form text) does not.
    change = ConsentChange.objects.get(customer=ana)
    assert (change.channel, change.status, change.source) == ("email", "subscribed", "checkout")
    assert change.evidence == {"erased": True}
    assert Cart.objects.for_store(store).get(external_id="c1").recovery_url == ""
    assert Cart.objects.for_store(store).get(external_id="c9").recovery_url != ""
    order = Order.objects.for_store(store).get(external_id="o1")
    assert (order.total, order.customer_id, order.status) == (Decimal("20.00"), ana.pk, "delivered")

    stored = orjson.dumps([e.payload for e in Event.objects.for_store(store).filter(customer=ana)]).decode()
    for personal in ("ana@example.com", "600111222", "ana.g", "García", "shop-77", "203.0.113.9", "token=secret",
                     "ana-home", "Quiero ofertas"):
        assert personal not in stored, personal
    placed = Event.objects.for_store(store).get(type="order_placed").payload
    assert placed["data"]["total"] == "20.00" and placed["data"]["items"][0]["sku"] == "TAZA"
    assert placed["type"] == "order_placed" and placed["occurred_at"]
    # The stranger is untouched.
    assert Event.objects.for_store(store).filter(payload__data__customer__email="otro@example.com").count() == 2


def test_erased_person_no_longer_matches_lookups(api, store, event, ana):
    api.post(f"/api/v1/customers/{ana.pk}/erase", {})
    for params in ({"email": "ana@example.com"}, {"phone": "+34600111222"}, {"handle": "instagram:ana.g"}):
        assert api.get("/api/v1/customers", **params).json()["data"] == []
    detail = api.get(f"/api/v1/customers/{ana.pk}").json()
    assert detail["identities"] == [] and detail["first_name"] == "" and detail["erased_at"]
    assert detail["consent"]["email"]["status"] == "subscribed"
    # Someone writing with the same address later is a new, unrelated profile.
    post(api, event("cart_updated", {"cart_id": "c20", "customer": {"email": "ana@example.com"}, "items": [],
                                     "total": "0", "currency": "EUR"}))
    fresh = api.get("/api/v1/customers", email="ana@example.com").json()["data"]
    assert len(fresh) == 1 and fresh[0]["id"] != ana.pk


def test_erase_is_idempotent(api, store, ana):
    first = api.post(f"/api/v1/customers/{ana.pk}/erase", {}).json()
    state = (figures(store), list(Event.objects.for_store(store).order_by("pk").values_list("payload", flat=True)))
    second = api.post(f"/api/v1/customers/{ana.pk}/erase", {})
    assert second.status_code == 200
    again = second.json()
    assert again["erased_at"] == first["erased_at"]
    assert [again[k] for k in ("profiles_erased", "identities_deleted", "consent_changes_scrubbed",
                                "events_scrubbed", "carts_scrubbed")] == [0, 0, 0, 0, 0]
    assert (figures(store), list(Event.objects.for_store(store).order_by("pk").values_list("payload", flat=True))) == state


def test_erase_through_a_merged_id_erases_the_whole_person(api, store, event, ana):
    post(api, event("customer_upserted", {"customer": {"email": "ana.work@example.com", "first_name": "Ana T."}}, at=T0))
    work = Customer.objects.for_store(store).get(identities__value="ana.work@example.com")
    post(api, event("customer_upserted", {"customer": {"email": "ana.work@example.com", "phone": "+34600111222"}},
                    at=T0 + timedelta(hours=1)))
    result = api.post(f"/api/v1/customers/{work.pk}/erase", {}).json()
    assert result["customer_id"] == ana.pk and result["profiles_erased"] == 2
    for profile in Customer.objects.filter(pk__in=[ana.pk, work.pk]):
        assert profile.first_name == "" and profile.erased_at is not None
    assert not Identity.objects.for_store(store).filter(value__startswith="ana").exists()


def test_read_only_key_cannot_erase(client, store, ana):
    secret = api_key_create(store=store, name="reader", scope="read").secret
    response = client.post(f"/api/v1/customers/{ana.pk}/erase", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "read_only_key"
    ana.refresh_from_db()
    assert ana.first_name == "Ana" and ana.erased_at is None
    # Reading the export is allowed with the same key.
    export = client.get(f"/api/v1/customers/{ana.pk}/export", headers={"Authorization": f"Bearer {secret}"})
    assert export.status_code == 200


@pytest.mark.parametrize(("customer", "status", "code"), [
    ("424242", 404, "not_found"), ("abc", 422, "invalid_request"), ("0", 422, "invalid_request")])
def test_erase_bad_id(api, store, customer, status, code):
    response = api.post(f"/api/v1/customers/{customer}/erase", {})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_erase_needs_a_key(client, store, ana):
    response = client.post(f"/api/v1/customers/{ana.pk}/erase")
    assert response.status_code == 401
    assert Customer.objects.get(pk=ana.pk).erased_at is None


def test_get_on_erase_is_405_in_the_error_shape(api, store, ana):
    response = api.get(f"/api/v1/customers/{ana.pk}/erase")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert Customer.objects.get(pk=ana.pk).erased_at is None


def test_erase_is_all_or_nothing(store, ana, monkeypatch):
    """A failure after the profile and identities were touched leaves everything as it was."""
    before_events = list(Event.objects.for_store(store).order_by("pk").values_list("payload", flat=True))

    def fail(events):
        raise RuntimeError("disk full")

    monkeypatch.setattr(privacy, "_save_payloads", fail)
    with pytest.raises(RuntimeError):
        customer_erase(store=store, customer_id=ana.pk)
    ana.refresh_from_db()
    assert (ana.first_name, ana.erased_at) == ("Ana", None)
    assert Identity.objects.filter(customer=ana).count() == 4
    assert ConsentChange.objects.get(customer=ana).evidence["ip"] == "203.0.113.9"
    assert list(Event.objects.for_store(store).order_by("pk").values_list("payload", flat=True)) == before_events


# --- tertulia customer export|erase -----------------------------------------------------------------


def test_command_export_to_file_and_stdout(store, ana, tmp_path, capsys):
    target = tmp_path / "ana.json"
    call_command("customer", "export", str(ana.pk), "--store", store.slug, "--output", str(target))
    exported = orjson.loads(target.read_bytes())
    assert exported["customer"]["first_name"] == "Ana"
    assert len(exported["events"]) == 6 and exported["orders"][0]["total"] == "20.00"
    call_command("customer", "export", str(ana.pk), "--store", store.slug)
    assert orjson.loads(capsys.readouterr().out)["customer"]["id"] == ana.pk


def test_command_erase_needs_confirmation(store, ana):
    with pytest.raises(CommandError, match="--yes"):
        call_command("customer", "erase", str(ana.pk), "--store", store.slug)
    assert Customer.objects.get(pk=ana.pk).erased_at is None


def test_command_erase_with_yes(store, ana, capsys):
    call_command("customer", "erase", str(ana.pk), "--store", store.slug, "--yes")
    assert orjson.loads(capsys.readouterr().out)["identities_deleted"] == 4
    ana.refresh_from_db()
    assert ana.erased_at is not None and not Identity.objects.filter(customer=ana).exists()


def test_command_unknown_store_or_customer(store, other_store, ana):
    with pytest.raises(CommandError, match="No store"):
        call_command("customer", "export", str(ana.pk), "--store", "nowhere")
    with pytest.raises(CommandError, match="No customer"):
        call_command("customer", "export", "424242", "--store", store.slug)
    # The id exists, but in another store: that store has no such customer.
    with pytest.raises(CommandError, match="No customer"):
        call_command("customer", "erase", str(ana.pk), "--store", other_store.slug, "--yes")
    assert Customer.objects.get(pk=ana.pk).erased_at is None


def test_erase_reaches_messages_and_contributions(api, store, ana):
    """What the journeys sent and what the person wrote lose the person, and keep the figures."""
    from tertulia.channels.models import Delivery, OutboxMessage
    from tertulia.ugc.models import Review
    from tertulia.ugc.services import Author, review_submit
    from tests.ugc_support import catalogue

    product = catalogue(store)["ACE-1"]
    delivery = Delivery.objects.create(
        store=store, customer=ana, channel="email", journey_key="abandoned_cart", step_key="email_1",
        status="sent", due_at=T0, sent_at=T0, to_address="ana@example.com", subject="Ana, ¿te ayudamos?",
        body_text="Hola Ana", body_html="<p>Hola Ana</p>", links=["https://shop.example/cart?token=secret"])
    OutboxMessage.objects.create(store=store, delivery=delivery, from_email="shop@example.com",
                                 to=["ana@example.com"], subject="Ana, ¿te ayudamos?", raw="Hola Ana")
    review_submit(store=store, product=product, rating=2, text="El aceite llegó con el tapón roto.",
                  author=Author(display_name="Ana García", email="ana@example.com"))
    review_submit(store=store, product=product, rating=5, text="Muy bueno, repetiré.",
                  author=Author(display_name="Ana G.", customer_id=ana.pk))

    from tertulia.moderation.models import Judgement
    assert Judgement.objects.for_store(store).filter(customer_id=ana.pk).exists()

    result = api.post(f"/api/v1/customers/{ana.pk}/erase", {}).json()

    assert result["messages_scrubbed"] == 1 and result["contributions_anonymised"] == 2
    delivery.refresh_from_db()
    assert (delivery.to_address, delivery.subject, delivery.body_text, delivery.body_html, delivery.links) == \
        ("", "", "", "", [])
    assert (delivery.status, delivery.journey_key, delivery.sent_at) == ("sent", "abandoned_cart", T0)
    assert not OutboxMessage.objects.filter(delivery=delivery).exists()
    reviews = Review.objects.for_store(store).order_by("pk")
    assert [(r.display_name, r.author_email, r.customer_id) for r in reviews] == [("", "", None), ("", "", None)]
    assert [r.rating for r in reviews] == [2, 5]
    assert not Judgement.objects.for_store(store).filter(customer_id=ana.pk).exists()
    again = api.post(f"/api/v1/customers/{ana.pk}/erase", {}).json()
    assert (again["messages_scrubbed"], again["contributions_anonymised"]) == (0, 0)
