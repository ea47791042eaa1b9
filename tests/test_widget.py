"""The widget's budget and safety rules, the sample shop pages, and the moderation queue over HTTP.

Browser behaviour (XSS payloads, keyboard, the walk) is in test_widget_browser.py.
"""

import gzip
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

import tertulia
from tertulia.core.services import membership_grant
from tertulia.dashboard.views_moderation import evidence_split, queue_row
from tertulia.events.services import events_ingest

WIDGET = Path(tertulia.__file__).parent / "ugc" / "static" / "ugc" / "widget.js"
MODERATION_JS = Path(tertulia.__file__).parent / "dashboard" / "static" / "dashboard" / "moderation.js"


def test_widget_is_under_30_kb_gzipped():
    size = len(gzip.compress(WIDGET.read_bytes(), compresslevel=9))
    assert size < 30 * 1024, f"widget.js is {size} bytes gzipped"


@pytest.mark.parametrize("path", [WIDGET, MODERATION_JS])
def test_scripts_never_parse_markup(path):
    source = path.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "createContextualFragment", "DOMParser"):
        assert sink not in source, f"{path.name} uses {sink}"


# --- Sample shop ----------------------------------------------------------------------------

@pytest.fixture
def catalogue(store, event):
    products = [{"sku": "ACE-1", "title": "Aceite <b>picual</b>", "price": "12.50", "currency": "EUR",
                 "description": "Jaén"},
                {"sku": "CAFE-2", "title": "Café de Colombia", "price": "8.00", "currency": "EUR"}]
    assert events_ingest(store=store, events=[event("product_upserted", p) for p in products]).accepted == 2
    return store


def test_shop_lists_products_and_embeds_the_widget_with_one_script(client, catalogue):
    home = client.get("/shop/tienda/")
    assert home.status_code == 200
    page = home.content.decode()
    assert "Aceite &lt;b&gt;picual&lt;/b&gt;" in page and "Café de Colombia" in page
    assert '/shop/tienda/ACE-1/' in page

    product = client.get("/shop/tienda/ACE-1/?lang=en")
    assert product.status_code == 200
    html = product.content.decode()
    assert '<html lang="en">' in html
    assert '<tertulia-reviews store="tienda" product="ACE-1"></tertulia-reviews>' in html
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/widget.js" defer>']
    assert "Reference ACE-1" in html
    assert client.get("/shop/tienda/ACE-1/?lang=es").content.decode().count('<html lang="es">') == 1


def test_shop_passes_a_review_token_as_an_escaped_attribute(client, catalogue):
    html = client.get('/shop/tienda/ACE-1/?token=abc"><script>alert(1)</script>').content.decode()
    assert 'token="abc&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert "<script>alert(1)" not in html


def test_shop_unknown_store_or_product_is_404(client, catalogue):
    assert client.get("/shop/nadie/").status_code == 404
    assert client.get("/shop/tienda/NOPE/").status_code == 404
    assert client.post("/shop/tienda/").status_code == 405


# --- Moderation queue -------------------------------------------------------------------------

def test_evidence_is_cut_into_plain_pieces():
    assert evidence_split("Eres un IDIOTA, idiota", ["idiota"]) == [
        ("Eres un ", False), ("IDIOTA", True), (", ", False), ("idiota", True)]
    assert evidence_split("<b>x</b>", ["<b>"]) == [("<b>", True), ("x</b>", False)]
    assert evidence_split("texto", []) == [("texto", False)]


def test_queue_rows_read_dicts_and_records():
    row = queue_row({"content_type": "review", "id": 7, "text": "spam spam", "title": "T", "author": "Ana",
                     "moderation": {"results": [{"code": "promotional", "score": 0.5, "evidence": ["spam"]},
                                                {"code": "rudeness", "score": 0.9, "evidence": []}]}})
    assert row.key == "review:7"
    assert [r.code for r in row.reasons] == ["rudeness", "promotional"]
    assert row.text == [("spam", True), (" ", False), ("spam", True)]


@pytest.fixture
def people(store):
    users = {}
    for role in ("moderator", "analyst"):
        user = get_user_model().objects.create_user(role, f"{role}@example.com", "pw")
        membership_grant(store=store, user=user, role=role)
        users[role] = user
    return users


def test_queue_needs_a_signed_in_member(client, store):
    response = client.get("/app/moderation/")
    assert response.status_code == 302 and "/app/login/" in response["Location"]
    assert client.post("/app/moderation/decide/", {"action": "approve"}).status_code == 401


def test_queue_page_renders_for_readers_without_decision_controls(client, store, people):
    client.force_login(people["analyst"])
    page = client.get("/app/moderation/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/app/moderation/"' in html and 'aria-current="page"' in html
    assert 'name="only"' not in html
    answer = client.post("/app/moderation/decide/", {"action": "approve", "items": ["review:1"]})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"


def test_decide_validates_input_and_csrf(store, people):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["moderator"])
    assert client.post("/app/moderation/decide/", {"action": "approve", "items": ["review:1"]}).status_code == 403
    client = Client()
    client.force_login(people["moderator"])
    for data, code in [({"action": "publish", "items": ["review:1"]}, "invalid_action"),
                       ({"action": "approve", "items": ["order:1"]}, "invalid_items"),
                       ({"action": "approve", "items": ["review:x"]}, "invalid_items"),
                       ({"action": "approve"}, "nothing_selected"),
                       ({"action": "approve", "items": [f"review:{n}" for n in range(501)]}, "too_many")]:
        answer = client.post("/app/moderation/decide/", data, HTTP_ACCEPT="application/json")
        assert answer.status_code == 422, data
        assert answer.json()["error"]["code"] == code
        assert answer.json()["error"]["details"][0]["field"] in ("action", "items")
    # The same mistake from the plain form: back to the queue with the message.
    answer = client.post("/app/moderation/decide/", {"action": "approve", "next": "/app/moderation/?type=review"})
    assert answer.status_code == 302 and answer["Location"] == "/app/moderation/?type=review"
    assert "Selecciona al menos un elemento." in client.get(answer["Location"]).content.decode()


def test_held_review_is_listed_escaped_and_decided_without_scripts(client, catalogue, people):
    from tertulia.catalog.models import Product
    from tertulia.moderation.services import policy_update
    from tertulia.ugc.models import Review
    from tertulia.ugc.services import Author, review_submit

    policy_update(store=catalogue, changes={"premoderate": True}, changed_by="tests")
    product = Product.objects.for_store(catalogue).get(sku="ACE-1")
    held = review_submit(store=catalogue, product=product, rating=2, title="<img src=x onerror=alert(1)>",
                         text="Llegó tarde <script>alert(2)</script> pero bien", author=Author(display_name="<b>Eva</b>"))
    assert held.status == "held"

    client.force_login(people["analyst"])
    html = client.get("/app/moderation/?type=review").content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "&lt;b&gt;Eva&lt;/b&gt;" in html and "<script>alert" not in html
    assert client.post("/app/moderation/decide/", {"only": f"approve:review:{held.id}"}).status_code == 403
    assert Review.objects.get(pk=held.id).status == "held"

    client.force_login(people["moderator"])
    answer = client.post("/app/moderation/decide/", {"only": f"approve:review:{held.id}", "next": "/app/moderation/"})
    assert answer.status_code == 302 and answer["Location"] == "/app/moderation/?done=approve-1"
    assert Review.objects.get(pk=held.id).status == "published"
    page = client.get(answer["Location"]).content.decode()
    assert "1 elemento aprobado." in page
    assert 'class="mod-item"' not in page
    # Deciding again changes nothing; the answer says so.
    again = client.post("/app/moderation/decide/", {"action": "approve", "items": [f"review:{held.id}"]},
                        HTTP_ACCEPT="application/json")
    assert again.json()["changed"] == 0
