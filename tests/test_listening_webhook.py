"""The inbound webhook connector: authentication, all-or-nothing validation, malformed bodies kept, replays once."""

import hashlib
import hmac

import orjson
import pytest

from tertulia.inbox.models import Conversation
from tertulia.listening.models import MalformedPayload, Mention, Source
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import tracked_term_add
from tertulia.listening.sources import source_set, source_webhook_token

pytestmark = pytest.mark.django_db
URL = "/webhooks/listening/tienda/foro"


@pytest.fixture
def token(store):
    matchers_forget()
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    source_set(store=store, network="webhook", key="foro", name="Foro de cocina")
    return source_webhook_token(store=store, key="foro")[1]


def send(client, body, token=None, **headers):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    if token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post(URL, data, content_type="application/json", **headers)


POSTS = {"posts": [
    {"id": 1, "text": "¿Alguien ha probado el aceite de Tertulia?", "created_at": "2026-12-01T10:00:00Z",
     "author": {"handle": "marta", "name": "Marta", "followers": 40}, "url": "https://foro.example/t/1"},
    {"id": "2", "text": "Receta de lentejas"},
]}


def test_posts_are_stored_once_and_replays_are_counted(client, token):
    first = send(client, POSTS, token)
    assert first.status_code == 200, first.content
    assert first.json() == {"accepted": 2, "stored": 1, "duplicates": 0, "ignored": 1}
    mention = Mention.objects.get()
    assert (mention.external_id, mention.author_followers, mention.intent) == ("foro:1", 40, "question")
    assert Conversation.objects.filter(network="webhook").count() == 1
    again = send(client, POSTS, token)
    assert again.json() == {"accepted": 2, "stored": 0, "duplicates": 1, "ignored": 1}
    source = Source.objects.get(key="foro")
    assert (source.posts_seen, source.mentions_stored, source.duplicates_seen) == (4, 1, 1)
    assert source.last_success_at is not None


def test_a_signed_body_is_accepted_instead_of_the_bearer_token(client, token):
    body = orjson.dumps({"id": "s1", "text": "Tertulia responde rápido"})
    signature = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    assert send(client, body, HTTP_X_TERTULIA_SIGNATURE=f"sha256={signature}").status_code == 200
    assert send(client, body, HTTP_X_TERTULIA_SIGNATURE="sha256=" + "0" * 64).status_code == 401


@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "Basic x"}])
def test_without_the_token_nothing_is_stored(client, token, headers):
    response = send(client, POSTS, **headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert not Mention.objects.exists() and not MalformedPayload.objects.exists()


def test_a_body_that_is_not_json_is_kept_for_inspection(client, token):
    response = send(client, b'{"posts": [{"id": 1, "text": "Tert', token)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    kept = MalformedPayload.objects.get()
    assert kept.raw == '{"posts": [{"id": 1, "text": "Tert' and kept.code == "invalid_json"
    assert Source.objects.get(key="foro").malformed_count == 1


def test_one_invalid_post_refuses_the_delivery_with_every_problem(client, token):
    body = {"posts": [{"id": "ok", "text": "Tertulia"}, {"text": 5, "kind": "tweet", "created_at": "ayer",
                                                        "author": {"followers": -1}}]}
    response = send(client, body, token)
    assert response.status_code == 422
    problems = {(d["index"], d["field"], d["code"]) for d in response.json()["error"]["details"]}
    assert problems == {(1, "id", "required"), (1, "text", "invalid_type"), (1, "kind", "invalid"),
                        (1, "created_at", "invalid_datetime"), (1, "author.followers", "invalid")}
    assert not Mention.objects.exists() and MalformedPayload.objects.get().code == "invalid_posts"


@pytest.mark.parametrize("body, code", [([], "empty"), ("text", "unexpected_shape"),
                                        ([{"id": str(i), "text": "x"} for i in range(1001)], "too_many")])
def test_shapes_that_are_not_posts_are_refused(client, token, body, code):
    response = send(client, body, token)
    assert response.status_code == 422 and response.json()["error"]["code"] == code


def test_unknown_sources_and_other_methods(client, token, other_store):
    assert client.post("/webhooks/listening/tienda/nada", b"{}", content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404
    assert client.post("/webhooks/listening/otra/foro", b"{}", content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404
    assert client.get(URL).status_code == 405


def test_nul_characters_are_dropped_not_a_server_error(client, token):
    response = send(client, {"id": "nul", "text": "Tertulia\u0000 responde", "author": {"name": "A\u0000na"}}, token)
    assert response.status_code == 200 and response.json()["stored"] == 1
    mention = Mention.objects.get()
    assert (mention.text, mention.author_name) == ("Tertulia responde", "Ana")
