"""Dashboard journeys: list with figures, the journey page (chart, editor, preview), roles, outbox, timeline."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from test_attribution import T0, enroll, journey, message, person, place

from tertulia.channels.models import OutboxMessage
from tertulia.core.services import membership_grant
from tertulia.journeys.attribution import attribution_run, watermarks_forget
from tertulia.journeys.models import Journey

PASSWORD = "a-long-staff-password"


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    watermarks_forget()
    yield
    watermarks_forget()


def member(client, store, role, name=None):
    user = get_user_model().objects.create_user(name or role, password=PASSWORD)
    membership_grant(store=store, user=user, role=role)
    client.force_login(user)
    return client


@pytest.fixture
def manager(client, store):
    return member(client, store, "manager")


def seeded(store):
    cart = journey(store)
    ana, bea = person(store, "ana@example.com"), person(store, "bea@example.com")
    treated = enroll(store, ana, cart)
    enroll(store, bea, cart, holdout=True, variant="")
    message(treated, sent=T0, clicked=T0 + timedelta(minutes=5))
    place(store, "o-1", "ana@example.com", T0 + timedelta(hours=1), total="42.00")
    attribution_run(store=store, now=T0 + timedelta(days=1))
    return cart, ana


def form_of(page: str) -> dict:
    """The editor's fields as a browser would post them (inputs, selects, textareas, checked boxes)."""
    form = page[page.index('class="journey-form"'):]
    form = form[: form.index("</form>")]
    data = {}
    for tag in re.finditer(r"<input\b[^>]*>", form):
        attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', tag.group(0)))
        if "name" not in attrs:
            continue
        if attrs.get("type") == "checkbox":
            if " checked" in tag.group(0):
                data[attrs["name"]] = "on"
            continue
        data[attrs["name"]] = _unescape(attrs.get("value", ""))
    for select in re.finditer(r'<select name="([^"]+)">(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]+)" selected>', select.group(2)) or re.search(r'<option value="([^"]+)"', select.group(2))
        data[select.group(1)] = chosen.group(1)
    for area in re.finditer(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', form, re.S):
        data[area.group(1)] = _unescape(area.group(2))
    return data


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


# --- pages ------------------------------------------------------------------------------------------

def test_pages_need_a_signed_in_member(client, store):
    for path in ("/app/journeys/", "/app/journeys/abandoned_cart/", "/app/outbox/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/app/login/")
    assert client.post("/app/journeys/abandoned_cart/preview/").status_code == 401


def test_journeys_list_shows_figures(manager, store):
    seeded(store)
    page = manager.get("/app/journeys/").content.decode()
    assert "Carrito abandonado" in page or "Abandoned cart" in page
    row = page[page.index('data-journey="abandoned_cart"'):]
    row = row[: row.index("</tr>")]
    assert "42,00\u00a0€" in row  # recovered revenue, written the Spanish way
    assert "100,0\u00a0%" in row  # the treated person bought
    assert "+100,0\u00a0pp" in row  # uplift against a holdout that did not
    assert 'href="/app/journeys/"' in page and 'href="/app/outbox/"' in page  # the nav


def test_journey_page_has_figures_and_the_delay_chart(manager, store):
    seeded(store)
    response = manager.get("/app/journeys/abandoned_cart/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<svg" in page and 'class="delay-chart"' in page
    assert page.count('class="bar-rate"') == 2 and page.count('class="bar-revenue"') == 2
    assert 'data-variant="15m"' in page and 'data-variant="1h"' in page
    assert 'class="baseline"' in page  # the holdout's conversion as a dashed line
    svg = page.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert "<script" not in svg
    # Coordinates stay plain numbers in Spanish too (a localised "320,5" breaks the drawing).
    coordinates = re.findall(r'\b(?:x|y|x1|x2|y1|y2|width|height)="([^"]*)"', svg)
    assert coordinates and all(re.fullmatch(r"-?\d+(\.\d+)?", value) for value in coordinates), coordinates


def test_unknown_or_foreign_journey_is_404(manager, store, other_store):
    journey(other_store, "winback")
    assert manager.get("/app/journeys/nope/").status_code == 404


def test_english(manager, store):
    seeded(store)
    manager.post("/i18n/setlang/", {"language": "en", "next": "/app/journeys/"})
    page = manager.get("/app/journeys/").content.decode()
    assert "Journeys" in page and "€42.00" in page and "Recovered revenue" in page


# --- editing ----------------------------------------------------------------------------------------

def test_manager_edits_delays_holdout_and_variants(manager, store):
    page = manager.get("/app/journeys/abandoned_cart/").content.decode()
    data = form_of(page)
    data.update({"step-0-delay_value": "45", "step-0-delay_unit": "minutes", "holdout_percent": "20",
                 "trigger_value": "30", "trigger_unit": "minutes",
                 "variant-0-key": "45m", "variant-0-weight": "1", "variant-0-delay_value": "45",
                 "variant-0-delay_unit": "minutes", "action": "save"})
    response = manager.post("/app/journeys/abandoned_cart/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    saved = Journey.objects.get(store=store, key="abandoned_cart")
    assert saved.version == 2
    assert saved.definition["steps"][0]["delay_seconds"] == 2700 and saved.definition["holdout_share"] == 0.2
    assert saved.definition["variants"][0]["key"] == "45m"
    assert saved.definition["variants"][0]["steps"]["email_1"]["delay_seconds"] == 2700
    assert "es" in saved.definition["steps"][0]["templates"]


@pytest.mark.parametrize(("field", "value", "shown"), [
    ("step-0-delay_value", "-5", "steps[0].delay_seconds"),
    ("step-0-delay_value", "soon", "steps[0].delay_seconds"),
    ("step-0-channel", "fax", "steps[0].channel"),
    ("step-0-es-text", "Hola {{ variable_desconocida }}", "steps[0].templates"),
])
def test_a_bad_edit_shows_the_problem_and_saves_nothing(manager, store, field, value, shown):
    page = manager.get("/app/journeys/abandoned_cart/").content.decode()
    before = Journey.objects.get(store=store, key="abandoned_cart")
    data = form_of(page) | {field: value, "action": "save"}
    response = manager.post("/app/journeys/abandoned_cart/", data)
    assert response.status_code == 422
    body = response.content.decode()
    assert 'id="edit-errors"' in body and shown in body
    after = Journey.objects.get(store=store, key="abandoned_cart")
    assert (after.version, after.definition) == (before.version, before.definition)
    if field.endswith("-text"):
        assert "variable_desconocida" in body  # the form keeps what was typed


def test_preview_in_both_languages_and_the_same_errors(manager, store):
    page = manager.get("/app/journeys/abandoned_cart/").content.decode()
    assert page.count('data-preview="0-es"') == 1 and page.count('data-preview="0-en"') == 1
    assert 'sandbox=""' in page and "srcdoc=" in page
    data = form_of(page)
    data["step-0-en-subject"] = "Forgot <b>something</b>, {{ first_name }}?"
    data["step-0-es-text"] = "Hola {{ variable_desconocida }}"
    response = manager.post("/app/journeys/abandoned_cart/preview/", data)
    assert response.status_code == 200
    previews = {(p["step"], p["language"]): p for p in response.json()["previews"]}
    english = previews[(0, "en")]
    assert english["errors"] == [] and english["subject"].startswith("Forgot <b>something</b>")
    assert "Content-Security-Policy" in english["html"] and "<script" not in english["html"].lower()
    spanish = previews[(0, "es")]
    assert spanish["html"] == "" and any("variable_desconocida" in e["message"] or e["field"].startswith("steps[0]")
                                         or e["field"].startswith("templates") for e in spanish["errors"])
    assert previews[(1, "es")]["channel"] == "sms" and previews[(1, "es")]["text"]
    assert Journey.objects.get(store=store, key="abandoned_cart").version == 1  # nothing saved


def test_an_analyst_reads_but_cannot_edit(client, store):
    journey(store)
    analyst = member(client, store, "analyst")
    page = analyst.get("/app/journeys/abandoned_cart/").content.decode()
    assert "<fieldset disabled>" in page.replace(" >", ">") or "fieldset disabled" in page
    assert 'value="save"' not in page
    response = analyst.post("/app/journeys/abandoned_cart/", {"enabled": "on", "action": "save"})
    assert response.status_code == 403
    assert Journey.objects.get(store=store, key="abandoned_cart").version == 1


# --- outbox -----------------------------------------------------------------------------------------

RAW_EMAIL = (
    "From: Tienda <tienda@example.com>\r\nTo: ana@example.com\r\nSubject: =?utf-8?q?=C2=BFAlgo_te_fren=C3=B3=3F?=\r\n"
    "MIME-Version: 1.0\r\nList-Unsubscribe: <http://127.0.0.1:8000/u/abc>\r\n"
    "Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    "Hola Ana\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    "<html><head></head><body><p>Hola Ana</p><script>document.title='pwned'</script>"
    "<img src=\"http://127.0.0.1:8000/o/tok.gif\" width=\"1\" height=\"1\" alt=\"\"></body></html>\r\n--b--\r\n"
)


def test_outbox_lists_this_store_and_shows_mail_as_the_shopper_sees_it(manager, store, other_store):
    mail = OutboxMessage.objects.create(store=store, channel="email", from_email="tienda@example.com",
                                        to=["ana@example.com"], subject="¿Algo te frenó?", raw=RAW_EMAIL)
    OutboxMessage.objects.create(store=store, channel="sms", from_email="+34600000000", to=["+34600111222"],
                                 subject="", body_text="Tu carrito te espera. BAJA para no recibir más",
                                 raw="Tu carrito te espera. BAJA para no recibir más")
    foreign = OutboxMessage.objects.create(store=other_store, channel="email", from_email="x@example.com",
                                           to=["zoe@example.com"], subject="Para Zoe", raw="Subject: Para Zoe\r\n\r\nhola")
    listing = manager.get("/app/outbox/").content.decode()
    assert "¿Algo te frenó?" in listing and "Tu carrito te espera" in listing and "Para Zoe" not in listing
    assert "Tu carrito" not in manager.get("/app/outbox/", {"channel": "email"}).content.decode()
    assert manager.get(f"/app/outbox/{foreign.pk}/").status_code == 404

    page = manager.get(f"/app/outbox/{mail.pk}/").content.decode()
    frame = re.search(r'<iframe class="shopper-view"[^>]*>', page).group(0)
    assert 'sandbox=""' in frame
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame).group(1)
    assert "&lt;script&gt;" in srcdoc  # markup travels escaped inside the attribute...
    assert "Content-Security-Policy" in srcdoc and "default-src &#x27;none&#x27;" in srcdoc  # ...under a no-script CSP
    assert "/o/tok.gif" not in srcdoc  # looking at it is not the shopper opening it
    assert "<script>" not in page.replace('<script src="/static/dashboard/dashboard.js" defer></script>', "")
    assert "List-Unsubscribe" in page
    sms = OutboxMessage.objects.get(channel="sms")
    assert "bubble" in manager.get(f"/app/outbox/{sms.pk}/").content.decode()


# --- the customer timeline --------------------------------------------------------------------------

def test_deliveries_on_the_customer_timeline(manager, store, other_store):
    _cart, ana = seeded(store)
    page = manager.get(f"/app/customers/{ana.pk}/").content.decode()
    assert "kind-message" in page
    item = page[page.index("kind-message"):]
    item = item[: item.index("</li>")]
    assert "Carrito abandonado" in item and "Enviado" in item and "clic" in item
    assert 'class="status status-sent"' in item
    # Another store's messages never show, even to someone who knows the id.
    zoe = person(other_store, "zoe@example.com")
    message(enroll(other_store, zoe, journey(other_store)), sent=T0)
    assert manager.get(f"/app/customers/{zoe.pk}/").status_code == 404


@pytest.mark.parametrize(("role", "may_edit"), [("owner", True), ("manager", True), ("analyst", False),
                                                ("agent", False), ("moderator", False)])
def test_who_may_edit(client, store, role, may_edit):
    journey(store)
    member(client, store, role)
    page = client.get("/app/journeys/abandoned_cart/").content.decode()
    assert ('value="save"' in page) is may_edit
    response = client.post("/app/journeys/abandoned_cart/", {"action": "save"})
    assert (response.status_code == 403) is not may_edit


def test_figures_never_mix_stores(client, store, other_store):
    seeded(store)
    seeded(other_store)
    journey(other_store, "winback")
    member(client, store, "analyst")
    page = client.get("/app/journeys/abandoned_cart/").content.decode()
    # One treated and one held-out person here, whatever the other store holds.
    assert "1 con mensajes · 1 en grupo de control" in page
    # Planting the other store in the session does not open it.
    session = client.session
    session["dashboard_store_id"] = other_store.pk
    session.save()
    assert "1 con mensajes · 1 en grupo de control" in client.get("/app/journeys/abandoned_cart/").content.decode()


@pytest.mark.parametrize("value", ["", "abc", "1e999", "sNaN", "Infinity", "１２", "9" * 40, "\x00"])
@pytest.mark.parametrize("field", ["trigger_value", "holdout_percent", "step-0-delay_value", "step-1-discount_percent",
                                   "variant-0-weight", "step-0-channel"])
def test_no_form_value_breaks_the_page(manager, store, field, value):
    page = manager.get("/app/journeys/abandoned_cart/").content.decode()
    data = form_of(page) | {field: value, "action": "save"}
    response = manager.post("/app/journeys/abandoned_cart/", data)
    assert response.status_code in (302, 422)
    saved = Journey.objects.get(store=store, key="abandoned_cart")
    for number in (saved.definition.get("holdout_share"),
                   *(s.get("delay_seconds") for s in saved.definition["steps"])):
        assert isinstance(number, int | float) and number == number  # never NaN
    assert manager.post("/app/journeys/abandoned_cart/preview/", data).status_code == 200


def test_a_nul_in_a_template_is_refused_not_a_crash(manager, store):
    page = manager.get("/app/journeys/abandoned_cart/").content.decode()
    data = form_of(page)
    data["step-0-es-text"] = data["step-0-es-text"] + "\x00"
    response = manager.post("/app/journeys/abandoned_cart/", data | {"action": "save"})
    assert response.status_code in (302, 422)
    assert "\x00" not in str(Journey.objects.get(store=store, key="abandoned_cart").definition)
    assert manager.post("/app/journeys/abandoned_cart/preview/", data).status_code == 200
