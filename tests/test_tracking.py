"""The public endpoints behind links in messages, through real HTTP: click, open, unsubscribe, answer, confirm."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from tertulia.channels import tracking
from tertulia.channels.models import Delivery
from tertulia.customers.models import Consent, ConsentChange
from tertulia.customers.services import consent_record, customer_resolve
from tertulia.journeys.models import Enrollment, Journey

pytestmark = pytest.mark.django_db

SENT = datetime(2025, 3, 14, 18, 0, tzinfo=UTC)


@pytest.fixture
def csrf_client():
    # Mail providers POST the one-click unsubscribe with no cookie and no CSRF token.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def customer(store):
    person = customer_resolve(store=store, identities=[("email", "lucia@example.com")], fields={"first_name": "Lucía"})
    consent_record(store=store, customer_id=person.pk, channel="email", status="subscribed", source="checkout",
                   occurred_at=SENT - timedelta(days=30))
    return person


@pytest.fixture
def enrollment(store, customer):
    journey, _ = Journey.objects.get_or_create(store=store, key="abandoned_cart", defaults={"definition": {}})
    return Enrollment.objects.create(store=store, journey=journey, journey_key="abandoned_cart", customer=customer,
                                     trigger_type="cart", trigger_id="cart-1", trigger_at=SENT, journey_version=1)


def make_delivery(store, customer, *, enrollment=None, channel="email", language="es", links=None, variant="15m"):
    return Delivery.objects.create(
        store=store, customer=customer, enrollment=enrollment, channel=channel, journey_key="abandoned_cart",
        step_key="email_1" if channel == "email" else "sms_1", variant=variant, status="sent", due_at=SENT,
        sent_at=SENT, language=language, to_address="lucia@example.com" if channel == "email" else "+34600111222",
        links=links if links is not None else [
            "https://tienda.example/cart/recover?c=1&k=abc#items",
            "https://tienda.example/p/taza?utm_source=newsletter&ref=x",
            "javascript:alert(1)",
        ])


def path_of(url: str) -> str:
    return urlsplit(url).path


def assert_public(response):
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert "no-store" in response["Cache-Control"]


# --- Click ------------------------------------------------------------------------------------------

def test_click_redirects_with_utm_and_records_the_first_click_once(client, store, customer):
    delivery = make_delivery(store, customer)
    response = client.get(path_of(tracking.tracked_url(delivery.pk, 0)))
    assert response.status_code == 302
    assert_public(response)
    assert response["Referrer-Policy"] == "no-referrer"
    target = urlsplit(response["Location"])
    assert (target.scheme, target.netloc, target.path, target.fragment) == (
        "https", "tienda.example", "/cart/recover", "items")
    assert target.query.startswith("c=1&k=abc&")  # the store's own parameters first, untouched
    assert parse_qs(target.query) == {"c": ["1"], "k": ["abc"], "utm_source": ["tertulia"], "utm_medium": ["email"],
                                      "utm_campaign": ["abandoned_cart"], "utm_content": ["email_1-15m"]}
    delivery.refresh_from_db()
    first_click = delivery.clicked_at
    assert first_click is not None and delivery.opened_at == first_click  # a click proves the open
    again = client.get(path_of(tracking.tracked_url(delivery.pk, 0)))
    assert again.status_code == 302
    delivery.refresh_from_db()
    assert delivery.clicked_at == first_click


def test_existing_utm_parameters_are_not_clobbered(client, store, customer):
    delivery = make_delivery(store, customer, variant="")
    response = client.get(path_of(tracking.tracked_url(delivery.pk, 1)))
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["utm_source"] == ["newsletter"] and query["ref"] == ["x"]
    assert query["utm_medium"] == ["email"] and query["utm_content"] == ["email_1"]


def test_a_click_keeps_an_earlier_open(client, store, customer):
    delivery = make_delivery(store, customer)
    opened = SENT + timedelta(minutes=3)
    Delivery.objects.filter(pk=delivery.pk).update(opened_at=opened)
    client.get(path_of(tracking.tracked_url(delivery.pk, 0)))
    delivery.refresh_from_db()
    assert delivery.opened_at == opened and delivery.clicked_at > opened


@pytest.mark.parametrize("make_path", [
    lambda d: f"/r/{tracking.link_token(d.pk, 0)}x",  # tampered signature
    lambda d: f"/r/{tracking.link_token(d.pk + 1000, 0)}",  # no such delivery
    lambda d: f"/r/{tracking.link_token(d.pk, 7)}",  # an index the delivery does not have
    lambda d: f"/r/{tracking.link_token(d.pk, 2)}",  # a stored link that is not http(s)
    lambda d: "/r/" + path_of(tracking.unsubscribe_url(d.pk)).rsplit("/", 1)[1],  # a token made for another endpoint
    lambda d: "/r/https:%2F%2Fevil.example",
    lambda d: "/r/" + "a" * 300,
])
def test_bad_click_tokens_get_the_not_found_page_and_never_a_redirect(client, store, customer, make_path):
    delivery = make_delivery(store, customer)
    response = client.get(make_path(delivery), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 404
    assert "Location" not in response
    assert b"This link doesn't work" in response.content
    assert_public(response)
    delivery.refresh_from_db()
    assert delivery.clicked_at is None


def test_a_forged_token_cannot_name_any_url(client, store, customer):
    # The token carries only a delivery id and an index; the target always comes from the delivery row.
    delivery = make_delivery(store, customer)
    body = f"{tracking._base36(delivery.pk)}.0"
    response = client.get(f"/r/{body}.AAAAAAAAAAAAAAAA")
    assert response.status_code == 404


def test_head_requests_from_link_scanners_do_not_count(client, store, customer):
    delivery = make_delivery(store, customer)
    response = client.head(path_of(tracking.tracked_url(delivery.pk, 0)))
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.clicked_at is None and delivery.opened_at is None


def test_every_link_in_a_rendered_message_leads_where_the_store_said(client, store, customer):
    from tertulia.journeys.rendering import default_templates, delivery_render, preview_context

    delivery = make_delivery(store, customer, links=[])
    context = preview_context(journey_key="abandoned_cart", language="es", store=store)
    rendered = delivery_render(delivery=delivery, templates=default_templates("abandoned_cart", "email_1"),
                               context=context, language="es")
    Delivery.objects.filter(pk=delivery.pk).update(links=rendered.links)  # what the dispatcher stores
    followed = set()
    for url in re.findall(r"https?://\S+", rendered.text) + re.findall(r'href="([^"]+)"', rendered.html):
        if "/r/" not in url:
            continue
        response = client.get(path_of(url))
        assert response.status_code == 302
        followed.add(response["Location"].split("?utm_source=")[0])
    assert followed == set(rendered.links) and context["recovery_url"] in followed
    pixel = re.search(r'src="([^"]+/o/[^"]+)"', rendered.html).group(1)
    assert client.get(path_of(pixel)).status_code == 200


# --- Open pixel ---------------------------------------------------------------------------------------

def test_open_pixel_records_the_first_open(client, store, customer):
    delivery = make_delivery(store, customer)
    response = client.get(path_of(tracking.open_pixel_url(delivery.pk)))
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    assert response.content.startswith(b"GIF89a") and len(response.content) == 42
    assert_public(response)
    delivery.refresh_from_db()
    first = delivery.opened_at
    assert first is not None and delivery.clicked_at is None
    client.get(path_of(tracking.open_pixel_url(delivery.pk)))
    delivery.refresh_from_db()
    assert delivery.opened_at == first


def test_a_bad_pixel_token_still_gets_an_image(client):
    response = client.get("/o/zz.nope.gif")
    assert response.status_code == 404 and response["Content-Type"] == "image/gif"


# --- Unsubscribe --------------------------------------------------------------------------------------

def test_unsubscribe_page_asks_in_the_message_language_and_changes_nothing(client, store, customer):
    delivery = make_delivery(store, customer, language="es")
    response = client.get(path_of(tracking.unsubscribe_url(delivery.pk)), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert_public(response)
    html = response.content.decode()
    assert '<html lang="es">' in html and "¿Dejar de recibir nuestros correos?" in html
    assert "Enviado a l•••@example.com" in html and "lucia@example.com" not in html
    assert 'name="List-Unsubscribe" value="One-Click"' in html
    assert Consent.objects.get(customer=customer, channel="email").status == "subscribed"

    english = make_delivery(store, customer, language="en")
    response = client.get(path_of(tracking.unsubscribe_url(english.pk)))
    assert '<html lang="en">' in response.content.decode() and "Stop our e-mails?" in response.content.decode()


@pytest.mark.parametrize("multipart", [True, False])
def test_one_click_unsubscribe_needs_no_login_nor_csrf_and_is_recorded(csrf_client, store, customer, multipart):
    delivery = make_delivery(store, customer)
    url = path_of(tracking.unsubscribe_url(delivery.pk))
    if multipart:  # RFC 8058 says multipart/form-data
        response = csrf_client.post(url, {"List-Unsubscribe": "One-Click"}, HTTP_USER_AGENT="Gmail one-click")
    else:
        response = csrf_client.post(url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded",
                                    HTTP_USER_AGENT="Gmail one-click")
    assert response.status_code == 200  # answered directly, no redirect (RFC 8058)
    assert_public(response)
    assert Consent.objects.get(customer=customer, channel="email").status == "unsubscribed"
    change = ConsentChange.objects.filter(customer=customer, channel="email").latest("id")
    assert change.status == "unsubscribed" and change.source == "unsubscribe_link"
    assert change.evidence["delivery_id"] == delivery.pk
    assert change.evidence["user_agent"] == "Gmail one-click" and change.evidence["one_click"] is True

    # Again (a provider retrying, a person pressing twice): nothing new in the ledger.
    csrf_client.post(url, {"List-Unsubscribe": "One-Click"})
    assert ConsentChange.objects.filter(customer=customer, channel="email", status="unsubscribed").count() == 1
    page = csrf_client.get(url)
    assert "Ya te has dado de baja" in page.content.decode()


def test_the_page_button_unsubscribes_too(client, store, customer):
    delivery = make_delivery(store, customer, language="en")
    response = client.post(path_of(tracking.unsubscribe_url(delivery.pk)),
                           {"List-Unsubscribe": "One-Click", "from_page": "1"})
    assert "Done, you" in response.content.decode() and "unsubscribed</h1>" in response.content.decode()
    change = ConsentChange.objects.filter(customer=customer, channel="email").latest("id")
    assert change.evidence["one_click"] is False


def test_sms_unsubscribe_withdraws_sms_consent_only(client, store, customer):
    consent_record(store=store, customer_id=customer.pk, channel="sms", status="subscribed", source="checkout")
    delivery = make_delivery(store, customer, channel="sms")
    page = client.get(path_of(tracking.unsubscribe_url(delivery.pk)))
    assert "¿Dejar de recibir nuestros SMS?" in page.content.decode()
    assert "•••222" in page.content.decode()
    client.post(path_of(tracking.unsubscribe_url(delivery.pk)), {"List-Unsubscribe": "One-Click"})
    states = dict(Consent.objects.filter(customer=customer).values_list("channel", "status"))
    assert states == {"email": "subscribed", "sms": "unsubscribed"}


def test_unsubscribe_ends_the_person_journeys(client, store, customer, enrollment):
    delivery = make_delivery(store, customer, enrollment=enrollment)
    client.post(path_of(tracking.unsubscribe_url(delivery.pk)), {"List-Unsubscribe": "One-Click"})
    enrollment.refresh_from_db()
    assert enrollment.status == "exited" and enrollment.exit_reason == "unsubscribed"


def test_bad_unsubscribe_token(csrf_client, store, customer):
    delivery = make_delivery(store, customer)
    response = csrf_client.post(f"/u/{tracking.link_token(delivery.pk, 0)}", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 404
    assert Consent.objects.get(customer=customer, channel="email").status == "subscribed"


def test_pages_escape_the_store_name(client, store, customer):
    store.name = '<img src=x onerror="alert(1)">'
    store.save()
    delivery = make_delivery(store, customer)
    html = client.get(path_of(tracking.unsubscribe_url(delivery.pk))).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x" in html


# --- One-click answers ---------------------------------------------------------------------------------

def test_answer_is_recorded_thanked_and_a_note_can_follow(csrf_client, store, customer, enrollment):
    delivery = make_delivery(store, customer, enrollment=enrollment)
    url = path_of(tracking.answer_url(delivery.pk, "shipping"))
    response = csrf_client.get(url)
    assert response.status_code == 200
    assert_public(response)
    html = response.content.decode()
    assert "Gracias por contárnoslo" in html and "El envío (coste o plazo)" in html
    assert '<textarea id="note" name="note"' in html
    delivery.refresh_from_db()
    assert delivery.clicked_at is not None and delivery.opened_at is not None
    enrollment.refresh_from_db()
    assert enrollment.answer == "shipping"

    noted = csrf_client.post(url, {"note": "El envío a Canarias <b>carísimo</b>"})
    assert noted.status_code == 200
    assert "Tenemos tu nota" in noted.content.decode()
    assert "<textarea" not in noted.content.decode()
    enrollment.refresh_from_db()
    assert enrollment.answer == "shipping" and enrollment.status == "exited"
    assert enrollment.context["answer_note"] == "El envío a Canarias <b>carísimo</b>"


def test_answer_tokens_are_checked(client, store, customer, enrollment):
    delivery = make_delivery(store, customer, enrollment=enrollment)
    forged_choice = path_of(tracking.answer_url(delivery.pk, "price")).replace(".price.", ".other.")
    assert client.get(forged_choice).status_code == 404
    body = f"{tracking._base36(delivery.pk)}.free_shipping"
    made_up = f"/a/{body}.{tracking._signature(tracking.settings.SECRET_KEY, tracking.ANSWER, body)}"
    assert client.get(made_up).status_code == 404  # signed, but not one of the choices
    with pytest.raises(ValueError):
        tracking.answer_url(delivery.pk, "free_shipping")


def test_answer_in_english(client, store, customer, enrollment):
    delivery = make_delivery(store, customer, enrollment=enrollment, language="en")
    html = client.get(path_of(tracking.answer_url(delivery.pk, "just_looking"))).content.decode()
    assert "Thank you for telling us" in html and "I was just looking" in html


# --- Double opt-in confirmation ------------------------------------------------------------------------

def test_confirmation_link_asks_then_confirms_a_pending_subscription(client, store):
    person = customer_resolve(store=store, identities=[("email", "nuevo@example.com")])
    consent_record(store=store, customer_id=person.pk, channel="email", status="pending_confirmation",
                   source="signup_form")
    delivery = Delivery.objects.create(store=store, customer=person, channel="email", journey_key="welcome",
                                       step_key="confirm", status="sent", due_at=SENT, language="es")
    url = path_of(tracking.confirm_url(delivery.pk))
    page = client.get(url)
    assert page.status_code == 200 and "Confirma tu suscripción" in page.content.decode()
    assert Consent.objects.get(customer=person, channel="email").status == "pending_confirmation"  # a scanner's GET
    done = client.post(url, HTTP_USER_AGENT="Firefox")
    assert "Suscripción confirmada" in done.content.decode()
    change = ConsentChange.objects.filter(customer=person, channel="email").latest("id")
    assert (change.status, change.source, change.evidence["delivery_id"]) == ("subscribed", "double_opt_in", delivery.pk)

    # Later the person unsubscribes; the old confirmation link must not bring them back.
    consent_record(store=store, customer_id=person.pk, channel="email", status="unsubscribed",
                   source="unsubscribe_link", occurred_at=timezone.now() + timedelta(seconds=1))
    again = client.post(url)
    assert "Este enlace ha caducado" in again.content.decode()
    assert Consent.objects.get(customer=person, channel="email").status == "unsubscribed"


def test_tokens_survive_a_secret_key_rotation(settings, store, customer):
    delivery = make_delivery(store, customer)
    token = path_of(tracking.unsubscribe_url(delivery.pk)).rsplit("/", 1)[1]
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-brand-new-secret-key-for-this-test-only-0123456789"
    assert tracking.token_read(token, purpose=tracking.UNSUBSCRIBE) == (delivery.pk, "")
    settings.SECRET_KEY_FALLBACKS = []
    assert tracking.token_read(token, purpose=tracking.UNSUBSCRIBE) is None


# --- Opt-out by reply ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "stops"), [
    ("BAJA", True), ("baja.", True), ("  Stop ", True), ("Darme de baja", True), ("BÁJA", True), ("STOP SMS", True),
    ("no pares, me encanta", False), ("stop sending me the wrong size", False), ("", False), ("Gracias", False),
])
def test_which_replies_opt_out(body, stops):
    assert tracking.is_opt_out_reply(body) is stops


def test_an_sms_reply_baja_unsubscribes_that_channel(store):
    person = customer_resolve(store=store, identities=[("phone", "+34600111222"), ("email", "p@example.com")])
    for channel in ("sms", "email"):
        consent_record(store=store, customer_id=person.pk, channel=channel, status="subscribed", source="checkout")
    assert tracking.opt_out_reply_record(store=store, channel="sms", address="+34600111222", body="Gracias") is None
    assert tracking.opt_out_reply_record(store=store, channel="sms", address="+34699999999", body="BAJA") is None
    assert tracking.opt_out_reply_record(store=store, channel="sms", address="+34600111222", body="Baja",
                                         evidence={"message_sid": "SM123"}) == person.pk
    states = dict(Consent.objects.filter(customer=person).values_list("channel", "status"))
    assert states == {"sms": "unsubscribed", "email": "subscribed"}
    change = ConsentChange.objects.filter(customer=person, channel="sms").latest("id")
    assert change.source == "opt_out_reply" and change.evidence == {"reply": "Baja", "message_sid": "SM123"}
