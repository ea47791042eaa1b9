"""Listening and the inbox through the REST API: mentions, sources, terms, conversations, replies, notes, status."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from tertulia.channels.models import Delivery
from tertulia.core.services import api_key_create
from tertulia.inbox.models import Conversation
from tertulia.listening.connectors import Post
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import mentions_ingest, tracked_term_add
from tertulia.listening.sources import source_set

pytestmark = pytest.mark.django_db
FAKE = override_settings(TERTULIA_LISTENING_CONNECTORS={"mastodon": "listening_fake_connector"})


@pytest.fixture
def heard(store):
    matchers_forget()
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    with FAKE:
        source = source_set(store=store, network="mastodon", key="social", settings={}, secrets={"token": "t"})
        moment = timezone.now() - timedelta(minutes=5)
        mentions_ingest(store_id=store.pk, source_id=source.pk, posts=[
            Post(network="mastodon", external_id="1", text="¿Tertulia abre en Navidad?", posted_at=moment,
                 author_handle="eva@social.example", reply_ref={"visibility": "public"}),
            Post(network="mastodon", external_id="2", text="Tertulia, el peor servicio del mundo", posted_at=moment),
            Post(network="mastodon", external_id="3", text="Qué bien lo hace Tertulia", posted_at=moment),
        ])
        yield store


def test_mentions_are_listed_and_filtered(api, heard):
    everything = api.get("/api/v1/mentions").json()
    assert [m["external_id"] for m in everything["data"]] == ["1", "2", "3"]
    assert everything["data"][0]["intent"] == "question" and everything["data"][0]["source_key"] == "social"
    negative = api.get("/api/v1/mentions", sentiment="negative").json()["data"]
    assert [m["external_id"] for m in negative] == ["2"]
    page = api.get("/api/v1/mentions", limit=2).json()
    assert len(page["data"]) == 2 and api.get("/api/v1/mentions", cursor=page["next_cursor"]).json()["data"][0][
        "external_id"] == "3"
    assert api.get("/api/v1/mentions", q="navidad").json()["data"][0]["external_id"] == "1"
    assert api.get("/api/v1/mentions", sentiment="furious").status_code == 422
    assert api.get("/api/v1/mentions", since="2026-01-01T00:00:00").status_code == 422  # no time zone


def test_sources_show_health_never_secrets(api, heard):
    data = api.get("/api/v1/listening/sources").json()["data"]
    assert data[0]["key"] == "social" and data[0]["secrets_set"] == ["token"] and "t" not in data[0]["settings"]
    assert data[0]["health"]["status"] == "waiting"


def test_terms_are_managed(api, heard):
    made = api.post("/api/v1/listening/terms", {"term": "#navidad", "kind": "hashtag"})
    assert made.status_code == 201
    assert api.post("/api/v1/listening/terms", {"term": "#navidad", "kind": "hashtag"}).json()["id"] == made.json()["id"]
    assert api.post("/api/v1/listening/terms", {"term": "¿?", "kind": "keyword"}).status_code == 422
    assert api.post("/api/v1/listening/terms", {"term": "x", "kind": "color"}).status_code == 422
    assert api.delete(f"/api/v1/listening/terms/{made.json()['id']}").status_code == 204
    assert api.delete(f"/api/v1/listening/terms/{made.json()['id']}").status_code == 404


def test_conversations_are_answered_through_the_api(api, heard):
    listed = api.get("/api/v1/conversations", status="open").json()["data"]
    assert {c["subject"][:10] for c in listed} == {"¿Tertulia ", "Tertulia, "}  # the question and the complaint
    question = next(c for c in listed if c["intent"] == "question")
    reply = api.post(f"/api/v1/conversations/{question['id']}/replies", {"text": "Sí, hasta las 14:00."})
    assert reply.status_code == 201, reply.content
    assert reply.json()["author_name"] == "API (tests)" and reply.json()["delivery_status"] == "scheduled"
    delivery = Delivery.objects.get()
    assert (delivery.channel, delivery.reply_to, delivery.to_address) == ("mastodon", "1", "eva@social.example")
    note = api.post(f"/api/v1/conversations/{question['id']}/notes", {"text": "Horario de Navidad publicado"})
    assert note.status_code == 201 and note.json()["direction"] == "note"
    detail = api.get(f"/api/v1/conversations/{question['id']}").json()
    assert [m["direction"] for m in detail["messages"]] == ["inbound", "outbound", "note"]
    assert detail["status"] == "pending" and detail["first_response_at"] is not None

    resolved = api.post(f"/api/v1/conversations/{question['id']}/status", {"status": "resolved"})
    assert resolved.json()["status"] == "resolved"
    snooze = api.post(f"/api/v1/conversations/{question['id']}/status", {"status": "snoozed"})
    assert snooze.status_code == 422 and snooze.json()["error"]["details"][0]["field"] == "snoozed_until"
    assert api.post(f"/api/v1/conversations/{question['id']}/replies", {"text": ""}).status_code == 422


def test_read_only_keys_and_other_stores(client, heard, other_store):
    from conftest import ApiClient

    reader = ApiClient(client, api_key_create(store=heard, name="r", scope="read").secret)
    conversation = Conversation.objects.first()
    assert reader.get("/api/v1/conversations").status_code == 200
    assert reader.post(f"/api/v1/conversations/{conversation.pk}/replies", {"text": "x"}).status_code == 403
    stranger = ApiClient(client, api_key_create(store=other_store, name="o").secret)
    assert stranger.get(f"/api/v1/conversations/{conversation.pk}").status_code == 404
    assert stranger.get("/api/v1/mentions").json()["data"] == []


def test_response_times_per_agent_and_team(api, heard):
    question = Conversation.objects.get(intent="question")
    assert api.post(f"/api/v1/conversations/{question.pk}/replies", {"text": "Sí."}).status_code == 201
    rows = api.get("/api/v1/inbox/response-times", since="2020-01-01T00:00:00Z").json()["data"]
    assert sum(r["conversations"] for r in rows) == 2 and sum(r["answered"] for r in rows) == 1
    assert api.get("/api/v1/inbox/response-times", since="2020-01-01T00:00:00Z", by="tema").status_code == 422
    assert api.get("/api/v1/inbox/response-times", since="2020-01-01T00:00:00").status_code == 422
