"""The staff dashboard through the Django test client: login, throttling, store scoping, figures, i18n."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.test import Client

from tertulia.core.models import ApiKey
from tertulia.core.services import api_key_create, membership_grant
from tertulia.customers.models import Customer
from tertulia.events.models import Event
from tertulia.events.services import events_ingest

PASSWORD = "a-long-staff-password"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # The real hasher is slow on purpose; throttling tests sign in a dozen times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_throttle():
    # Failed-login counters live in the cache, which outlives a test's database transaction.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff(store):
    user = get_user_model().objects.create_user("marta", "marta@example.com", PASSWORD)
    membership_grant(store=store, user=user, role="manager")
    return user


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def now() -> datetime:
    return datetime.now(UTC)


def post_events(api, events):
    response = api.post("/api/v1/events", {"events": events})
    assert response.status_code == 200, response.content
    return response.json()


def cart(cart_id, email, total="59.90"):
    return {"cart_id": cart_id, "customer": {"email": email}, "items": [{"sku": "TAZA", "quantity": 1, "price": total}],
            "total": total, "currency": "EUR"}


def order(order_id, cart_id, email, total):
    return {"order_id": order_id, "cart_id": cart_id, "customer": {"email": email},
            "items": [{"sku": "TAZA", "quantity": 1, "price": total}], "total": total, "currency": "EUR"}


# --- Login, logout, CSRF, throttling ---------------------------------------------------------

def test_every_page_requires_login(client, store):
    for path in ("/app/", "/app/customers/", "/app/customers/1/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/app/login/?next=")
    assert client.get("/app/overview.json").status_code == 401


def test_sign_in_and_out(client, staff):
    page = client.get("/app/login/")
    assert page.status_code == 200
    assert b"csrfmiddlewaretoken" in page.content
    response = client.post("/app/login/", {"username": "marta", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/app/"
    assert client.get("/app/").status_code == 200
    assert client.get("/app/logout/").status_code == 405  # signing out is a POST, so a link cannot do it
    response = client.post("/app/logout/")
    assert response.status_code == 302 and response["Location"] == "/app/login/"
    assert client.get("/app/").status_code == 302


def test_forms_are_csrf_protected(staff):
    browser = Client(enforce_csrf_checks=True)
    assert browser.post("/app/login/", {"username": "marta", "password": PASSWORD}).status_code == 403
    page = browser.get("/app/login/")
    token = page.context["csrf_token"]
    signed_in = browser.post("/app/login/", {"username": "marta", "password": PASSWORD, "csrfmiddlewaretoken": str(token)})
    assert signed_in.status_code == 302
    # Store switch, language switch and sign-out refuse a forged post too.
    assert browser.post("/app/store/", {"store": "1"}).status_code == 403
    assert browser.post("/i18n/setlang/", {"language": "en"}).status_code == 403
    assert browser.post("/app/logout/").status_code == 403


@pytest.mark.parametrize("attempts", [5])
def test_failures_per_username_are_throttled_with_429(client, staff, settings, attempts):
    settings.LOGIN_THROTTLE_ATTEMPTS = attempts
    for number in range(attempts):
        # A different address each time: the username alone must trip the limit.
        response = client.post("/app/login/", {"username": "Marta", "password": "wrong"}, REMOTE_ADDR=f"10.0.0.{number}")
        assert response.status_code == 200
    checked = []
    user_login_failed.connect(lambda **kwargs: checked.append(kwargs), weak=False, dispatch_uid="probe")
    try:
        response = client.post("/app/login/", {"username": "marta", "password": PASSWORD}, REMOTE_ADDR="10.0.1.1")
    finally:
        user_login_failed.disconnect(dispatch_uid="probe")
    assert response.status_code == 429
    assert response["Retry-After"] == str(settings.LOGIN_THROTTLE_WINDOW)
    assert "Demasiados intentos" in response.content.decode()
    assert "_auth_user_id" not in client.session  # the right password did not get through
    assert checked == []  # and it was not even checked
    assert client.get("/app/").status_code == 302


def test_failures_per_address_are_throttled(client, staff, settings):
    for number in range(settings.LOGIN_THROTTLE_ATTEMPTS):
        client.post("/app/login/", {"username": f"guess{number}", "password": "x"}, REMOTE_ADDR="192.0.2.7")
    blocked = client.post("/app/login/", {"username": "marta", "password": PASSWORD}, REMOTE_ADDR="192.0.2.7")
    assert blocked.status_code == 429
    elsewhere = client.post("/app/login/", {"username": "marta", "password": PASSWORD}, REMOTE_ADDR="192.0.2.8")
    assert elsewhere.status_code == 302


def test_below_the_limit_a_good_password_still_works(client, staff, settings):
    for _ in range(settings.LOGIN_THROTTLE_ATTEMPTS - 1):
        client.post("/app/login/", {"username": "marta", "password": "wrong"})
    assert client.post("/app/login/", {"username": "marta", "password": PASSWORD}).status_code == 302


# --- Store scoping ---------------------------------------------------------------------------

def test_user_without_membership_sees_a_page_saying_so(client, store):
    loner = get_user_model().objects.create_user("loner", password=PASSWORD)
    client.force_login(loner)
    response = client.get("/app/")
    assert response.status_code == 403
    assert "No eres miembro de ninguna tienda" in response.content.decode()
    assert client.get("/app/overview.json").status_code == 403


def test_a_member_never_sees_another_store(staff_client, store, other_store):
    mine = events_ingest(store=store, events=[
        {"id": "m1", "type": "customer_upserted", "occurred_at": now().isoformat(),
         "data": {"customer": {"email": "ana@example.com", "first_name": "Ana"}}},
    ])
    assert mine.accepted == 1
    events_ingest(store=other_store, events=[
        {"id": "o1", "type": "customer_upserted", "occurred_at": now().isoformat(),
         "data": {"customer": {"email": "zoe@example.com", "first_name": "Zoe"}}},
        {"id": "o2", "type": "cart_updated", "occurred_at": now().isoformat(), "data": cart("oc", "zoe@example.com")},
    ])
    zoe = Customer.objects.for_store(other_store).get()

    listing = staff_client.get("/app/customers/").content.decode()
    assert "Ana" in listing and "Zoe" not in listing
    assert "Otra tienda" not in staff_client.get("/app/").content.decode()
    assert staff_client.get(f"/app/customers/{zoe.pk}/").status_code == 404
    assert staff_client.get("/app/customers/", {"q": "zoe"}).content.decode().count("zoe@example.com") == 0

    # Neither asking to switch nor planting the id in the session opens the other store.
    assert staff_client.post("/app/store/", {"store": other_store.pk}).status_code == 404
    session = staff_client.session
    session["dashboard_store_id"] = other_store.pk
    session.save()
    figures = staff_client.get("/app/overview.json").json()
    assert figures["store"] == "tienda"
    assert figures["figures"]["open_carts"] == 0 and figures["figures"]["customers"] == 1
    assert staff_client.get(f"/app/customers/{zoe.pk}/").status_code == 404


def test_switching_between_own_stores(staff_client, staff, store, other_store):
    membership_grant(store=other_store, user=staff, role="analyst")
    page = staff_client.get("/app/").content.decode()
    assert "Otra tienda" in page and "Tienda de prueba" in page
    response = staff_client.post("/app/store/", {"store": other_store.pk, "next": "/app/customers/"})
    assert response.status_code == 302 and response["Location"] == "/app/customers/"
    assert staff_client.get("/app/overview.json").json()["store"] == "otra"
    # An off-site `next` is ignored.
    response = staff_client.post("/app/store/", {"store": store.pk, "next": "https://evil.example/"})
    assert response["Location"] == "/app/"
    assert staff_client.get("/app/overview.json").json()["store"] == "tienda"


def test_superuser_sees_every_store(client, store, other_store):
    root = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    client.force_login(root)
    assert client.post("/app/store/", {"store": other_store.pk}).status_code == 302
    assert client.get("/app/overview.json").json()["store"] == "otra"


# --- Overview --------------------------------------------------------------------------------

def test_overview_figures_match_events_posted_through_the_api(staff_client, api, store):
    moment = now()
    posted = post_events(api, [
        {"id": "c-open", "type": "cart_updated", "occurred_at": moment.isoformat(),
         "data": cart("c1", "ana@example.com", "59.90")},
        {"id": "c-bought", "type": "cart_updated", "occurred_at": moment.isoformat(),
         "data": cart("c2", "bea@example.com", "30.00")},
        {"id": "o-today", "type": "order_placed", "occurred_at": moment.isoformat(),
         "data": order("o1", "c2", "bea@example.com", "30.00")},
        {"id": "o-last-week", "type": "order_placed", "occurred_at": (moment - timedelta(days=7)).isoformat(),
         "data": order("o2", "", "ana@example.com", "12.50")},
        {"id": "o-cancelled", "type": "order_placed", "occurred_at": (moment - timedelta(days=3)).isoformat(),
         "data": order("o3", "", "ana@example.com", "99.00")},
        {"id": "o-cancel", "type": "order_cancelled", "occurred_at": (moment - timedelta(days=2)).isoformat(),
         "data": {"order_id": "o3"}},
        {"id": "o-old", "type": "order_placed", "occurred_at": (moment - timedelta(days=40)).isoformat(),
         "data": order("o4", "", "bea@example.com", "1000.00")},
        {"id": "s1", "type": "consent_changed", "occurred_at": moment.isoformat(),
         "data": {"customer": {"email": "ana@example.com"}, "channel": "email", "status": "subscribed"}},
        {"id": "s2", "type": "consent_changed", "occurred_at": moment.isoformat(),
         "data": {"customer": {"email": "bea@example.com"}, "channel": "email", "status": "unsubscribed"}},
        {"id": "s3", "type": "consent_changed", "occurred_at": moment.isoformat(),
         "data": {"customer": {"email": "bea@example.com"}, "channel": "sms", "status": "subscribed"}},
        {"id": "p1", "type": "customer_upserted", "occurred_at": moment.isoformat(),
         "data": {"customer": {"phone": "+34600111222", "first_name": "Carla"}}},
        {"id": "p2", "type": "customer_upserted", "occurred_at": moment.isoformat(),
         "data": {"customer": {"email": "dani@example.com"}}},
    ])
    assert posted["accepted"] == 12

    body = staff_client.get("/app/overview.json").json()
    figures = body["figures"]
    assert figures["events_today"] == 12
    assert (figures["open_carts"], Decimal(figures["open_carts_value"])) == (1, Decimal("59.90"))
    assert (figures["orders_today"], Decimal(figures["revenue_today"])) == (1, Decimal("30.00"))
    assert (figures["orders_30d"], Decimal(figures["revenue_30d"])) == (2, Decimal("42.50"))
    assert figures["customers"] == 4
    assert figures["consent"]["email"] == {"subscribed": 1, "customers": 4, "rate": 0.25}
    assert figures["consent"]["sms"] == {"subscribed": 1, "customers": 4, "rate": 0.25}
    assert figures["consent"]["social_dm"] == {"subscribed": 0, "customers": 4, "rate": 0.0}
    assert body["display"]["revenue_30d"] == "42,50\u00a0€"
    assert body["display"]["consent_email"] == "25,0\u00a0%"

    page = staff_client.get("/app/").content.decode()
    assert 'data-live-url="/app/overview.json"' in page
    assert "59,90\u00a0€" in page and "25,0\u00a0%" in page
    assert "overview.js" in page

    # "Live": a new event shows in the JSON without anything else happening.
    post_events(api, [{"id": "c-later", "type": "cart_updated", "occurred_at": now().isoformat(),
                       "data": cart("c3", "dani@example.com", "10.00")}])
    again = staff_client.get("/app/overview.json").json()["figures"]
    assert (again["events_today"], again["open_carts"], Decimal(again["open_carts_value"])) == (13, 2, Decimal("69.90"))


def test_overview_counts_only_this_store(staff_client, store, other_store):
    key = api_key_create(store=other_store, name="other").secret
    client = Client()
    response = client.post("/api/v1/events", {"id": "x", "type": "cart_updated", "occurred_at": now().isoformat(),
                                              "data": cart("z", "zoe@example.com")},
                           content_type="application/json", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    figures = staff_client.get("/app/overview.json").json()["figures"]
    assert (figures["events_today"], figures["open_carts"], figures["customers"]) == (0, 0, 0)


# --- Language -------------------------------------------------------------------------------

def test_spanish_by_default_and_the_switch_changes_language(staff_client):
    page = staff_client.get("/app/").content.decode()
    assert '<html lang="es">' in page and "Resumen" in page and "Clientes" in page
    response = staff_client.post("/i18n/setlang/", {"language": "en", "next": "/app/customers/"})
    assert response.status_code == 302 and response["Location"] == "/app/customers/"
    page = staff_client.get("/app/").content.decode()
    assert '<html lang="en">' in page and "Overview" in page and "Resumen" not in page
    assert staff_client.get("/app/overview.json").json()["display"]["revenue_30d"] == "€0.00"
    staff_client.post("/i18n/setlang/", {"language": "es", "next": "/app/"})
    assert "Resumen" in staff_client.get("/app/").content.decode()


def test_login_page_is_translated(client):
    assert "Iniciar sesión" in client.get("/app/login/").content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/app/login/"})
    assert "Sign in" in client.get("/app/login/").content.decode()


# --- Customers ------------------------------------------------------------------------------

def test_customer_search_and_pagination(staff_client, store):
    events = [
        {"id": f"p{n}", "type": "customer_upserted", "occurred_at": now().isoformat(),
         "data": {"customer": {"email": f"person{n:02d}@example.com", "first_name": f"Persona{n:02d}"}}}
        for n in range(30)
    ]
    events.append({"id": "lucia", "type": "customer_upserted", "occurred_at": now().isoformat(),
                   "data": {"customer": {"phone": "+34 612 34 56 78", "first_name": "Lucía", "last_name": "Ortega"}}})
    assert events_ingest(store=store, events=events).accepted == 31

    first = staff_client.get("/app/customers/").content.decode()
    second = staff_client.get("/app/customers/", {"page": 2}).content.decode()
    assert "Página 1 de 2" in first and "Página 2 de 2" in second
    shown = {n for n in range(30) if f"person{n:02d}@example.com" in first + second}
    assert len(shown) == 30

    assert "Lucía" in staff_client.get("/app/customers/", {"q": "ortega"}).content.decode()
    by_phone = staff_client.get("/app/customers/", {"q": "612 34 56"}).content.decode()
    assert "+34612345678" in by_phone and "person" not in by_phone
    by_email = staff_client.get("/app/customers/", {"q": "person07@"}).content.decode()
    assert "Persona07" in by_email and "Persona08" not in by_email
    assert "Ningún cliente coincide" in staff_client.get("/app/customers/", {"q": "nadie"}).content.decode()


def test_customer_page_timeline_is_newest_first(staff_client, api, store):
    base = now() - timedelta(hours=3)
    ana = {"email": "ana@example.com"}
    post_events(api, [
        # Sent out of order on purpose: the page orders by when things happened.
        {"id": "evt-third-order", "type": "order_placed", "occurred_at": (base + timedelta(hours=2)).isoformat(),
         "data": order("o-77", "c-55", "ana@example.com", "20.00")},
        {"id": "evt-first-cart", "type": "cart_updated", "occurred_at": base.isoformat(),
         "data": cart("c-55", "ana@example.com", "20.00")},
        {"id": "evt-second-consent", "type": "consent_changed", "occurred_at": (base + timedelta(hours=1)).isoformat(),
         "data": {"customer": ana, "channel": "sms", "status": "subscribed", "source": "checkout_form"}},
        {"id": "evt-fourth-profile", "type": "customer_upserted", "occurred_at": (base + timedelta(hours=2, minutes=30)).isoformat(),
         "data": {"customer": {**ana, "phone": "+34611222333", "first_name": "Ana", "last_name": "Ruiz"}}},
    ])
    customer = Customer.objects.for_store(store).get()
    page = staff_client.get(f"/app/customers/{customer.pk}/").content.decode()
    timeline = page[page.index('class="timeline"'):]
    positions = [timeline.index(client_id) for client_id in
                 ("evt-fourth-profile", "evt-third-order", "evt-second-consent", "evt-first-cart")]
    assert positions == sorted(positions)
    # The projections are in the timeline too: the order, the (converted) cart and the consent change.
    assert "Pedido o-77" in timeline and "Carrito c-55" in timeline and "Convertido en pedido" in timeline
    assert timeline.index("Pedido o-77") < timeline.index("Carrito c-55")
    # Identities and current consent.
    assert "ana@example.com" in page and "+34611222333" in page
    assert "Suscrito" in page and "No consultado" in page


def test_merged_profile_redirects_to_the_survivor(staff_client, store):
    events_ingest(store=store, events=[
        {"id": "a", "type": "customer_upserted", "occurred_at": now().isoformat(), "data": {"customer": {"email": "a@example.com"}}},
        {"id": "b", "type": "customer_upserted", "occurred_at": now().isoformat(), "data": {"customer": {"phone": "+34600000001"}}},
    ])
    events_ingest(store=store, events=[
        {"id": "ab", "type": "customer_upserted", "occurred_at": now().isoformat(),
         "data": {"customer": {"email": "a@example.com", "phone": "+34600000001"}}},
    ])
    merged = Customer.objects.for_store(store).exclude(merged_into=None).get()
    response = staff_client.get(f"/app/customers/{merged.pk}/")
    assert response.status_code == 302 and response["Location"] == f"/app/customers/{merged.merged_into_id}/"


def test_user_content_is_escaped(staff_client, api, store):
    evil = "<script>alert(1)</script>"
    post_events(api, [
        {"id": "evil-1", "type": "customer_upserted", "occurred_at": now().isoformat(),
         "data": {"customer": {"email": "x@example.com", "first_name": evil, "last_name": '"><img src=x onerror=alert(2)>'}}},
        {"id": "<b>evil-2</b>", "type": "cart_updated", "occurred_at": now().isoformat(),
         "data": {**cart("<i>cart</i>", "x@example.com"), "currency": "EUR"}},
    ])
    customer = Customer.objects.for_store(store).get()
    for path, params in (("/app/customers/", {}), (f"/app/customers/{customer.pk}/", {}),
                         ("/app/customers/", {"q": evil})):
        page = staff_client.get(path, params).content.decode()
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "<b>evil-2</b>" not in page and "<i>cart</i>" not in page
    page = staff_client.get(f"/app/customers/{customer.pk}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;evil-2&lt;/b&gt;" in page


# --- Admin ----------------------------------------------------------------------------------

def test_admin_is_for_superusers_and_lists_every_model(client, staff, store):
    client.force_login(staff)
    assert client.get("/admin/").status_code == 302  # a store member is not an admin
    root = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    client.force_login(root)
    events_ingest(store=store, events=[
        {"id": "e1", "type": "cart_updated", "occurred_at": now().isoformat(), "data": cart("c1", "ana@example.com")},
        {"id": "e2", "type": "consent_changed", "occurred_at": now().isoformat(),
         "data": {"customer": {"email": "ana@example.com"}, "channel": "email", "status": "subscribed"}},
    ])
    for model in ("core/store", "core/membership", "core/apikey", "core/job", "catalog/category", "catalog/product",
                  "customers/customer", "customers/identity", "customers/consentchange", "customers/consent",
                  "commerce/cart", "commerce/order", "events/event", "events/webhookdelivery"):
        response = client.get(f"/admin/{model}/", {"q": "ana"})
        assert response.status_code == 200, model


def test_admin_never_shows_an_api_key_hash_and_keeps_events_read_only(client, store):
    root = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    client.force_login(root)
    issued = api_key_create(store=store, name="shop")
    page = client.get(f"/admin/core/apikey/{issued.key.pk}/change/").content.decode()
    assert issued.key.hashed not in page and issued.secret not in page
    assert 'name="hashed"' not in page

    # A key made in the admin is shown once, and only its hash is kept.
    response = client.post("/admin/core/apikey/add/", {"store": store.pk, "name": "from admin", "scope": "read"}, follow=True)
    assert response.status_code == 200
    made = ApiKey.objects.for_store(store).get(name="from admin")
    shown = [str(message) for message in response.context["messages"]]
    assert any(f"tk_{made.lookup}_" in text for text in shown)
    assert made.scope == "read" and len(made.hashed) == 64

    events_ingest(store=store, events=[
        {"id": "e1", "type": "cart_updated", "occurred_at": now().isoformat(), "data": cart("c1", "ana@example.com")},
    ])
    event = Event.objects.for_store(store).get()
    assert client.get("/admin/events/event/add/").status_code == 403
    page = client.get(f"/admin/events/event/{event.pk}/change/")
    assert page.status_code == 200 and 'name="client_id"' not in page.content.decode()
    assert client.post(f"/admin/events/event/{event.pk}/delete/", {"post": "yes"}).status_code == 403
