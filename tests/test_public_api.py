"""The public community API over HTTP: reads with sorts, filters and cursors, submissions and their
errors, replays, CORS, rate limits, ETag/304 and invalidation on a decision, photos, store isolation."""

import io

import orjson
import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image
from ugc_support import catalogue, delivered_order, image_bytes, review_token, scripted_moderation

from tertulia.core.services import store_create
from tertulia.ugc import services
from tertulia.ugc.models import Question, Review, ReviewPhoto, Vote
from tertulia.ugc.services import Author

pytestmark = pytest.mark.django_db
BASE = "/api/v1/public"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Ids and versions repeat between tests (rolled back), so cached pages must not outlive a test.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def shop(db):
    store = store_create(slug="tienda", name="Tienda de prueba", website_url="https://tienda.example/inicio")
    return store


@pytest.fixture
def products(shop):
    return catalogue(shop)


def post(client, path, body, **headers):
    return client.post(BASE + path, orjson.dumps(body), content_type="application/json", headers=headers)


def error(response):
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    for detail in body["error"]["details"]:
        assert {"field", "code", "message"} <= set(detail)
    return body["error"]


def fields(response):
    return {(d["field"], d["code"]) for d in error(response)["details"]}


def seed_reviews(shop, product, ratings):
    return [services.review_submit(store=shop, product=product, rating=r, text=f"Opinión número {n} sobre el aceite",
                                   author=Author(display_name=f"Cliente {n}", device_id=f"device-seed-{n:04d}")).id
            for n, r in enumerate(ratings)]


# --- reads -----------------------------------------------------------------------------------------


def test_reviews_shape_and_aggregate(client, shop, products):
    seed_reviews(shop, products["ACE-1"], [5, 4, 4, 1])
    response = client.get(f"{BASE}/tienda/products/ACE-1/reviews")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["product"] == {"sku": "ACE-1", "name": "Aceite de oliva 1", "url": "https://tienda.example/p/ace-1"}
    assert body["aggregate"] == {"average": 3.5, "count": 4, "histogram": {"1": 1, "2": 0, "3": 0, "4": 2, "5": 1}}
    item = body["items"][0]
    assert set(item) == {"id", "rating", "title", "text", "author", "verified", "language", "created_at", "photos",
                         "helpful", "reply"}
    assert item["author"] == "Cliente 3" and item["reply"] is None and item["created_at"].endswith("Z")
    assert body["next"] is None


@pytest.mark.parametrize(("query", "expected"), [
    ("sort=highest", [5, 4, 4, 3, 2, 1]),
    ("sort=lowest", [1, 2, 3, 4, 4, 5]),
    ("rating=4", [4, 4]),
])
def test_sorts_and_rating_filter(client, shop, products, query, expected):
    seed_reviews(shop, products["ACE-1"], [3, 5, 1, 4, 2, 4])
    body = client.get(f"{BASE}/tienda/products/ACE-1/reviews?{query}").json()
    assert [i["rating"] for i in body["items"]] == expected


def test_helpful_sort_and_oldest(client, shop, products):
    ids = seed_reviews(shop, products["ACE-1"], [3, 3, 3])
    for n in range(2):
        services.vote_cast(store=shop, content_type="review", object_id=ids[1], device_id=f"device-vote-{n:03d}")
    assert client.get(f"{BASE}/tienda/products/ACE-1/reviews?sort=helpful").json()["items"][0]["id"] == ids[1]
    assert [i["id"] for i in client.get(f"{BASE}/tienda/products/ACE-1/reviews?sort=oldest").json()["items"]] == ids


@pytest.mark.parametrize("sort", ["newest", "oldest", "highest", "lowest", "helpful"])
def test_cursor_walks_every_review_once(client, shop, products, sort):
    ids = seed_reviews(shop, products["ACE-1"], [1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 3])
    seen, cursor = [], None
    while True:
        query = f"sort={sort}&limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(f"{BASE}/tienda/products/ACE-1/reviews?{query}").json()
        seen += [i["id"] for i in body["items"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(ids)


@pytest.mark.parametrize(("query", "status", "field"), [
    ("sort=random", 422, "sort"),
    ("rating=9", 422, "rating"),
    ("rating=abc", 422, "rating"),
    ("limit=0", 422, "limit"),
    ("limit=500", 422, "limit"),
    ("cursor=not-a-cursor", 400, "cursor"),
    ("cursor=eyJzIjoib2xkZXN0IiwiayI6WzFdfQ", 400, "cursor"),  # a cursor of another sort
])
def test_bad_read_parameters(client, shop, products, query, status, field):
    response = client.get(f"{BASE}/tienda/products/ACE-1/reviews?{query}")
    assert response.status_code == status
    assert field in {d["field"] for d in error(response)["details"]}


def test_unknown_store_or_product_is_404_in_the_error_shape(client, shop, products):
    for path in ("/nadie/products/ACE-1/reviews", "/tienda/products/NOPE/reviews", "/tienda/products/NOPE/faq"):
        response = client.get(BASE + path)
        assert response.status_code == 404 and error(response)["code"] == "not_found"


def test_only_published_reviews_are_shown(client, shop, products, monkeypatch):
    scripted_moderation(monkeypatch)
    services.review_submit(store=shop, product=products["ACE-1"], rating=5, text="retenida [hold:promotional]")
    services.review_submit(store=shop, product=products["ACE-1"], rating=5, text="rechazada [reject:insult]")
    body = client.get(f"{BASE}/tienda/products/ACE-1/reviews").json()
    assert body["items"] == [] and body["aggregate"]["count"] == 0


def test_questions_and_faq(client, shop, products, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="x")
    question = services.question_ask(store=shop, product=products["ACE-1"], text="¿Pica mucho?")
    answer = services.answer_post(store=shop, question_id=question.id, text="Un poco, al final.", staff_user=staff)
    body = client.get(f"{BASE}/tienda/products/ACE-1/questions").json()
    assert body["items"][0]["id"] == question.id
    assert body["items"][0]["answers"][0] == {
        "id": answer.id, "text": "Un poco, al final.", "author": "Tienda de prueba", "by_staff": True,
        "verified_buyer": False, "helpful": 0, "created_at": body["items"][0]["answers"][0]["created_at"]}
    faq = client.get(f"{BASE}/tienda/products/ACE-1/faq").json()
    assert faq["items"][0]["question_id"] == question.id and faq["items"][0]["answer"] == "Un poco, al final."
    assert faq["items"][0]["question"] == "¿Pica mucho?"


# --- writes ----------------------------------------------------------------------------------------


def test_post_review_and_see_it(client, shop, products):
    response = post(client, "/tienda/products/ACE-1/reviews",
                    {"rating": 2, "title": "Regular", "text": "Llegó tarde, pero el aceite está bien.",
                     "display_name": "Ana", "email": "ana@example.com", "language": "es", "device_id": "device-ana-01"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "status", "reasons", "message"} and body["status"] == "published"
    assert body["message"].startswith("¡Gracias!")
    listed = client.get(f"{BASE}/tienda/products/ACE-1/reviews").json()
    assert listed["items"][0]["id"] == body["id"] and "email" not in listed["items"][0]
    assert "ana@example.com" not in client.get(f"{BASE}/tienda/products/ACE-1/reviews").content.decode()


def test_message_in_the_requests_language(client, shop, products):
    response = client.post(f"{BASE}/tienda/products/ACE-1/reviews", orjson.dumps({"rating": 5, "text": "Great oil"}),
                           content_type="application/json", headers={"Accept-Language": "en"})
    assert response.json()["message"] == "Thank you! It is published."


@pytest.mark.parametrize(("body", "expected"), [
    ({"rating": 7, "text": "x"}, ("rating", "out_of_range")),
    ({"rating": "five", "text": "x"}, ("rating", "out_of_range")),
    ({"rating": 4}, ("text", "required")),
    ({"rating": 4, "text": "x", "colour": "red"}, ("colour", "unknown_field")),
    ({"rating": 4, "text": "x", "email": "no"}, ("email", "invalid_email")),
    ({"rating": 4, "text": "x", "token": "made-up"}, ("token", "invalid_token")),
    ({"rating": 4, "text": ["a", "list"]}, ("text", "invalid_type")),
])
def test_bad_review_bodies_are_422_and_store_nothing(client, shop, products, body, expected):
    response = post(client, "/tienda/products/ACE-1/reviews", body)
    assert response.status_code == 422
    assert expected in fields(response)
    assert not Review.objects.exists()


def test_malformed_bodies(client, shop, products):
    bad_json = client.post(f"{BASE}/tienda/products/ACE-1/reviews", b"{nope", content_type="application/json")
    assert bad_json.status_code == 400 and error(bad_json)["code"] == "invalid_json"
    not_object = post(client, "/tienda/products/ACE-1/reviews", [1, 2])
    assert not_object.status_code == 422
    text = client.post(f"{BASE}/tienda/products/ACE-1/reviews", b"rating=5", content_type="text/plain")
    assert text.status_code == 415
    form = client.post(f"{BASE}/tienda/products/ACE-1/questions", {"text": "hola"})  # multipart to a JSON endpoint
    assert form.status_code == 415
    broken = client.post(f"{BASE}/tienda/products/ACE-1/reviews", b"--nope\r\ngarbage",
                         content_type="multipart/form-data; boundary=")
    assert broken.status_code == 400 and error(broken)["code"] == "invalid_multipart"
    assert not Review.objects.exists() and not Question.objects.exists()


def test_photos_by_multipart(client, shop, products):
    photo = io.BytesIO(image_bytes(exif_gps=True))
    photo.name = "camara.jpg"
    response = client.post(f"{BASE}/tienda/products/ACE-1/reviews",
                           {"rating": "5", "text": "Mirad qué color", "photos": [photo]})
    assert response.status_code == 201, response.content
    listed = client.get(f"{BASE}/tienda/products/ACE-1/reviews").json()["items"][0]
    assert len(listed["photos"]) == 1 and listed["photos"][0]["url"].startswith("http://testserver/ugc/photos/")
    served = client.get(listed["photos"][0]["url"].removeprefix("http://testserver"))
    assert served.status_code == 200 and served["Content-Type"] == "image/jpeg"
    data = b"".join(served.streaming_content)
    assert b"SpyCam" not in data and b"Exif" not in data
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_bad_photo_type_refused(client, shop, products):
    fake = io.BytesIO(b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")
    fake.name = "foto.jpg"
    gif = io.BytesIO(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    gif.name = "foto.gif"
    response = client.post(f"{BASE}/tienda/products/ACE-1/reviews", {"rating": "5", "text": "x", "photos": [fake, gif]})
    assert response.status_code == 422
    assert {("photos[0]", "unsupported_type"), ("photos[1]", "unsupported_type")} <= fields(response)
    assert not Review.objects.exists() and not ReviewPhoto.objects.exists()


def test_photo_of_a_held_review_is_not_public(client, shop, products, monkeypatch):
    scripted_moderation(monkeypatch)
    result = services.review_submit(store=shop, product=products["ACE-1"], rating=5, text="x [hold:promotional]",
                                    photos=[image_bytes()])
    photo = ReviewPhoto.objects.get(review_id=result.id)
    assert client.get(f"/ugc/photos/{photo.key}.jpg").status_code == 404


def test_replayed_post_is_stored_once(client, shop, products):
    body = {"rating": 4, "text": "Repito por si acaso", "device_id": "device-retry-1"}
    first = post(client, "/tienda/products/ACE-1/reviews", body, **{"Idempotency-Key": "abc-123"})
    again = post(client, "/tienda/products/ACE-1/reviews", body, **{"Idempotency-Key": "abc-123"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    # Without a key: the same content from the same device seconds later is the same review.
    third = post(client, "/tienda/products/ACE-1/reviews", body)
    assert third.json()["id"] == first.json()["id"]
    assert Review.objects.count() == 1
    bad_key = post(client, "/tienda/products/ACE-1/reviews", body, **{"Idempotency-Key": "spaces are bad"})
    assert bad_key.status_code == 422


def test_verified_buyer_through_the_api(client, shop, products):
    order = delivered_order(shop, email="lucia@example.com", skus=["ACE-1"], order_id="LT-55")
    response = post(client, "/tienda/products/ACE-1/reviews",
                    {"rating": 5, "text": "Llegó perfecto", "token": review_token(order)})
    assert response.status_code == 201
    assert client.get(f"{BASE}/tienda/products/ACE-1/reviews").json()["items"][0]["verified"] is True
    edited = post(client, "/tienda/products/ACE-1/reviews", {"rating": 4, "text": "Cambio", "token": review_token(order)})
    assert edited.status_code == 200 and edited.json()["id"] == response.json()["id"]


def test_questions_answers_votes_flags(client, shop, products):
    question = post(client, "/tienda/products/ACE-1/questions", {"text": "¿Es apto para celíacos?"})
    assert question.status_code == 201
    qid = question.json()["id"]
    answer = post(client, f"/tienda/questions/{qid}/answers", {"text": "Sí, el aceite no lleva gluten."})
    assert answer.status_code == 201
    aid = answer.json()["id"]
    vote = post(client, f"/tienda/answers/{aid}/votes", {"device_id": "device-voter-01"})
    assert vote.status_code == 201 and vote.json() == {"helpful": 1, "counted": True}
    again = post(client, f"/tienda/answers/{aid}/votes", {"device_id": "device-voter-01"})
    assert again.status_code == 200 and again.json()["counted"] is False
    assert Vote.objects.count() == 1
    missing = post(client, f"/tienda/answers/{aid}/votes", {})
    assert missing.status_code == 422
    flag = post(client, f"/tienda/questions/{qid}/flags", {"reason": "spam", "device_id": "device-flag-01"})
    assert flag.status_code == 201 and flag.json()["counted"] is True
    bad_reason = post(client, f"/tienda/questions/{qid}/flags", {"reason": "meh"})
    assert bad_reason.status_code == 422 and ("reason", "invalid_choice") in fields(bad_reason)
    not_votable = post(client, f"/tienda/questions/{qid}/votes", {"device_id": "device-voter-01"})
    assert not_votable.status_code == 422
    unknown = post(client, "/tienda/reviews/999999/votes", {"device_id": "device-voter-01"})
    assert unknown.status_code == 404 and error(unknown)["code"] == "not_found"
    faq = client.get(f"{BASE}/tienda/products/ACE-1/faq").json()["items"]
    assert faq and faq[0]["answer_id"] == aid


def test_comments_testimonials_forum(client, shop, products):
    root = post(client, "/tienda/products/ACE-1/comments", {"text": "¿Alguien lo usa para repostería?"})
    reply = post(client, "/tienda/products/ACE-1/comments", {"text": "Yo, para bizcochos.", "parent_id": root.json()["id"]})
    assert reply.status_code == 201
    tree = client.get(f"{BASE}/tienda/products/ACE-1/comments").json()["items"]
    assert tree[0]["replies"][0]["text"] == "Yo, para bizcochos."
    bad_parent = post(client, "/tienda/products/ACE-1/comments", {"text": "x", "parent_id": "abc"})
    assert bad_parent.status_code == 422
    testimonial = post(client, "/tienda/testimonials", {"text": "Muy buena atención.", "rating": 5})
    assert testimonial.status_code == 201
    listed = client.get(f"{BASE}/tienda/testimonials")
    assert listed.json()["items"][0]["rating"] == 5
    assert client.get(f"{BASE}/tienda/testimonials", headers={"If-None-Match": listed["ETag"]}).status_code == 304
    thread = post(client, "/tienda/forum/categories/aceites/threads", {"title": "Conservación", "text": "¿Nevera sí o no?"})
    assert thread.status_code == 201
    tid = thread.json()["id"]
    assert post(client, f"/tienda/forum/threads/{tid}/posts", {"text": "Nunca en la nevera."}).status_code == 201
    threads = client.get(f"{BASE}/tienda/forum/categories/aceites/threads").json()
    assert threads["items"][0]["posts"] == 1
    detail = client.get(f"{BASE}/tienda/forum/threads/{tid}").json()
    assert detail["items"][0]["text"] == "Nunca en la nevera."
    assert client.get(f"{BASE}/tienda/forum/categories/nada/threads").status_code == 404


# --- CORS ------------------------------------------------------------------------------------------


def test_preflight_for_the_stores_origins(client, shop, products, settings):
    settings.TERTULIA_UGC_CORS_ORIGINS = ["https://partner.example"]
    services.store_origin_add(store=shop, origin="https://shop.tienda.example/")
    for origin in ("https://tienda.example", "https://shop.tienda.example", "https://partner.example"):
        response = client.options(f"{BASE}/tienda/products/ACE-1/reviews",
                                  headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                           "Access-Control-Request-Headers": "content-type"})
        assert response.status_code == 204
        assert response["Access-Control-Allow-Origin"] == origin
        assert "POST" in response["Access-Control-Allow-Methods"]
        assert "Content-Type" in response["Access-Control-Allow-Headers"]
    evil = client.options(f"{BASE}/tienda/products/ACE-1/reviews",
                          headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert evil.status_code == 204 and "Access-Control-Allow-Origin" not in evil


def test_cors_on_reads_and_writes(client, shop, products):
    allowed = client.get(f"{BASE}/tienda/products/ACE-1/reviews", headers={"Origin": "https://tienda.example"})
    assert allowed["Access-Control-Allow-Origin"] == "https://tienda.example" and "Origin" in allowed["Vary"]
    assert "ETag" in allowed["Access-Control-Expose-Headers"]
    foreign_read = client.get(f"{BASE}/tienda/products/ACE-1/reviews", headers={"Origin": "https://evil.example"})
    assert foreign_read.status_code == 200 and "Access-Control-Allow-Origin" not in foreign_read
    # A page elsewhere could post a multipart form without a preflight: refused, nothing stored.
    foreign_write = client.post(f"{BASE}/tienda/products/ACE-1/reviews", {"rating": "5", "text": "spam"},
                                headers={"Origin": "https://evil.example"})
    assert foreign_write.status_code == 403 and error(foreign_write)["code"] == "origin_not_allowed"
    assert not Review.objects.exists()
    own = post(client, "/tienda/products/ACE-1/reviews", {"rating": 5, "text": "desde la tienda"},
               Origin="https://tienda.example")
    assert own.status_code == 201 and own["Access-Control-Allow-Origin"] == "https://tienda.example"
    # Tertulia's own pages (the demo's sample shop) are always allowed.
    assert post(client, "/tienda/products/ACE-1/questions", {"text": "¿Y en lata?"},
                Origin="http://testserver").status_code == 201
    # Errors carry the CORS headers too, so the widget can read them.
    bad = post(client, "/tienda/products/ACE-1/reviews", {"rating": 9, "text": "x"}, Origin="https://tienda.example")
    assert bad.status_code == 422 and bad["Access-Control-Allow-Origin"] == "https://tienda.example"


# --- rate limits -----------------------------------------------------------------------------------


def test_rate_limit_per_identity_and_per_address(client, shop, products, settings):
    settings.TERTULIA_UGC_RATE_LIMITS = {"submit": (4, 2, 600), "react": (100, 100, 600)}
    for n in range(2):
        assert post(client, "/tienda/products/ACE-1/questions",
                    {"text": f"Pregunta {n}", "device_id": "device-spam-01"}).status_code == 201
    limited = post(client, "/tienda/products/ACE-1/questions", {"text": "Otra", "device_id": "device-spam-01"})
    assert limited.status_code == 429 and error(limited)["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 600
    # Another identity from the same address gets one more (the address allows four, refusals count)...
    assert post(client, "/tienda/products/ACE-1/questions",
                {"text": "Pregunta nueva", "device_id": "device-else-01"}).status_code == 201
    # ...then the address itself is over its limit, whoever asks.
    assert post(client, "/tienda/products/ACE-1/questions",
                {"text": "Y otra", "device_id": "device-else-02"}).status_code == 429
    # Another address is counted on its own.
    elsewhere = client.post(f"{BASE}/tienda/products/ACE-1/questions", orjson.dumps({"text": "Hola"}),
                            content_type="application/json", REMOTE_ADDR="198.51.100.20")
    assert elsewhere.status_code == 201
    assert Question.objects.count() == 4


# --- ETag, 304 and invalidation --------------------------------------------------------------------


def test_etag_304_and_a_decision_shows_at_once(client, shop, products, monkeypatch, django_user_model):
    scripted_moderation(monkeypatch)
    seed_reviews(shop, products["ACE-1"], [5])
    first = client.get(f"{BASE}/tienda/products/ACE-1/reviews")
    etag = first["ETag"]
    assert first["Cache-Control"] == "public, no-cache"
    not_modified = client.get(f"{BASE}/tienda/products/ACE-1/reviews", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified["ETag"] == etag and not_modified.content == b""
    held = services.review_submit(store=shop, product=products["ACE-1"], rating=1, text="Fatal [hold:rudeness]")
    # A held review changes no public content, but the version moved: clients revalidate and get a 200.
    assert client.get(f"{BASE}/tienda/products/ACE-1/reviews", headers={"If-None-Match": etag}).status_code == 200
    cached = client.get(f"{BASE}/tienda/products/ACE-1/reviews")
    assert cached.json()["aggregate"]["count"] == 1
    moderator = django_user_model.objects.create_user("mod", password="x")
    assert services.content_decide(store=shop, content_type="review", ids=[held.id], action="approve", user=moderator) == 1
    after = client.get(f"{BASE}/tienda/products/ACE-1/reviews", headers={"If-None-Match": cached["ETag"]})
    assert after.status_code == 200 and after["ETag"] != cached["ETag"]
    assert after.json()["aggregate"] == {"average": 3.0, "count": 2, "histogram": {"1": 1, "2": 0, "3": 0, "4": 0, "5": 1}}


def test_each_query_has_its_own_etag(client, shop, products):
    seed_reviews(shop, products["ACE-1"], [5, 1])
    a = client.get(f"{BASE}/tienda/products/ACE-1/reviews?rating=5")
    b = client.get(f"{BASE}/tienda/products/ACE-1/reviews?rating=1")
    assert a["ETag"] != b["ETag"]
    assert client.get(f"{BASE}/tienda/products/ACE-1/reviews?rating=1", headers={"If-None-Match": a["ETag"]}).status_code == 200


# --- store isolation -------------------------------------------------------------------------------


def test_stores_are_isolated(client, shop, products):
    other = store_create(slug="otra", name="Otra tienda")
    catalogue(other)
    mine = seed_reviews(shop, products["ACE-1"], [5])[0]
    assert client.get(f"{BASE}/otra/products/ACE-1/reviews").json()["items"] == []
    assert post(client, f"/otra/reviews/{mine}/votes", {"device_id": "device-x-0001"}).status_code == 404
    assert post(client, f"/otra/reviews/{mine}/flags", {"reason": "spam"}).status_code == 404
    question = services.question_ask(store=shop, product=products["ACE-1"], text="¿Cuánto pesa?")
    assert post(client, f"/otra/questions/{question.id}/answers", {"text": "Medio kilo"}).status_code == 404
    order = delivered_order(shop, email="a@example.com", skus=["ACE-1"], order_id="ISO-1")
    foreign_token = post(client, "/otra/products/ACE-1/reviews", {"rating": 5, "text": "x", "token": review_token(order)})
    assert foreign_token.status_code == 422 and ("token", "invalid_token") in fields(foreign_token)


def test_openapi_document(client, shop):
    document = client.get(f"{BASE}/openapi.json").json()
    assert "/api/v1/public/{store}/products/{sku}/reviews" in document["paths"]
    post_doc = document["paths"]["/api/v1/public/{store}/products/{sku}/reviews"]["post"]
    assert "multipart/form-data" in post_doc["requestBody"]["content"]


# --- no input makes it fail -------------------------------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=6)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["rating", "title", "text", "display_name", "email", "device_id",
                                             "language", "token", "parent_id", "reason", "x"]), _json, max_size=6))
def test_any_json_body_gets_an_answer_not_a_500(client, shop, products, body):
    cache.clear()
    for path in ("/tienda/products/ACE-1/reviews", "/tienda/products/ACE-1/questions",
                 "/tienda/products/ACE-1/comments", "/tienda/testimonials"):
        response = post(client, path, body)
        assert response.status_code in (200, 201, 400, 404, 422), (path, body, response.content)
        if response.status_code >= 400:
            error(response)
