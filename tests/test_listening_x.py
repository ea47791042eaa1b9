"""The X connector (tweepy) and its reply adapter against the X sandbox over real HTTP, replaying recorded tweets."""

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from tertulia.channels.adapters.x import XReplyAdapter
from tertulia.channels.base import OutboundMessage, PermanentSendError, TransientSendError
from tertulia.channels.dispatch import dispatch_run
from tertulia.channels.models import Delivery
from tertulia.channels.registry import adapters_forget
from tertulia.core.errors import ApiError
from tertulia.core.services import membership_grant
from tertulia.inbox.models import Conversation, Message
from tertulia.inbox.services import reply_send
from tertulia.listening.connectors import SourceConfig
from tertulia.listening.connectors import x as x_connector
from tertulia.listening.models import Alert, MalformedPayload, Mention, Source
from tertulia.listening.runner import listen_once
from tertulia.listening.sandbox.x import CREDENTIALS, XSandbox, snowflake_time
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import tracked_term_add
from tertulia.listening.sources import source_set

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).parent / "fixtures" / "social" / "x"
APP_ONLY = {"bearer_token": CREDENTIALS["bearer_token"]}
OAUTH1 = {k: CREDENTIALS[k] for k in ("bearer_token", "consumer_key", "consumer_secret", "access_token",
                                      "access_token_secret")}
OAUTH2_USER = {k: CREDENTIALS[k] for k in ("bearer_token", "user_access_token")}


def recorded(name: str) -> list[dict]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _fresh_caches():
    adapters_forget()
    matchers_forget()
    yield
    adapters_forget()
    matchers_forget()


@pytest.fixture
def x():
    with XSandbox(heartbeat_seconds=0.05) as sandbox:
        yield sandbox


def x_source(store, sandbox, *, secrets=None, key="x", **settings) -> Source:
    return source_set(store=store, network="x", key=key, settings={"api_base_url": sandbox.base_url, **settings},
                      secrets=dict(OAUTH1 if secrets is None else secrets))


def run_now(source: Source) -> Source:
    """One session of the source, due now whatever its schedule says."""
    Source.objects.filter(pk=source.pk).update(next_run_at=timezone.now())
    listen_once(worker="t")
    return Source.objects.get(pk=source.pk)


def replay_recorded_search(sandbox: XSandbox) -> list[dict]:
    tweets = recorded("search_recent_tweets")[0]["response_json"]["data"]
    for tweet in reversed(tweets):
        sandbox.add_tweet(tweet["text"], id=tweet["id"], author="tweepy_bot", lang="en")
    return tweets


def requests_to(sandbox: XSandbox, route: str) -> list[dict]:
    return [r for r in sandbox.requests if r["route"] == route]


def in_thread(work) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


# --- the sandbox speaks what X recorded -------------------------------------------------------------


def test_sandbox_answers_in_the_shapes_x_recorded(x):
    search = recorded("search_recent_tweets")[0]
    replay_recorded_search(x)
    x.add_tweet("an older tweepy tweet", id=1578511000000000000, author="tweepy_bot", lang="en")  # one more page
    answer = requests.get(f"{x.base_url}/2/tweets/search/recent", params={"query": "Tweepy"}, timeout=5,
                          headers={"Authorization": f"Bearer {CREDENTIALS['bearer_token']}"})
    body = answer.json()
    assert answer.status_code == 200 and body["data"] == search["response_json"]["data"]
    assert set(body["meta"]) == set(search["response_json"]["meta"])
    assert {k: body["meta"][k] for k in ("newest_id", "oldest_id", "result_count")} == \
        {k: search["response_json"]["meta"][k] for k in ("newest_id", "oldest_id", "result_count")}
    assert {"x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"} <= set(answer.headers)

    mentions = recorded("get_users_mentions")[0]
    x.add_user("Twitter", id="783214")
    for tweet in reversed(mentions["response_json"]["data"]):
        x.add_tweet(tweet["text"], id=tweet["id"], author="someone", lang="en")
    answer = requests.get(f"{x.base_url}/2/users/783214/mentions", timeout=5,
                          headers={"Authorization": f"Bearer {CREDENTIALS['bearer_token']}"})
    assert answer.json()["data"] == mentions["response_json"]["data"]
    assert list(answer.json()["meta"]) == [k for k in mentions["response_json"]["meta"] if k != "next_token"]

    unauthenticated = requests.get(f"{x.base_url}/2/tweets/search/recent", params={"query": "a"}, timeout=5)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json() == {"title": "Unauthorized", "detail": "Unauthorized", "type": "about:blank",
                                      "status": 401}


def test_posting_answers_like_the_recorded_create(x, store):
    created = recorded("create_and_delete_tweet")[0]
    adapter = XReplyAdapter(api_base_url=x.base_url, secrets=OAUTH1)
    target = x.add_tweet("¿Abrís el domingo?", author="luis")
    result = adapter.send(OutboundMessage(delivery_id=1, store_id=store.pk, channel="x", to="luis",
                                          text="Sí, de 10 a 14.", in_reply_to=target["id"]))
    [posted] = x.posted
    assert set(posted["body"]) == {"text", "reply"} and posted["body"]["reply"] == {"in_reply_to_tweet_id": target["id"]}
    assert posted["auth"] == "oauth1"  # the HMAC-SHA1 signature was checked over the sandbox's own URL
    assert result.provider_message_id == posted["id"] and result.provider == "x"
    assert set(result.response) == set(created["response_json"]["data"])  # {"id", "text"}
    assert result.response["text"] == "@luis Sí, de 10 a 14."  # X writes the answered @username first


# --- recent search ---------------------------------------------------------------------------------


def test_recent_search_polls_from_since_id_and_pages_through_results(x, store):
    tracked_term_add(store=store, term="tweepy", kind="keyword")
    recorded_tweets = replay_recorded_search(x)
    source = run_now(x_source(store, x, search_query="tweepy", max_results=10, overlap_seconds=0))
    stored = set(Mention.objects.for_store(store).values_list("external_id", flat=True))
    assert stored == {t["id"] for t in recorded_tweets}
    first = Mention.objects.for_store(store).get(external_id=recorded_tweets[0]["id"])
    assert first.posted_at == snowflake_time(recorded_tweets[0]["id"])  # X's created_at, to the millisecond
    assert first.url == f"https://x.com/tweepy_bot/status/{recorded_tweets[0]['id']}"
    assert first.author_handle == "tweepy_bot" and first.language == "en"
    [request] = requests_to(x, "GET /2/tweets/search/recent")
    assert "since_id" not in request["query"] and request["auth"] == "app"

    new = [x.add_tweet(f"tweepy nuevo {n}", author="eva") for n in range(25)]
    source = run_now(source)
    pages = requests_to(x, "GET /2/tweets/search/recent")[1:]
    assert len(pages) == 3
    assert {p["query"]["since_id"] for p in pages} == {source_since(first.external_id)}
    assert "next_token" not in pages[0]["query"] and all("next_token" in p["query"] for p in pages[1:])
    assert Mention.objects.for_store(store).count() == 35
    assert source.duplicates_seen == 0 and source.malformed_count == 0

    run_now(source)
    last = requests_to(x, "GET /2/tweets/search/recent")[-1]
    assert int(last["query"]["since_id"]) > int(first.external_id)
    assert int(last["query"]["since_id"]) <= int(new[-1]["id"])
    assert Mention.objects.for_store(store).count() == 35


def source_since(tweet_id: str) -> str:
    # With overlap_seconds=0 the next search starts at the newest tweet's millisecond.
    return str(int(tweet_id) >> 22 << 22)


def test_a_session_that_stops_between_pages_resumes_on_the_next_page(x, store, monkeypatch):
    tracked_term_add(store=store, term="pedido", kind="keyword")
    source = run_now(x_source(store, x, search_query="pedido", max_results=10))
    for n in range(23):
        x.add_tweet(f"mi pedido {n}", author="ana")
    monkeypatch.setattr(x_connector, "MAX_PAGES", 1)
    source = run_now(source)
    assert Mention.objects.for_store(store).count() == 10
    assert source.cursor["search"]["pending"]["token"]
    assert source.next_run_at - timezone.now() < timedelta(seconds=5)  # the rest is read a second later
    source = run_now(source)
    source = run_now(source)
    assert Mention.objects.for_store(store).count() == 23
    assert source.cursor["search"]["pending"] is None and source.duplicates_seen == 0
    tokens = [r["query"].get("next_token") for r in requests_to(x, "GET /2/tweets/search/recent")[1:]]
    assert tokens[0] is None and tokens[1] and tokens[2]


def test_the_stores_own_tweets_and_retweets_are_skipped_and_replies_to_it_are_mentions(x, store):
    tracked_term_add(store=store, term="tertulia", kind="keyword")
    source = x_source(store, x, search_query="tertulia OR @latertulia", user_id=x.me["id"])
    ours = x.add_tweet("Novedades en la tertulia de hoy", author="latertulia")
    retweet = x.add_tweet("RT @latertulia: Novedades en la tertulia de hoy", author="eva", retweet_of=ours["id"])
    question = x.add_tweet("¿A qué hora?", author="luis", in_reply_to=ours["id"])
    run_now(source)
    stored = {m.external_id: m for m in Mention.objects.for_store(store)}
    assert set(stored) == {question["id"]}
    mention = stored[question["id"]]
    assert mention.kind == "mention" and mention.in_reply_to == ours["id"] and mention.thread_root == ours["id"]
    assert mention.text == "@latertulia ¿A qué hora?"
    assert retweet["id"] not in stored


# --- mentions ---------------------------------------------------------------------------------------


def test_mentions_of_the_account_are_heard_whatever_they_say_and_open_conversations(x, store):
    luis = x.add_user("luis_compra", name="Luis", followers=321)
    source = x_source(store, x, mentions=True)  # the account's id comes from GET /2/users/me
    run_now(source)
    assert Source.objects.get(pk=source.pk).cursor["me"] == {"id": x.me["id"], "username": "latertulia"}
    hello = x.add_tweet("@latertulia ¿tenéis envíos a Canarias?", author="luis_compra",
                        metrics={"like_count": 3, "retweet_count": 1})
    x.add_tweet("hablando de otra cosa", author="luis_compra")
    source = run_now(source)
    mention = Mention.objects.for_store(store).get()
    assert (mention.external_id, mention.kind, mention.author_id) == (hello["id"], "mention", luis["id"])
    assert mention.author_name == "Luis" and mention.author_followers == 321
    assert mention.metrics == {"likes": 3, "reposts": 1, "replies": 0, "quotes": 0}
    assert mention.thread_root == hello["id"]
    assert Conversation.objects.for_store(store).get().network == "x"
    mentions_requests = requests_to(x, "GET /2/users/:id/mentions")
    assert mentions_requests[-1]["path"] == f"/2/users/{x.me['id']}/mentions"
    assert "since_id" in mentions_requests[-1]["query"]


# --- the filtered stream -------------------------------------------------------------------------


@override_settings(TERTULIA_LISTENING_STREAM_SECONDS=30)
def test_stream_syncs_its_rules_reads_lines_keeps_the_broken_one_and_heeds_heartbeats(x, store):
    tracked_term_add(store=store, term="tertulia", kind="keyword")
    tracked_term_add(store=store, term="#tertuliashop", kind="hashtag")
    tracked_term_add(store=store, term="cafe", kind="keyword")  # heard through this source's rules only
    tag = f"tertulia:{store.pk}:x"
    x.rules.update({"1": {"id": "1", "value": "cafe", "tag": "another-tool"},
                    "2": {"id": "2", "value": "old rule", "tag": tag}})
    x._predicates.update({"1": lambda t: "cafe" in t["_words"], "2": lambda t: False})
    source = x_source(store, x, stream_rules=["tertulia", "#tertuliashop"], secrets=APP_ONLY)
    heard = []

    def speak():
        assert x.stream_connected.wait(10)
        heard.append(x.add_tweet("Me encanta la tertulia de los jueves", author="ana"))
        x.add_raw_stream_line('{"data": {"id": "123", "text": "cut in ha')
        heard.append(x.add_tweet("Pedido recibido #tertuliashop", author="eva"))
        x.add_tweet("un cafe con tertulia no, solo cafe", author="paco")  # also ours: "tertulia"
        x.add_tweet("solo un cafe", author="paco")  # another tool's rule only
        beats = x.heartbeats_sent
        while x.heartbeats_sent < beats + 3:
            x._closing.wait(0.02)
        x.stream_end()

    speaker = in_thread(speak)
    source = run_now(source)
    speaker.join(10)
    rules = {r["value"]: r for r in x.rules.values()}
    assert set(rules) == {"cafe", "tertulia", "#tertuliashop"}  # the stale one of ours deleted, the other tool's kept
    assert rules["cafe"]["tag"] == "another-tool" and rules["tertulia"]["tag"] == tag
    stored = set(Mention.objects.for_store(store).values_list("text", flat=True))
    assert stored == {"Me encanta la tertulia de los jueves", "Pedido recibido #tertuliashop",
                      "un cafe con tertulia no, solo cafe"}
    [broken] = MalformedPayload.objects.filter(source=source)
    assert broken.raw == '{"data": {"id": "123", "text": "cut in ha' and broken.code == "invalid_json"
    assert source.malformed_count == 1 and source.last_error_code == "" and source.consecutive_failures == 0
    assert source.cursor["stream"]["since_id"]


@override_settings(TERTULIA_LISTENING_STREAM_SECONDS=0.4)
def test_a_quiet_stream_ends_when_the_sessions_time_is_up(x, store):
    source = run_now(x_source(store, x, stream_rules=["tertulia"], secrets=APP_ONLY))
    assert x.heartbeats_sent >= 1 and x.stream_connections == 1
    assert source.last_success_at is not None and source.consecutive_failures == 0
    assert source.next_run_at <= timezone.now()  # a stream's next session starts at once


@override_settings(TERTULIA_LISTENING_STREAM_SECONDS=30)
def test_a_restarted_stream_catches_up_with_no_gap_and_no_duplicate(x, store):
    tracked_term_add(store=store, term="tertulia", kind="keyword")
    source = x_source(store, x, stream_rules=["tertulia"], secrets=APP_ONLY)
    said = []

    def speak(texts):
        def work():
            assert x.stream_connected.wait(10)
            for text in texts:
                said.append(x.add_tweet(text, author="ana"))
            while len(x.stream_lines_sent) < len(texts) and not x._closing.is_set():
                x._closing.wait(0.02)
            x.stream_end()
        return in_thread(work)

    speaker = speak(["tertulia uno", "tertulia dos"])
    source = run_now(source)
    speaker.join(10)
    assert Mention.objects.for_store(store).count() == 2
    # Said while nobody listened: only a search can find these.
    said.append(x.add_tweet("tertulia tres", author="luis"))
    said.append(x.add_tweet("tertulia cuatro", author="luis"))
    x.stream_lines_sent.clear()
    x.stream_connected.clear()
    speaker = speak(["tertulia cinco"])
    source = run_now(source)
    speaker.join(10)
    assert sorted(Mention.objects.for_store(store).values_list("text", flat=True)) == sorted(t["text"] for t in said)
    assert source.duplicates_seen == 0 and source.mentions_stored == 5
    catch_up = requests_to(x, "GET /2/tweets/search/recent")[-1]
    assert catch_up["query"]["query"] == "tertulia" and int(catch_up["query"]["since_id"]) <= int(said[1]["id"])


# --- errors and limits ------------------------------------------------------------------------------


def test_a_spent_rate_limit_waits_until_x_says_it_resets(x, store):
    tracked_term_add(store=store, term="tertulia", kind="keyword")
    source = x_source(store, x, search_query="tertulia")
    x.rate_limit("GET /2/tweets/search/recent", remaining=0, reset_in=600)
    source = run_now(source)
    assert source.last_error_code == "rate_limited" and source.consecutive_failures == 0
    assert source.next_run_at > timezone.now() + timedelta(seconds=500)
    assert requests_to(x, "GET /2/tweets/search/recent")[-1]["query"]["query"] == "tertulia"

    x.add_tweet("la tertulia de hoy", author="ana")
    x.rate_limit("GET /2/tweets/search/recent", remaining=1, reset_in=300)  # this request spends the last one
    source = run_now(source)
    assert Mention.objects.for_store(store).count() == 1  # what came back is stored before waiting
    assert source.last_error_code == "rate_limited" and source.next_run_at > timezone.now() + timedelta(seconds=200)


def test_bad_credentials_fail_at_once_and_raise_the_alert(x, store):
    source = run_now(x_source(store, x, search_query="tertulia", secrets={"bearer_token": "not-the-token"}))
    assert source.last_error_code == "auth_failed" and "401" in source.last_error
    assert Alert.objects.for_store(store).filter(kind="connector_down", source=source).exists()


def test_a_stream_refused_with_429_waits_at_least_a_minute(x, store):
    x.fail("GET /2/tweets/search/stream", status=429, headers={"x-rate-limit-reset": "0"})
    source = run_now(x_source(store, x, stream_rules=["tertulia"], secrets=APP_ONLY))
    assert source.last_error_code == "rate_limited"
    assert source.next_run_at > timezone.now() + timedelta(seconds=50)


def test_unreadable_tweets_in_a_page_are_kept_and_the_rest_is_stored(x, store):
    tracked_term_add(store=store, term="tertulia", kind="keyword")
    good = x.add_tweet("la tertulia llega", author="ana")
    body = {"data": [{"id": good["id"], "text": good["text"], "created_at": good["created_at"], "author_id": "1"},
                     {"id": "12", "created_at": "ayer"}, {"text": "sin id"}],
            "meta": {"newest_id": good["id"], "oldest_id": good["id"], "result_count": 3}}
    x.fail("GET /2/tweets/search/recent", status=200, body=body)
    source = run_now(x_source(store, x, search_query="tertulia"))
    assert list(Mention.objects.for_store(store).values_list("external_id", flat=True)) == [good["id"]]
    assert source.malformed_count == 2 and source.consecutive_failures == 0


def test_settings_are_checked_before_saving(x, store):
    with pytest.raises(ApiError) as nothing:
        x_source(store, x)
    assert nothing.value.details[0].code == "nothing_to_hear"
    with pytest.raises(ApiError) as partial:
        x_source(store, x, search_query="a", secrets={"bearer_token": "b", "consumer_key": "k"})
    assert partial.value.details[0].code == "incomplete"
    with pytest.raises(ApiError) as long_rules:
        x_source(store, x, stream_rules=["a" * 300, "b" * 300])
    assert long_rules.value.details[0].code == "too_long"
    with pytest.raises(ApiError) as no_account:
        x_source(store, x, mentions=True, secrets=APP_ONLY)
    assert no_account.value.details[0].field == "settings.user_id"


# --- replies ----------------------------------------------------------------------------------------


def agent(store):
    user = get_user_model().objects.create_user("marta", "marta@example.com", "pw")
    membership_grant(store=store, user=user, role="agent")
    return user


def test_a_reply_goes_out_through_the_dispatcher_and_the_answer_threads_back(x, store):
    source = x_source(store, x, mentions=True, user_id=x.me["id"])
    run_now(source)
    question = x.add_tweet("@latertulia ¿el aceite picual llega en lata?", author="luis")
    run_now(source)
    conversation = Conversation.objects.for_store(store).get()
    reply_send(store=store, conversation_id=conversation.pk, user=agent(store), text="¡Hola! Sí, en lata de 3 litros.")
    assert dispatch_run(worker="t") == 1
    [posted] = x.posted
    assert posted["in_reply_to_tweet_id"] == question["id"] and posted["given_text"] == "¡Hola! Sí, en lata de 3 litros."
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.provider_message_id) == ("sent", posted["id"])
    run_now(source)  # the runner's inbox sweep links our reply's message to the tweet id X gave it

    answer = x.add_tweet("¡Gracias! ¿Y cuánto tarda?", author="luis", in_reply_to=posted["id"])
    run_now(source)
    conversation.refresh_from_db()
    messages = list(Message.objects.filter(conversation=conversation).order_by("created_at", "id")
                    .values_list("direction", "external_id"))
    assert messages == [("inbound", question["id"]), ("outbound", posted["id"]), ("inbound", answer["id"])]
    assert Conversation.objects.for_store(store).count() == 1 and conversation.status == "open"
    assert Mention.objects.for_store(store).get(external_id=answer["id"]).in_reply_to == posted["id"]


def test_a_reply_whose_answer_was_lost_is_not_posted_twice(x, store):
    source = x_source(store, x, mentions=True, user_id=x.me["id"], secrets=OAUTH2_USER)
    run_now(source)
    x.add_tweet("@latertulia ¿hacéis factura?", author="ana")
    run_now(source)
    conversation = Conversation.objects.for_store(store).get()
    reply_send(store=store, conversation_id=conversation.pk, user=agent(store), text="Sí, pídela por aquí.")
    x.fail("POST /2/tweets", disconnect=True, commit=True)  # X posts it, the answer never arrives
    dispatch_run(worker="t")
    delivery = Delivery.objects.get()
    assert delivery.status == "scheduled" and len(x.posted) == 1
    Delivery.objects.filter(pk=delivery.pk).update(due_at=timezone.now())
    dispatch_run(worker="t")
    delivery.refresh_from_db()
    assert len(x.posted) == 1 and x.posted[0]["auth"] == "oauth2_user"
    assert (delivery.status, delivery.provider_message_id) == ("sent", x.posted[0]["id"])


@pytest.mark.parametrize(("script", "error", "code"), [
    ({"status": 429}, TransientSendError, "rate_limited"),
    ({"status": 503}, TransientSendError, "provider_unavailable"),
    ({"disconnect": True}, TransientSendError, "connection_error"),
    ({"status": 400}, PermanentSendError, "invalid_message"),
    ({"status": 401}, PermanentSendError, "auth_failed"),
    ({"status": 403}, PermanentSendError, "provider_rejected"),
])
def test_reply_errors_are_classified(x, store, script, error, code):
    adapter = XReplyAdapter(api_base_url=x.base_url, secrets=OAUTH1)
    target = x.add_tweet("hola", author="ana")
    x.fail("POST /2/tweets", **script)
    with pytest.raises(error) as caught:
        adapter.send(OutboundMessage(delivery_id=1, store_id=store.pk, channel="x", to="ana", text="¡Hola!",
                                     in_reply_to=target["id"]))
    assert caught.value.code == code and x.posted == []


def test_a_duplicate_that_is_not_ours_and_a_gone_tweet_are_permanent(x, store):
    adapter = XReplyAdapter(api_base_url=x.base_url, secrets=OAUTH1)
    first, second = x.add_tweet("hola", author="ana"), x.add_tweet("buenas", author="eva")

    def reply(target, text="¡Gracias por escribir!"):
        return adapter.send(OutboundMessage(delivery_id=1, store_id=store.pk, channel="x", to="ana", text=text,
                                            in_reply_to=target))

    reply(first["id"])
    with pytest.raises(PermanentSendError) as duplicate:
        reply(second["id"])  # the same words to another tweet: X's duplicate-content 403, not ours to recover
    assert duplicate.value.code == "duplicate_content"
    with pytest.raises(PermanentSendError) as gone:
        reply("1234567890123", text="otra cosa")
    assert gone.value.code == "provider_rejected" and "deleted" in str(gone.value)
    with pytest.raises(PermanentSendError) as long_text:
        reply(first["id"], text="a" * 281)
    assert long_text.value.code == "invalid_message" and len(x.posted) == 1


def test_a_source_without_user_context_cannot_answer(x, store):
    source = x_source(store, x, search_query="a", secrets=APP_ONLY)
    config = SourceConfig(source_id=source.pk, store_id=store.pk, network="x", key="x", settings=source.settings,
                          secrets=APP_ONLY)
    with pytest.raises(PermanentSendError) as caught:
        x_connector.reply_adapter(config).send(OutboundMessage(delivery_id=1, store_id=store.pk, channel="x", to="a",
                                                               text="hola", in_reply_to="1"))
    assert caught.value.code == "channel_misconfigured" and x.requests == []
