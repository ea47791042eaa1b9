"""Public pages of the community: the embed fragment and its JSON-LD, the Google review feed, /widget.js,
the review form of a delivered order, and the demo store's community seed."""

import io
import json
import re
from datetime import UTC, datetime
from unittest import mock
from xml.etree import ElementTree as ET

import pytest
from django.core.cache import cache
from ugc_support import catalogue, delivered_order, image_bytes, review_token, scripted_moderation

from tertulia.core.services import store_create
from tertulia.journeys.links import review_token_make
from tertulia.ugc import services
from tertulia.ugc.models import Answer, Question, Review
from tertulia.ugc.services import Author
from tertulia.ugc.views import json_ld_script

pytestmark = pytest.mark.django_db
HOSTILE = '</script><script>alert("x")</script> & <img src=x onerror=alert(1)>'


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def products(store):
    return catalogue(store)


def json_ld(html: str) -> dict:
    blocks = re.findall(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


# --- embed -----------------------------------------------------------------------------------------


def test_embed_fragment_with_valid_json_ld(client, store, products, django_user_model):
    product = products["ACE-1"]
    for n, rating in enumerate([5, 4, 1]):
        services.review_submit(store=store, product=product, rating=rating, title=f"Título {n}",
                               text=f"Opinión {n} sobre el aceite de oliva", author=Author(display_name=f"Ana {n}",
                                                                                          device_id=f"device-emb-{n:03d}"))
    staff = django_user_model.objects.create_user("staff", password="x")
    question = services.question_ask(store=store, product=product, text="¿Es ecológico?")
    services.answer_post(store=store, question_id=question.id, text="Sí, certificado.", staff_user=staff)
    response = client.get(f"/embed/{store.slug}/products/ACE-1?lang=en")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "Verified buyer" not in html and "¿Es ecológico?" in html and "Sí, certificado." in html
    assert "Frequently asked questions" in html
    data = json_ld(html)
    assert data["@type"] == "Product" and data["sku"] == "ACE-1" and data["name"] == product.title
    assert data["aggregateRating"] == {"@type": "AggregateRating", "ratingValue": 3.33, "reviewCount": 3,
                                       "bestRating": 5, "worstRating": 1}
    assert len(data["review"]) == 3 and {r["@type"] for r in data["review"]} == {"Review"}
    assert data["review"][0]["reviewRating"]["ratingValue"] in (1, 4, 5)
    assert data["offers"]["priceCurrency"] == "EUR"
    spanish = client.get(f"/embed/{store.slug}/products/ACE-1", headers={"Accept-Language": "es"}).content.decode()
    assert "Preguntas frecuentes" in spanish


def test_embed_escapes_content_and_json_ld(client, store, products):
    services.review_submit(store=store, product=products["ACE-1"], rating=3, title=HOSTILE, text=HOSTILE,
                           author=Author(display_name="<b>yo</b>"))
    html = client.get(f"/embed/{store.slug}/products/ACE-1").content.decode()
    # Nothing from the review can open a tag or close the JSON-LD script.
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>yo</b>" not in html
    assert html.count("</script>") == 1
    data = json_ld(html)
    assert data["review"][0]["reviewBody"] == HOSTILE and data["review"][0]["author"]["name"] == "<b>yo</b>"


def test_json_ld_script_escapes_markup_characters():
    text = json_ld_script({"x": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"x": "</script><!-- & \u2028"}


def test_embed_etag_and_invalidation(client, store, products, monkeypatch, django_user_model):
    scripted_moderation(monkeypatch)
    first = client.get(f"/embed/{store.slug}/products/ACE-1")
    assert client.get(f"/embed/{store.slug}/products/ACE-1",
                      headers={"If-None-Match": first["ETag"]}).status_code == 304
    held = services.review_submit(store=store, product=products["ACE-1"], rating=2, text="Regular [hold:rudeness]")
    moderator = django_user_model.objects.create_user("mod", password="x")
    services.content_decide(store=store, content_type="review", ids=[held.id], action="approve", user=moderator)
    after = client.get(f"/embed/{store.slug}/products/ACE-1", headers={"If-None-Match": first["ETag"]})
    assert after.status_code == 200 and "Regular" in after.content.decode()


def test_embed_unknown_product(client, store, products):
    assert client.get(f"/embed/{store.slug}/products/NOPE").status_code == 404


def test_embed_cors_for_the_store(client, products):
    shop = store_create(slug="conweb", name="Con web", website_url="https://conweb.example")
    catalogue(shop)
    response = client.get("/embed/conweb/products/ACE-1", headers={"Origin": "https://conweb.example"})
    assert response["Access-Control-Allow-Origin"] == "https://conweb.example"
    assert "X-Frame-Options" not in response  # may be framed by the store's pages


# --- Google product review feed --------------------------------------------------------------------


def test_review_feed_is_well_formed_and_complete(client, store, other_store, products):
    order = delivered_order(store, email="lucia@example.com", skus=["ACE-1"], order_id="F-1")
    verified = services.review_submit(store=store, product=products["ACE-1"], rating=5, title="Muy bueno",
                                      text=HOSTILE, token=review_token(order), author=Author(display_name="Lucía"),
                                      language="es",
                                      photos=[image_bytes()])
    anonymous = services.review_submit(store=store, product=products["ACE-2"], rating=2, text="Flojo")
    catalogue(other_store)
    services.review_submit(store=other_store, product=catalogue(other_store)["ACE-1"], rating=1, text="de la otra tienda")
    response = client.get(f"/feeds/{store.slug}/product-reviews.xml")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/xml")
    root = ET.fromstring(response.content)  # noqa: S314 - our own output
    assert root.tag == "feed" and root.findtext("version") == "2.4"
    assert root.find("publisher/name").text == store.name
    reviews = root.findall("reviews/review")
    assert [int(r.findtext("review_id")) for r in reviews] == [verified.id, anonymous.id]
    first, second = reviews
    assert first.findtext("content") == HOSTILE and first.findtext("reviewer/name") == "Lucía"
    assert first.findtext("is_verified_purchase") == "true" and first.findtext("collection_method") == "post_fulfillment"
    assert first.find("ratings/overall").attrib == {"min": "1", "max": "5"} and first.findtext("ratings/overall") == "5"
    assert first.findtext("products/product/product_ids/skus/sku") == "ACE-1"
    assert first.findtext("products/product/product_url") == "https://tienda.example/p/ace-1"
    assert first.find("review_url").attrib["type"] == "group"
    assert first.findtext("reviewer_images/reviewer_image/url").startswith("http://testserver/ugc/photos/")
    assert second.find("reviewer/name").attrib == {"is_anonymous": "true"}
    # Element order as the schema's sequence requires.
    order_seen = [child.tag for child in first]
    expected = ["review_id", "reviewer", "is_verified_purchase", "is_incentivized_review", "review_timestamp", "title",
                "content", "review_language", "review_url", "reviewer_images", "ratings", "products", "collection_method"]
    assert order_seen == expected
    assert client.get("/feeds/nadie/product-reviews.xml").status_code == 404


# --- /widget.js ------------------------------------------------------------------------------------


def test_widget_script_with_caching_headers(client, db):
    response = client.get("/widget.js")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/javascript")
    assert "max-age" in response["Cache-Control"] and response["ETag"]
    assert response["Access-Control-Allow-Origin"] == "*"
    again = client.get("/widget.js", headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304 and again.content == b""


# --- the review form -------------------------------------------------------------------------------


def test_review_form_for_each_item_of_a_delivered_order(client, store, products):
    order = delivered_order(store, email="lucia@example.com", skus=["ACE-1", "ACE-2"], order_id="LT-100")
    token = review_token(order)
    page = client.get(f"/review/{token}")
    html = page.content.decode()
    assert page.status_code == 200 and "Aceite de oliva 1" in html and "Aceite de oliva 2" in html
    assert "¿Qué tal tu pedido" in html and 'value="Lucía G."' in html
    assert "Honest opinions" not in html
    english = client.get(f"/review/{token}?lang=en").content.decode()
    assert "How was your order" in english
    photo = io.BytesIO(image_bytes())
    photo.name = "a.jpg"
    response = client.post(f"/review/{token}", {
        "display_name": "Lucía", "rating-0": "5", "title-0": "Buenísimo", "text-0": "El mejor aceite que he probado",
        "photos-0": [photo], "rating-1": "", "text-1": "",
    })
    assert response.status_code == 200
    assert "¡Gracias! Ya está publicado." in response.content.decode()
    review = Review.objects.get(order=order)
    assert review.verified_buyer and review.rating == 5 and review.product.sku == "ACE-1" and review.photos.count() == 1
    # Sending again changes that review instead of adding one.
    client.post(f"/review/{token}", {"display_name": "Lucía", "rating-0": "3", "text-0": "Lo pensé mejor"})
    assert Review.objects.filter(order=order).count() == 1 and Review.objects.get(order=order).rating == 3


def test_review_form_shows_errors_and_saves_nothing_for_that_item(client, store, products):
    order = delivered_order(store, email="pepe@example.com", skus=["ACE-1"], order_id="LT-101")
    response = client.post(f"/review/{review_token(order)}", {"rating-0": "9", "text-0": ""})
    html = response.content.decode()
    assert response.status_code == 200 and "La valoración debe ser" in html and "obligatorio" in html
    assert not Review.objects.exists()


@pytest.mark.parametrize("token", ["forged", "x" * 3000, "a.b.c"])
def test_forged_review_link_gets_a_friendly_page(client, store, products, token):
    response = client.get(f"/review/{token}")
    assert response.status_code == 404 and "no longer works" in response.content.decode().replace("ya no funciona", "no longer works")


def test_expired_review_link(client, store, products):
    order = delivered_order(store, email="old@example.com", skus=["ACE-1"], order_id="LT-OLD")
    fifty_days_ago = datetime.now(UTC).timestamp() - 50 * 24 * 3600
    with mock.patch("django.core.signing.time.time", return_value=fifty_days_ago):
        stale = review_token(order)
    page = client.get(f"/review/{stale}")
    assert page.status_code == 404 and "45" in page.content.decode()
    assert client.get(f"/review/{review_token(order)}").status_code == 200


def test_review_form_for_an_order_not_yet_delivered(client, store, products):
    order = delivered_order(store, email="wait@example.com", skus=["ACE-1"], order_id="LT-102", delivered=False)
    response = client.get(f"/review/{review_token_make(store_id=store.pk, order_id=order.pk, customer_id=order.customer_id)}")
    assert response.status_code == 409 and "camino" in response.content.decode()


# --- the demo's community --------------------------------------------------------------------------


def test_demo_seed_has_reviews_questions_and_faq(db):
    from tertulia.ops.demo_data import demo_store_seed

    summary = demo_store_seed(now=datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    store = summary.store
    reviews = Review.objects.for_store(store)
    published = reviews.filter(status="published")
    assert published.count() > 100
    assert published.filter(rating__lte=2).exists(), "negative reviews are part of the demo"
    assert published.exclude(reply_text="").exists(), "some reviews have the store's reply"
    assert published.filter(verified_buyer=True).exists()
    assert Question.objects.for_store(store).filter(status="published").exists()
    assert Answer.objects.for_store(store).filter(by_staff=True).exists()
    from tertulia.ugc.selectors import faq_items

    with_faq = [q.product_id for q in Question.objects.for_store(store).filter(status="published")
                if faq_items(store_id=store.pk, product_id=q.product_id)]
    assert with_faq


def test_the_journeys_review_link_opens_this_form(client, store, products):
    from urllib.parse import urlsplit

    from tertulia.journeys.services import review_url_for

    order = delivered_order(store, email="link@example.com", skus=["ACE-2"], order_id="LT-J1")
    url = review_url_for(store_id=store.pk, order_id=order.pk, customer_id=order.customer_id)
    response = client.get(urlsplit(url).path)
    assert response.status_code == 200 and "Aceite de oliva 2" in response.content.decode()


def test_admin_lists_content_and_decides_through_the_service(client, store, products, monkeypatch, django_user_model):
    scripted_moderation(monkeypatch)
    held = services.review_submit(store=store, product=products["ACE-1"], rating=2, text="Regular [hold:rudeness]",
                                  author=Author(email="secret@example.com"))
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "x")
    client.force_login(admin_user)
    listing = client.get("/admin/ugc/review/")
    assert listing.status_code == 200 and "Regular" in listing.content.decode()
    detail = client.get(f"/admin/ugc/review/{held.id}/change/").content.decode()
    assert "secret@example.com" not in detail  # the author's address is never shown
    response = client.post("/admin/ugc/review/", {"action": "approve", "_selected_action": [held.id]})
    assert response.status_code == 302
    review = Review.objects.get(pk=held.id)
    assert review.status == "published" and review.decided_by == "root"
