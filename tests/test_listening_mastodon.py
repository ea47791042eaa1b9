"""The Mastodon connector and its replies, over real HTTP and server-sent events against the Mastodon sandbox.

The sandbox replays statuses and notifications a real Mastodon server answered (tests/fixtures/social/mastodon),
and new ones built from the same shapes; sessions run through the listening runner as the worker runs them.
"""

import json
import threading
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone
from mastodon import Mastodon, MastodonAPIError

from tertulia.channels.adapters.mastodon import MastodonReplyAdapter, reply_visibility
from tertulia.channels.base import OutboundMessage, PermanentSendError
from tertulia.channels.dispatch import dispatch_run
from tertulia.channels.models import Delivery
from tertulia.channels.registry import adapters_forget
from tertulia.core.errors import ApiError
from tertulia.inbox.models import Conversation
from tertulia.inbox.services import reply_send
from tertulia.listening.connectors.mastodon import SPEC
from tertulia.listening.models import Alert, AlertKind, MalformedPayload, Mention, Source
from tertulia.listening.runner import listen_once
from tertulia.listening.sandbox.mastodon import MastodonSandbox
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import tracked_term_add
from tertulia.listening.sources import source_describe, source_set

pytestmark = pytest.mark.django_db

TOKEN = "mastodon-listening-token"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "social" / "mastodon"
STREAM = override_settings(TERTULIA_LISTENING_STREAM_SECONDS=2.0)


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(autouse=True)
def _fresh_caches():
    matchers_forget()
    adapters_forget()
    yield
    matchers_forget()
    adapters_forget()


@pytest.fixture
def sandbox():
    with MastodonSandbox(token=TOKEN, heartbeat_seconds=0.1) as server:
        yield server


def masto_source(store, sandbox, *, token: str = TOKEN, **settings) -> Source:
    return source_set(store=store, network="mastodon", key="masto", settings={"api_base_url": sandbox.base_url,
                                                                              **settings},
                      secrets={"access_token": token})


def stored(store) -> dict[str, Mention]:
    return {m.external_id: m for m in Mention.objects.for_store(store)}


def due(source: Source) -> None:
    Source.objects.filter(pk=source.pk).update(next_run_at=timezone.now())


def once_listening(sandbox: MastodonSandbox, action, *, tag: str | None, caught_up: str = "") -> threading.Thread:
    """Do `action` (post, break the stream...) in a thread as soon as the connector's stream of `tag` (None:
    any) is open, and, with `caught_up`, once the session has asked for that timeline (its catch-up), so
    that what `action` posts can reach the session only through the stream."""
    def run():
        if not sandbox.wait_for_streams(tag=tag):
            return
        end = time.monotonic() + 10
        while caught_up and not sandbox.requests_to(caught_up) and time.monotonic() < end:
            time.sleep(0.02)
        if caught_up:
            time.sleep(0.2)  # the catch-up's answer is on its way back
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@STREAM
def test_a_hashtag_is_streamed_and_a_restart_catches_up_with_no_gap_and_no_duplicate(store, sandbox):
    tracked_term_add(store=store, term="#hoot", kind="hashtag")
    [recorded] = fixture("timeline_tag_hoot.json")
    sandbox.add_raw_status(recorded)  # in the timeline before the source ever ran
    source = masto_source(store, sandbox, hashtags=["#Hoot"], notifications=False)
    live = {}
    thread = once_listening(sandbox, lambda: live.update(sandbox.add_status(
        "¿La taza #hoot viene en azul?", account="ana@social.example", favourites_count=2, replies_count=1)),
        tag="hoot", caught_up="/api/v1/timelines/tag/hoot")

    assert listen_once(worker="t") == 1
    thread.join(10)
    assert len(sandbox.requests_to("/api/v1/timelines/tag/hoot")) == 1  # the live status came by the stream
    heard = stored(store)
    assert set(heard) == {recorded["id"], live["id"]}
    mention = heard[live["id"]]
    assert (mention.kind, mention.text, mention.author_handle, mention.url) == (
        "post", "¿La taza #hoot viene en azul?", "ana@social.example", live["url"])
    assert mention.metrics == {"likes": 2, "reposts": 0, "replies": 1} and mention.terms == ["#hoot"]
    assert mention.reply_ref == {"visibility": "public", "acct": "ana@social.example"}
    replayed = heard[recorded["id"]]
    assert replayed.text == "#hoot (hashtag toot)" and replayed.platform_language == "ja"
    assert replayed.author_handle == f"mastodonpy_test_2@{sandbox.domain}"
    assert replayed.posted_at.astimezone(UTC).isoformat().startswith("2026-08-01T13:55:55.867")
    assert len(sandbox.requests_to("/api/v1/streaming/hashtag")) == 1
    source.refresh_from_db()
    assert source.cursor == {"hashtags": {"hoot": live["id"]}}
    assert (source.consecutive_failures, source.duplicates_seen) == (0, 0)

    # The worker is down: what is written meanwhile reaches no stream, only the timeline.
    meanwhile = [sandbox.add_status(f"Pedido {n} de la taza #hoot", account="luis") for n in range(3)]
    sandbox.add_status("Nada que ver con tazas", account="luis")
    own = sandbox.add_status("Gracias a todos #hoot", account=sandbox.me)
    before = len(sandbox.requests_to("/api/v1/timelines/tag/hoot"))

    assert listen_once(worker="t") == 1
    [catch_up] = sandbox.requests_to("/api/v1/timelines/tag/hoot")[before:]
    assert catch_up["query"]["min_id"] == [live["id"]]
    assert set(stored(store)) == {recorded["id"], live["id"], *(s["id"] for s in meanwhile)}
    source.refresh_from_db()
    assert source.cursor == {"hashtags": {"hoot": own["id"]}}  # past the store's own status, which is not a mention
    assert (source.duplicates_seen, source.consecutive_failures, source.malformed_count) == (0, 0, 0)


@override_settings(TERTULIA_LISTENING_STREAM_SECONDS=10.0)
def test_a_dropped_stream_ends_the_session_and_the_next_one_misses_nothing(store, sandbox):
    tracked_term_add(store=store, term="#hoot", kind="hashtag")
    source = masto_source(store, sandbox, hashtags=["hoot"], notifications=False)
    written = []

    def drop_and_write():
        written.append(sandbox.add_status("Antes del corte #hoot", account="ana@social.example"))
        time.sleep(0.3)
        sandbox.streams_drop()
        written.append(sandbox.add_status("Durante el corte #hoot", account="ana@social.example"))

    thread = once_listening(sandbox, drop_and_write, tag="hoot", caught_up="/api/v1/timelines/tag/hoot")
    listen_once(worker="t")
    thread.join(10)
    source.refresh_from_db()
    assert (source.last_error_code, source.consecutive_failures) == ("stream_closed", 1)

    due(source)
    with override_settings(TERTULIA_LISTENING_STREAM_SECONDS=0.5):
        assert listen_once(worker="t") == 1
    assert set(stored(store)) == {s["id"] for s in written}
    source.refresh_from_db()
    assert (source.consecutive_failures, source.duplicates_seen) == (0, 0)
    assert source.cursor == {"hashtags": {"hoot": written[1]["id"]}}


def test_notifications_become_mentions_and_direct_messages(store, sandbox):
    [notification] = fixture("notifications.json")
    direct = fixture("status_direct.json")
    sandbox.add_raw_entry(notification, notification=True)  # replayed as the server answered it
    sandbox.add_raw_status(direct)  # a direct status naming the store's account notifies it
    sandbox.add_notification("favourite", account="eva@red.example", status=notification["status"])
    source = masto_source(store, sandbox)  # notifications are on by default; nothing to stream
    before = timezone.now()

    assert listen_once(worker="t") == 1
    heard = stored(store)
    assert set(heard) == {notification["status"]["id"], direct["id"]}
    mention, dm = heard[notification["status"]["id"]], heard[direct["id"]]
    assert (mention.kind, mention.text, mention.author_handle) == ("mention", "@mastodonpy_test hello!",
                                                                   f"admin@{sandbox.domain}")
    assert mention.reply_ref == {"visibility": "public", "acct": "admin"}
    assert (dm.kind, dm.text, dm.reply_ref["visibility"]) == ("direct", "@mastodonpy_test todo funny text here",
                                                              "direct")
    assert {c.kind for c in Conversation.objects.for_store(store)} == {"mention", "direct"}
    [request] = sandbox.requests_to("/api/v1/notifications")
    assert request["query"]["types[]"] == ["mention"] and "min_id" not in request["query"]
    assert sandbox.requests_to("/api/v1/streaming") == []  # nothing to stream: one poll per session
    source.refresh_from_db()
    newest = max((n.payload["id"] for n in sandbox.notifications if n.payload["type"] == "mention"),
                 key=lambda i: (len(i), i))
    assert source.cursor == {"notifications": newest}
    assert source.next_run_at >= before + timedelta(seconds=SPEC.poll_seconds - 5)

    later = sandbox.add_status("@mastodonpy_test ¿Seguís abiertos el domingo?", account="eva@red.example")
    due(source)
    assert listen_once(worker="t") == 1
    assert sandbox.requests_to("/api/v1/notifications")[-1]["query"]["min_id"] == [newest]
    assert set(stored(store)) == {notification["status"]["id"], direct["id"], later["id"]}
    source.refresh_from_db()
    assert source.duplicates_seen == 0


def test_searches_are_polled_from_their_cursor(store, sandbox):
    tracked_term_add(store=store, term="La Tertulia", kind="brand")
    tracked_term_add(store=store, term="sort code", kind="keyword")
    [gargron] = fixture("status_docs_example.json")  # mastodon.social's status of the documentation
    sandbox.add_raw_status(gargron)
    first = sandbox.add_status("¿Alguien ha comprado en La Tertulia?", account="eva@red.example")
    sandbox.add_status("Hoy llueve en Sevilla", account="eva@red.example")
    source = masto_source(store, sandbox, search_terms=["tertulia", "sort code"], notifications=False)

    assert listen_once(worker="t") == 1
    heard = stored(store)
    assert set(heard) == {first["id"], gargron["id"]}
    assert heard[gargron["id"]].text.startswith('"I lost my inheritance with one wrong digit on my sort code"\n\n'
                                                "https://www.theguardian.com/money/2019/dec/07/")
    assert (heard[gargron["id"]].author_followers, heard[gargron["id"]].posted_at.year) == (322930, 2019)
    second = sandbox.add_status("La Tertulia tarda mucho en enviar", account="pau@otra.example")
    due(source)
    assert listen_once(worker="t") == 1
    searches = [r["query"] for r in sandbox.requests_to("/api/v2/search")]
    assert [(q["q"], q["type"], q.get("min_id")) for q in searches] == [
        (["tertulia"], ["statuses"], None), (["sort code"], ["statuses"], None),
        (["tertulia"], ["statuses"], [first["id"]]), (["sort code"], ["statuses"], [gargron["id"]])]
    heard = stored(store)
    assert set(heard) == {first["id"], gargron["id"], second["id"]}
    assert (heard[second["id"]].kind, heard[second["id"]].author_handle) == ("post", "pau@otra.example")
    source.refresh_from_db()
    assert source.cursor == {"search": {"tertulia": second["id"], "sort code": gargron["id"]}}
    assert source.duplicates_seen == 0


@STREAM
def test_malformed_entries_and_events_are_kept_and_the_rest_is_stored(store, sandbox):
    tracked_term_add(store=store, term="#hoot", kind="hashtag")
    good = sandbox.add_status("Primera taza #hoot", account="ana@social.example")
    sandbox.add_raw_entry({"id": "117020000000000001", "created_at": "2026-12-01T10:00:00.000Z",
                           "content": "<p>Sin cuenta #hoot</p>"}, tags=["hoot"])
    sandbox.add_raw_entry("not a status", tags=["hoot"])
    source = masto_source(store, sandbox, hashtags=["hoot"], notifications=False)
    after = {}

    def bad_events_then_a_good_one():
        sandbox.stream_raw('event: update\ndata: {"id": "12", "content"\n\n', tag="hoot")
        sandbox.stream_raw("event: update\ndata: " + json.dumps({"id": "13", "account": None}) + "\n\n", tag="hoot")
        sandbox.stream_raw("a line that is no field at all\n\n", tag="hoot")
        after.update(sandbox.add_status("Segunda taza #hoot", account="ana@social.example"))

    thread = once_listening(sandbox, bad_events_then_a_good_one, tag="hoot")
    assert listen_once(worker="t") == 1
    thread.join(10)
    assert set(stored(store)) == {good["id"], after["id"]}
    kept = {p.raw: p for p in MalformedPayload.objects.filter(source_id=source.pk)}
    assert len(kept) == 5
    assert kept['event: update\ndata: {"id": "12", "content"'].code == "malformed_event"
    assert kept["a line that is no field at all"].code == "malformed_event"
    assert kept['"not a status"'].error == "a status is a JSON object"
    assert "no account" in kept[json.dumps({"id": "13", "account": None})].error
    assert any("Sin cuenta" in raw for raw in kept)
    source.refresh_from_db()
    assert source.malformed_count == 5 and source.consecutive_failures == 0
    assert source.cursor == {"hashtags": {"hoot": after["id"]}}


def test_a_429_waits_until_the_reset_mastodon_gave(store, sandbox):
    reset = (timezone.now() + timedelta(seconds=240)).replace(microsecond=0)
    sandbox.fail_next(429, "Too many requests", headers={"X-RateLimit-Remaining": "0",
                                                         "X-RateLimit-Reset": reset.isoformat().replace("+00:00", "Z")})
    source = masto_source(store, sandbox)
    assert listen_once(worker="t") == 1
    source.refresh_from_db()
    assert (source.last_error_code, source.consecutive_failures) == ("rate_limited", 0)
    assert abs((source.next_run_at - reset).total_seconds()) < 5
    assert not Alert.objects.for_store(store).exists()


def test_a_spent_budget_stops_before_the_next_request(store):
    with MastodonSandbox(token=TOKEN, rate_limit=2) as small:
        small.add_status("@mastodonpy_test hola", account="eva@red.example")
        source = masto_source(store, small)
        assert listen_once(worker="t") == 1
        # verify_credentials and the instance document used the two requests: no third one went out.
        assert [r["path"] for r in small.requests] == ["/api/v1/accounts/verify_credentials", "/api/v2/instance"]
        source.refresh_from_db()
        assert source.last_error_code == "rate_limited" and not stored(store)
        assert source.next_run_at > timezone.now() + timedelta(seconds=200)


def test_a_refused_token_shows_in_the_health_and_opens_the_alert(store, sandbox):
    source = masto_source(store, sandbox, token="not-the-token", hashtags=["hoot"])
    assert listen_once(worker="t") == 1
    source.refresh_from_db()
    health = source_describe(source)["health"]
    assert (health["status"], health["last_error_code"]) == ("down", "auth_failed")
    assert "The access token is invalid" in health["last_error"]
    alert = Alert.objects.for_store(store).get(kind=AlertKind.CONNECTOR_DOWN)
    assert alert.source_id == source.pk and alert.closed_at is None and alert.details["code"] == "auth_failed"
    assert sandbox.requests_to("/api/v1/streaming") == []


def test_a_reply_goes_out_through_the_dispatcher_and_the_answer_threads_back(store, sandbox):
    ana = sandbox.add_account("ana@social.example", display_name="Ana", followers_count=40)
    question = sandbox.add_status("@mastodonpy_test ¿Hacéis envíos a Canarias?", account=ana)
    source = masto_source(store, sandbox)
    assert listen_once(worker="t") == 1
    conversation = Conversation.objects.for_store(store).get()
    assert (conversation.kind, conversation.contact_handle) == ("mention", "ana@social.example")
    agent = get_user_model().objects.create_user("marta", password="not-used-here")

    message = reply_send(store=store, conversation_id=conversation.pk, user=agent, text="¡Hola Ana! Sí, en 3 días.")
    assert dispatch_run(worker="t") == 1
    [reply] = sandbox.posted
    assert (reply["in_reply_to_id"], reply["visibility"]) == (question["id"], "unlisted")
    assert [m["acct"] for m in reply["mentions"]] == ["ana@social.example"]
    [post] = sandbox.requests_to("/api/v1/statuses")
    delivery = Delivery.objects.get(pk=message.delivery_id)
    assert post["form"]["status"] == "@ana@social.example ¡Hola Ana! Sí, en 3 días."
    assert post["headers"]["Idempotency-Key"] == f"tertulia-{store.pk}-{delivery.pk}"
    assert (delivery.status, delivery.provider_message_id) == ("sent", reply["id"])

    listen_once(worker="t")  # the source is not due: the inbox sweep learns our reply's id
    answer = sandbox.add_status("@mastodonpy_test ¡Genial! ¿Y cuánto cuesta?", account=ana, in_reply_to_id=reply["id"])
    due(source)
    assert listen_once(worker="t") == 1
    assert Conversation.objects.for_store(store).count() == 1
    assert list(conversation.messages.order_by("id").values_list("external_id", "direction")) == [
        (question["id"], "inbound"), (reply["id"], "outbound"), (answer["id"], "inbound")]
    assert stored(store)[answer["id"]].in_reply_to == reply["id"]


def test_a_direct_message_is_answered_directly_once_and_a_named_person_is_not_named_twice(store, sandbox):
    sandbox.add_account("ana@social.example")
    dm = sandbox.add_status("@mastodonpy_test hola, una duda", account="ana@social.example", visibility="direct")
    adapter = MastodonReplyAdapter(api_base_url=sandbox.base_url, access_token=TOKEN, timeout=5)
    message = OutboundMessage(delivery_id=7, store_id=store.pk, channel="mastodon", to="ana@social.example",
                              text="@ana@social.example claro, dime.", language="es", in_reply_to=dm["id"],
                              reply_context={"visibility": "direct", "acct": "ana@social.example", "direct": True})
    first, again = adapter.send(message), adapter.send(message)
    assert first.provider_message_id == again.provider_message_id == sandbox.posted[0]["id"]
    assert len(sandbox.posted) == 1 and sandbox.posted[0]["visibility"] == "direct"
    assert sandbox.requests_to("/api/v1/statuses")[0]["form"]["status"] == "@ana@social.example claro, dime."

    gone = OutboundMessage(delivery_id=8, store_id=store.pk, channel="mastodon", to="ana@social.example",
                           text="¿Sigues ahí?", in_reply_to="1", reply_context={"visibility": "public"})
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(gone)
    assert caught.value.response["http_status"] == 404


@pytest.mark.parametrize(("context", "widest", "expected"), [
    ({"visibility": "public"}, "unlisted", "unlisted"),
    ({"visibility": "public"}, "public", "public"),
    ({"visibility": "unlisted"}, "public", "unlisted"),
    ({"visibility": "private"}, "unlisted", "private"),
    ({"visibility": "direct"}, "public", "direct"),
    ({"visibility": "public", "direct": True}, "unlisted", "direct"),
    ({"visibility": "limited"}, "unlisted", "direct"),
    ({}, "unlisted", "unlisted"),
])
def test_a_reply_is_never_more_public_than_what_it_answers(context, widest, expected):
    assert reply_visibility(context, widest=widest) == expected


@STREAM
def test_the_public_timeline_and_stream_replayed_and_a_boost_heard_as_the_boosted_status(store, sandbox):
    tracked_term_add(store=store, term="television", kind="keyword")
    tracked_term_add(store=store, term="taza", kind="product")
    tracked_term_add(store=store, term="nvim", kind="keyword")
    for status in reversed(fixture("timeline_public.json")):
        sandbox.add_raw_status(status)
    sandbox.show_reblogs_in_public_timelines = True
    original = sandbox.add_status("Mi taza favorita", account="eva@red.example", visibility="unlisted")
    boost = sandbox.add_status(account="luis", reblog_of=original["id"])
    source = masto_source(store, sandbox, public=True, notifications=False)
    event = fixture("streaming_update_docs_example.json")  # what mastodon.social streamed, as the docs show it
    thread = once_listening(sandbox, lambda: sandbox.stream_raw(f"event: update\ndata: {event['payload']}\n\n"),
                            tag=None, caught_up="/api/v1/timelines/public")

    assert listen_once(worker="t") == 1
    thread.join(10)
    heard = stored(store)
    # "you can't say that on television" names a term; the status naming the store's account is a
    # mention whatever it says; the boost is the boosted status, by its author; the streamed one names nvim.
    assert set(heard) == {"117020592137523525", "117020588169351887", original["id"], "108913983692647032"}
    assert heard["117020588169351887"].kind == "mention"
    assert (heard[original["id"]].author_handle, heard[original["id"]].text) == ("eva@red.example", "Mi taza favorita")
    streamed = heard["108913983692647032"]
    assert (streamed.author_handle, streamed.author_name, streamed.author_followers, streamed.in_reply_to) == (
        "tobtobxx@fosstodon.org", "TobTobXX", 150, "108913981098896721")
    assert len(sandbox.requests_to("/api/v1/streaming/public")) == 1
    source.refresh_from_db()
    # The cursor is where the timeline stopped: the streamed status is older (it came from another server).
    assert source.cursor == {"public": boost["id"]}


@override_settings(TERTULIA_LISTENING_STREAM_SECONDS=0.5)
def test_local_only_reads_the_local_timeline_and_stream(store, sandbox):
    tracked_term_add(store=store, term="taza", kind="product")
    here = sandbox.add_status("Una taza de aquí", account="luis")
    sandbox.add_status("Una taza de fuera", account="eva@red.example")
    masto_source(store, sandbox, public=True, local=True, notifications=False)
    assert listen_once(worker="t") == 1
    assert set(stored(store)) == {here["id"]}
    assert sandbox.requests_to("/api/v1/timelines/public")[0]["query"]["local"] == ["1"]
    assert len(sandbox.requests_to("/api/v1/streaming/public/local")) == 1


def test_the_sandbox_pages_and_counts_as_mastodon_does(sandbox):
    ids = [sandbox.add_status(f"Taza {n} #hoot", account="luis")["id"] for n in range(5)]
    client = Mastodon(access_token=TOKEN, api_base_url=sandbox.base_url, ratelimit_method="throw")
    newest = client.timeline_hashtag("hoot", limit=2)
    assert [str(s.id) for s in newest] == [ids[4], ids[3]]
    assert [str(s.id) for s in client.fetch_next(newest)] == [ids[2], ids[1]]  # the Link header's next page
    older = client.timeline_hashtag("hoot", max_id=ids[2], limit=2)
    assert [str(s.id) for s in older] == [ids[1], ids[0]]
    assert [str(s.id) for s in client.fetch_previous(older)] == [ids[3], ids[2]]  # prev: min_id, immediately newer
    assert [str(s.id) for s in client.timeline_hashtag("hoot", since_id=ids[0], limit=2)] == [ids[4], ids[3]]
    assert [str(s.id) for s in client.timeline_hashtag("hoot", min_id=ids[0], limit=2)] == [ids[2], ids[1]]
    assert client.ratelimit_limit == 300 and client.ratelimit_remaining == 300 - 7
    url = "https://tienda.example/productos/taza-de-ceramica-azul-hecha-a-mano-en-talavera"
    accepted = client.status_post("x" * 470 + " " + url)  # 531 characters, 494 as Mastodon counts them
    assert accepted["content"].startswith("<p>xxx") and sandbox.posted[-1]["id"] == accepted["id"]
    with pytest.raises(MastodonAPIError, match="character limit of 500"):
        client.status_post("x" * 501)


def test_settings_are_checked_before_anything_is_saved(store):
    assert (SPEC.rate_limit, SPEC.rate_window, SPEC.streaming) == (300, 300.0, True)  # Mastodon's documented budget
    with pytest.raises(ApiError) as caught:
        source_set(store=store, network="mastodon", key="masto",
                   settings={"api_base_url": "mastodon.social", "hashtags": ["two words"], "reply_visibility": "direct",
                             "notifications": False},
                   secrets={"access_token": TOKEN})
    assert {d.field for d in caught.value.details} == {"settings.api_base_url", "settings.hashtags",
                                                      "settings.reply_visibility"}
    with pytest.raises(ApiError) as caught:
        source_set(store=store, network="mastodon", key="masto",
                   settings={"api_base_url": "https://mastodon.social", "notifications": False},
                   secrets={"access_token": TOKEN})
    assert [d.code for d in caught.value.details] == ["nothing_to_hear"]
    assert not Source.objects.exists()
