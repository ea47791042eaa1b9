"""Dashboard listening through HTTP: mentions with filters, figures and the sentiment chart, alerts, connector
health, tracked terms, "open in inbox", roles and store isolation."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from tertulia.catalog.services import products_upsert
from tertulia.core.services import membership_grant
from tertulia.dashboard.selectors import day_start
from tertulia.inbox.models import Conversation, Message
from tertulia.listening.connectors import Post
from tertulia.listening.models import Alert, MalformedPayload, Mention, MentionHour, Source, TrackedTerm
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import (
    alert_open,
    mentions_ingest,
    tracked_term_add,
    tracked_terms_sync_catalogue,
)
from tertulia.listening.sources import source_set

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-staff-password"


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    matchers_forget()
    yield
    matchers_forget()


def member(store, role, name):
    user = get_user_model().objects.create_user(name, password=PASSWORD)
    membership_grant(store=store, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


def post(external_id, text, *, network="mastodon", kind="post", ago=timedelta(minutes=5), **extra):
    return Post(network=network, external_id=external_id, text=text, kind=kind,
                posted_at=timezone.now() - ago, **extra)


def shown(response) -> list[str]:
    """External ids of the mentions on the page, in order."""
    ids = [int(n) for n in re.findall(r'class="lst-item[^"]*"[^>]*data-mention="(\d+)"', response.content.decode())]
    by_id = dict(Mention.objects.filter(pk__in=ids).values_list("pk", "external_id"))
    return [by_id[i] for i in ids]


@pytest.fixture
def heard(store):
    products_upsert(store=store, products=[(timezone.now(), {"sku": "CAF-1", "title": "Café Tertulia Tueste Natural",
                                                             "url": "https://tienda.example/cafe"})])
    tracked_terms_sync_catalogue(store=store)
    tracked_term_add(store=store, term="La Tertulia", kind="brand")
    tracked_term_add(store=store, term="#tertuliashop", kind="hashtag")
    mentions_ingest(store_id=store.pk, posts=[
        post("m1", "¿Tenéis envíos a Canarias en La Tertulia?", author_handle="ana@social.example",
             author_name="Ana", author_followers=120, url="https://social.example/@ana/1"),
        post("m2", "Qué desastre de pedido, La Tertulia no contesta #tertuliashop", network="bluesky",
             author_handle="bea.bsky.social", ago=timedelta(hours=1), url="javascript:alert(1)"),
        post("m3", "Me encanta el Café Tertulia Tueste Natural, buenísimo", network="rss", ago=timedelta(days=3),
             title="Reseña <b>del café</b>", url="https://blog.example/cafe"),
        post("m4", "@tienda hola, una duda <script>window.__pwned=1</script>", kind="mention",
             author_handle="carla@social.example", ago=timedelta(days=10)),
        post("m5", "Nada que ver con nada", ago=timedelta(minutes=1)),  # names nothing tracked: not a mention
    ])
    return store


def test_pages_need_a_signed_in_member(client, store):
    for path in ("/app/listening/", "/app/listening/sources/", "/app/listening/terms/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/app/login/")
    response = client.post("/app/listening/terms/add/", {"term": "x", "kind": "keyword"})
    assert response.status_code == 302 and not TrackedTerm.objects.exists()


def test_mentions_newest_first_with_author_text_and_a_safe_link(store, heard):
    client = member(store, "analyst", "ana_lista")
    response = client.get("/app/listening/")
    assert response.status_code == 200
    assert shown(response) == ["m1", "m2", "m3", "m4"]
    body = response.content.decode()
    first = body[body.index('data-mention="'):]
    first = first[: first.index("</li>")]
    assert "ana@social.example" in first and "Ana" in first and "120" in first
    assert 'href="https://social.example/@ana/1"' in first
    m2 = Mention.objects.get(external_id="m2")
    row = body[body.index(f'data-mention="{m2.pk}"'):]
    row = row[: row.index("</li>")]
    assert "javascript:" not in row  # a URL that is not a web address is not linked
    assert "Bluesky" in row
    assert f'class="tag sentiment sentiment-{m2.sentiment}"' in row
    m3 = Mention.objects.get(external_id="m3")
    row = body[body.index(f'data-mention="{m3.pk}"'):]
    row = row[: row.index("</li>")]
    assert "Reseña &lt;b&gt;del café&lt;/b&gt;" in row
    product = m3.products.get()
    assert f'href="?product={product.pk}"' in row and 'href="https://tienda.example/cafe"' in row
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in body and "<script>window.__pwned" not in body


def test_every_filter_narrows_the_list(store, heard):
    client = member(store, "agent", "lucia")
    every = {m.external_id: m for m in Mention.objects.for_store(store)}
    assert shown(client.get("/app/listening/?network=bluesky")) == ["m2"]
    assert shown(client.get("/app/listening/?kind=mention")) == ["m4"]
    negative = [key for key in ("m1", "m2", "m3", "m4") if every[key].sentiment == "negative"]
    assert "m2" in negative
    assert shown(client.get("/app/listening/?sentiment=negative")) == negative
    question = [key for key in ("m1", "m2", "m3", "m4") if every[key].intent == "question"]
    assert "m1" in question
    assert shown(client.get("/app/listening/?intent=question")) == question
    product = every["m3"].products.get()
    assert shown(client.get(f"/app/listening/?product={product.pk}")) == ["m3"]
    assert shown(client.get("/app/listening/?term=%23tertuliashop")) == ["m2"]
    assert shown(client.get("/app/listening/?term=La+Tertulia")) == ["m1", "m2"]
    assert shown(client.get("/app/listening/?q=canarias")) == ["m1"]
    assert shown(client.get("/app/listening/?q=bea.bsky")) == ["m2"]
    today = timezone.localdate()
    assert shown(client.get(f"/app/listening/?from={today - timedelta(days=5)}")) == ["m1", "m2", "m3"]
    assert shown(client.get(f"/app/listening/?to={today - timedelta(days=5)}")) == ["m4"]
    assert shown(client.get(f"/app/listening/?from={today - timedelta(days=5)}&network=rss")) == ["m3"]
    # Unknown values are ignored, never trusted.
    assert shown(client.get("/app/listening/?network=<x>&sentiment=awful&from=yesterday")) == ["m1", "m2", "m3", "m4"]


def test_pages_of_mentions(store):
    tracked_term_add(store=store, term="tertulia", kind="brand")
    mentions_ingest(store_id=store.pk, posts=[post(f"p{n}", f"tertulia número {n}", ago=timedelta(minutes=n))
                                              for n in range(30)])
    client = member(store, "agent", "lucia")
    first = shown(client.get("/app/listening/?network=mastodon"))
    second = client.get("/app/listening/?network=mastodon&page=2")
    assert len(first) == 25 and shown(second) == [f"p{n}" for n in range(25, 30)]
    assert first[0] == "p0"
    assert 'href="?network=mastodon&amp;page=1"' in second.content.decode()


def test_figures_today_and_this_week_per_network_and_the_chart(store, heard):
    body = member(store, "agent", "lucia").get("/app/listening/").content.decode()
    hours = MentionHour.objects.for_store(store)
    week = sum(h.total for h in hours if h.hour >= timezone.now() - timedelta(days=7, hours=1))
    assert week == 3
    assert re.search(r'data-figure="week">3<', body)
    midnight = day_start(store=store, now=timezone.now())
    today = Mention.objects.for_store(store).filter(posted_at__gte=midnight).count()  # m2, an hour ago, may be yesterday
    assert re.search(rf'data-figure="today">{today}<', body)
    networks = body[body.index('class="card lst-networks"'):]
    networks = networks[: networks.index("</section>")]
    assert "Mastodon" in networks and "Bluesky" in networks and "RSS/Atom" in networks
    chart = body[body.index('<svg class="sentiment-chart"'):body.index("</svg>")]
    assert chart.count('<g class="day"') == 14
    assert sum(int(n) for n in re.findall(r'data-total="(\d+)"', chart)) == 4  # m4, ten days ago, too
    assert 'class="part-negative"' in chart


def test_open_in_inbox_uses_the_conversation_or_opens_one(store, heard):
    client = member(store, "agent", "lucia")
    m1, m3, m4 = (Mention.objects.get(external_id=key) for key in ("m1", "m3", "m4"))
    in_inbox = set(Message.objects.filter(mention__isnull=False).values_list("mention__external_id", flat=True))
    assert "m4" in in_inbox  # addressed to the store: a conversation from the start
    body = client.get("/app/listening/").content.decode()
    conversation = Message.objects.get(mention=m4).conversation
    assert f'href="/app/inbox/{conversation.pk}/" data-inbox' in body
    assert "m3" not in in_inbox  # praise heard through a term: not a conversation by the default rules
    assert f'action="/app/listening/mentions/{m3.pk}/inbox/"' in body
    response = client.post(f"/app/listening/mentions/{m3.pk}/inbox/")
    assert response.status_code == 302
    opened = Message.objects.get(mention=m3).conversation
    assert response["Location"] == f"/app/inbox/{opened.pk}/"
    assert client.post(f"/app/listening/mentions/{m3.pk}/inbox/")["Location"] == f"/app/inbox/{opened.pk}/"
    assert Conversation.objects.filter(pk=opened.pk).count() == 1
    assert Message.objects.filter(mention=m3).count() == 1
    reader = member(store, "analyst", "ana_lista")
    assert f'action="/app/listening/mentions/{m1.pk}/inbox/"' not in reader.get("/app/listening/").content.decode()
    assert reader.post(f"/app/listening/mentions/{m1.pk}/inbox/").status_code == 403


def test_alerts_are_listed_and_acknowledged_by_managers_only(store, heard):
    spike = alert_open(store_id=store.pk, kind="negative_spike", key="2026-05-01T10:00:00+00:00",
                       details={"hour": timezone.now().replace(minute=0, second=0, microsecond=0).isoformat(),
                                "negative": 12, "baseline": 0.5, "threshold": 5.0})
    source = Source.objects.create(store=store, network="mastodon", key="cuenta")
    down = alert_open(store_id=store.pk, kind="connector_down", key="source:1", source_id=source.pk, details={
        "source": "cuenta", "network": "mastodon", "failures": 5, "since": timezone.now().isoformat(),
        "code": "auth_failed", "error": "401 <b>The access token is invalid</b>"})
    agent = member(store, "agent", "lucia")
    body = agent.get("/app/listening/").content.decode()
    alerts = body[body.index('id="alerts"'):]
    alerts = alerts[: alerts.index("</section>")]
    assert f'data-alert="{spike.pk}"' in alerts and f'data-alert="{down.pk}"' in alerts
    assert "12" in alerts and "auth_failed" in alerts and "&lt;b&gt;The access token is invalid&lt;/b&gt;" in alerts
    assert "/acknowledge/" not in alerts
    assert re.search(r'data-badge="listening"[^>]*><span aria-hidden="true">2</span>', body)
    assert agent.post(f"/app/listening/alerts/{spike.pk}/acknowledge/").status_code == 403
    assert Alert.objects.get(pk=spike.pk).acknowledged_at is None
    manager = member(store, "community_manager", "carmen")
    response = manager.post(f"/app/listening/alerts/{spike.pk}/acknowledge/")
    assert response.status_code == 302
    spike.refresh_from_db()
    assert spike.acknowledged_by == "carmen" and spike.acknowledged_at is not None
    body = manager.get("/app/listening/").content.decode()
    assert "carmen" in body[body.index(f'data-alert="{spike.pk}"'):]
    assert re.search(r'data-badge="listening"[^>]*><span aria-hidden="true">1</span>', body)


def test_connector_health_shows_status_counts_errors_and_escaped_payloads(store):
    hook = source_set(store=store, network="webhook", key="formulario", name="Formulario web", secrets={"token": "t"})
    broken = Source.objects.create(
        store=store, network="mastodon", key="cuenta", consecutive_failures=7, failing_since=timezone.now(),
        last_error_code="auth_failed", last_error="401 The access token is invalid", last_error_at=timezone.now(),
        posts_seen=1234, mentions_stored=56, duplicates_seen=7, malformed_count=2, lag_seconds=7200,
        last_success_at=timezone.now() - timedelta(days=1))
    Source.objects.filter(pk=hook.pk).update(last_success_at=timezone.now(), posts_seen=3)
    Source.objects.create(store=store, network="rss", key="blog", enabled=False)
    for number in range(7):
        MalformedPayload.objects.create(store=store, source=broken, code="invalid_json", error=f"line {number}",
                                        raw=f'{{"n": {number}, "x": "<img src=x onerror=alert(1)>"}}',
                                        received_at=timezone.now() - timedelta(minutes=number))
    body = member(store, "moderator", "mod").get("/app/listening/sources/").content.decode()
    section = body[body.index('data-source="cuenta"'):]
    section = section[: section.index("</section>")]
    assert 'data-status="down"' in section and "auth_failed" in section and "401 The access token is invalid" in section
    assert re.search(r'data-count="posts_seen">1.234<', section)
    assert re.search(r'data-count="mentions_stored">56<', section) and re.search(r'data-count="duplicates_seen">7<', section)
    assert section.count('<div class="lst-payload">') == 5
    assert "line 0" in section and "line 5" not in section  # the newest five
    assert "&lt;img src=x onerror=alert(1)&gt;" in section and "<img" not in section
    assert "2 h" in section
    assert 'data-status="ok"' in body[body.index('data-source="formulario"'):]
    assert 'data-status="disabled"' in body[body.index('data-source="blog"'):]
    summary = member(store, "agent", "lucia").get("/app/listening/").content.decode()
    assert "health-down" in summary and "Formulario web" in summary


def test_terms_are_added_removed_and_synced_by_managers(store):
    products_upsert(store=store, products=[(timezone.now(), {"sku": "ACE-001", "title": "Aceite Picual"})])
    manager = member(store, "manager", "manu")
    response = manager.post("/app/listening/terms/add/", {"term": "Tertulia", "kind": "brand"})
    assert response.status_code == 302
    response = manager.post("/app/listening/terms/add/", {"term": "tarta de queso", "kind": "keyword", "exclude": "on"})
    assert response.status_code == 302
    terms = {(t.term, t.kind, t.exclude) for t in TrackedTerm.objects.for_store(store)}
    assert terms == {("Tertulia", "brand", False), ("tarta de queso", "keyword", True)}
    response = manager.post("/app/listening/terms/add/", {"term": "!!!", "kind": "keyword"})
    assert response.status_code == 422
    body = response.content.decode()
    assert 'id="term-text-error"' in body and 'value="!!!"' in body
    response = manager.post("/app/listening/terms/add/", {"term": "algo", "kind": "planet"})
    assert response.status_code == 422 and 'id="term-kind-error"' in response.content.decode()
    assert manager.post("/app/listening/terms/sync/").status_code == 302
    synced = TrackedTerm.objects.for_store(store).filter(product__isnull=False)
    assert {(t.term, t.kind) for t in synced} == {("Aceite Picual", "product"), ("ACE-001", "sku")}
    page = manager.get("/app/listening/terms/").content.decode()
    assert "Aceite Picual" in page and "tarta de queso" in page
    brand = TrackedTerm.objects.for_store(store).get(term="Tertulia")
    assert manager.post(f"/app/listening/terms/{brand.pk}/remove/").status_code == 302
    assert not TrackedTerm.objects.filter(pk=brand.pk).exists()

    agent = member(store, "agent", "lucia")
    page = agent.get("/app/listening/terms/").content.decode()
    assert "tarta de queso" in page and "/terms/add/" not in page and "/remove/" not in page
    assert agent.post("/app/listening/terms/add/", {"term": "nuevo", "kind": "keyword"}).status_code == 403
    excluded = TrackedTerm.objects.for_store(store).get(term="tarta de queso")
    assert agent.post(f"/app/listening/terms/{excluded.pk}/remove/").status_code == 403
    assert agent.post("/app/listening/terms/sync/").status_code == 403
    assert TrackedTerm.objects.for_store(store).count() == 3


def test_another_stores_listening_is_not_reachable(store, other_store, heard):
    tracked_term_add(store=other_store, term="Secreto", kind="brand")
    mentions_ingest(store_id=other_store.pk, posts=[post("o1", "Secreto de la otra tienda")])
    theirs = Mention.objects.for_store(other_store).get()
    their_term = TrackedTerm.objects.for_store(other_store).get()
    their_alert = alert_open(store_id=other_store.pk, kind="negative_spike", key="k", details={"negative": 9})
    Source.objects.create(store=other_store, network="rss", key="ajeno")
    client = member(store, "owner", "olga")
    assert "o1" not in shown(client.get("/app/listening/"))
    assert "Secreto" not in client.get("/app/listening/terms/").content.decode()
    assert "ajeno" not in client.get("/app/listening/sources/").content.decode()
    assert client.post(f"/app/listening/mentions/{theirs.pk}/inbox/").status_code == 404
    assert client.post(f"/app/listening/alerts/{their_alert.pk}/acknowledge/").status_code == 404
    assert client.post(f"/app/listening/terms/{their_term.pk}/remove/").status_code == 404
    assert TrackedTerm.objects.filter(pk=their_term.pk).exists()
    assert Alert.objects.get(pk=their_alert.pk).acknowledged_at is None
