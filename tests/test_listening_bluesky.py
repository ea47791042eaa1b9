"""The Bluesky connector and reply adapter against the local Bluesky (real WebSocket Jetstream, real XRPC over HTTP).

The firehose replays the real Jetstream events of tests/fixtures/social/bluesky (see SOURCE.txt there)
mixed with posts about the store.
"""

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from tertulia.channels.adapters.bluesky import BlueskyReplyAdapter, bluesky_client_forget, delivery_rkey
from tertulia.channels.base import OutboundMessage, PermanentSendError, TransientSendError
from tertulia.channels.dispatch import dispatch_run
from tertulia.channels.models import Delivery
from tertulia.channels.registry import adapters_forget
from tertulia.core.services import membership_grant
from tertulia.inbox.models import Conversation, Message
from tertulia.inbox.services import reply_send
from tertulia.inbox.sweep import inbox_sweep
from tertulia.listening.connectors import SourceConfig
from tertulia.listening.connectors.bluesky import CURSOR_REWIND_US, _Listening
from tertulia.listening.models import Alert, MalformedPayload, Mention, Source
from tertulia.listening.runner import listen_once
from tertulia.listening.sandbox.bluesky import DEFAULT_APP_PASSWORD, BlueskySandbox, golden_lines, is_tid
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import tracked_term_add
from tertulia.listening.sources import source_config, source_set

pytestmark = pytest.mark.django_db
GOLDEN = Path(__file__).parent / "fixtures" / "social" / "bluesky" / "jetstream_v1_golden_10_events.jsonl"
# A stream session ends when the sandbox hangs up; the limit only bounds a test that went wrong.
STREAM = override_settings(TERTULIA_LISTENING_STREAM_SECONDS=20)


@pytest.fixture(autouse=True)
def _fresh():
    matchers_forget()
    bluesky_client_forget()
    adapters_forget()
    with STREAM:
        yield
    bluesky_client_forget()
    adapters_forget()


@pytest.fixture
def bsky():
    with BlueskySandbox() as sandbox:
        yield sandbox


@pytest.fixture
def tracked(store):
    tracked_term_add(store=store, term="La Tertulia", kind="brand")
    tracked_term_add(store=store, term="#tertuliashop", kind="hashtag")
    return store


def bluesky_source(store, bsky: BlueskySandbox, *, password: str = DEFAULT_APP_PASSWORD, **settings) -> Source:
    base = {"service_url": bsky.base_url, "jetstream_url": bsky.jetstream_url, "handle": bsky.handle}
    return source_set(store=store, network="bluesky", key="bsky", settings=base | settings,
                      secrets={"app_password": password})


def make_due(source: Source) -> None:
    Source.objects.filter(pk=source.pk).update(next_run_at=timezone.now())


def live(bsky: BlueskySandbox, *steps: Callable[[], object], code: int = 1001) -> threading.Thread:
    """Once the connector has subscribed (and had its replay), do `steps` on the live stream, then hang up."""
    bsky.subscribed.clear()

    def run() -> None:
        if bsky.subscribed.wait(15):
            for step in steps:
                step()
        bsky.hang_up(code)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def stream_session(bsky: BlueskySandbox, *steps: Callable[[], object], code: int = 1001) -> None:
    thread = live(bsky, *steps, code=code)
    assert listen_once(worker="w") == 1
    thread.join(15)


def calls(bsky: BlueskySandbox, nsid: str) -> list[dict]:
    return [r for r in bsky.requests if r["nsid"] == nsid]


# --- the firehose --------------------------------------------------------------------------------


def test_the_firehose_keeps_only_posts_about_the_store_and_counts_what_it_cannot_read(tracked, bsky):
    bsky.add_account(handle="ana.bsky.social", display_name="Ana", followers=340)
    source = bluesky_source(tracked, bsky, firehose=True)
    about = {}
    golden = list(golden_lines(str(GOLDEN)))

    def feed():
        for index, line in enumerate(golden):
            bsky.add_raw_event(line)
            if index == 2:
                about["question"] = bsky.add_post(text="¿La Tertulia abre el domingo?", handle="ana.bsky.social")
            if index == 5:
                bsky.add_post(text="Hoy hace sol en Madrid", handle="luis.bsky.social")
                about["mention"] = bsky.add_post(text="@latertulia.bsky.social mi pedido no llega",
                                                 handle="eva.bsky.social", langs=["es", "en"])
        bsky.add_raw_event('{"did": "did:plc:rota", "time_us": 17797190')  # cut off on the wire
        bsky.add_raw_event(orjson.dumps({"did": "did:plc:rota", "time_us": 1779719011000000, "kind": "commit",
                                         "commit": {"rev": "3mmoojpaqkn2z", "operation": "create",
                                                    "collection": "app.bsky.feed.post", "rkey": "3mmoojp4cd223",
                                                    "cid": "bafyreicl7", "record": {"text": 12}}}).decode())
        about["hashtag"] = bsky.add_post(text="Pedido recibido #TertuliaShop 😍", handle="ana.bsky.social", langs=["es"])

    stream_session(bsky, feed)

    assert bsky.subscriptions[0] == {"wantedCollections": ["app.bsky.feed.post"], "wantedDids": [], "cursor": None,
                                     "compress": "false"}
    mentions = {m.external_id: m for m in Mention.objects.for_store(tracked)}
    assert set(mentions) == {about["question"]["uri"], about["mention"]["uri"], about["hashtag"]["uri"]}
    question = mentions[about["question"]["uri"]]
    assert (question.kind, question.author_handle, question.author_followers) == ("post", "ana.bsky.social", 340)
    assert question.url == f"https://bsky.app/profile/ana.bsky.social/post/{about['question']['rkey']}"
    assert question.reply_ref == {"uri": about["question"]["uri"], "cid": about["question"]["cid"],
                                  "root": {"uri": about["question"]["uri"], "cid": about["question"]["cid"]}}
    assert question.intent == "question" and question.platform_language == "es"
    addressed = mentions[about["mention"]["uri"]]
    assert addressed.kind == "mention" and addressed.intent == "complaint"
    source.refresh_from_db()
    assert source.malformed_count == 2 and source.consecutive_failures == 0
    assert sorted(MalformedPayload.objects.values_list("code", flat=True)) == ["invalid_json", "unexpected_shape"]
    assert source.posts_seen == 3  # the other posts never left the connector
    assert source.cursor["jetstream_time_us"] == about["hashtag"]["time_us"]
    assert source.cursor["did"] == bsky.did
    assert Conversation.objects.for_store(tracked).count() == 2  # the question and the complaint to the account


def test_every_kind_of_the_real_events_is_read_without_complaint(tracked):
    recorder = Recorder(tracked.pk)
    listening = _Listening(SourceConfig(source_id=1, store_id=tracked.pk, network="bluesky", key="bsky",
                                        settings={"firehose": True, "profiles": False}, secrets={}), recorder)
    lines = list(golden_lines(str(GOLDEN)))
    kinds = {orjson.loads(line)["kind"] for line in lines}
    collections = {orjson.loads(line).get("commit", {}).get("collection") for line in lines}
    assert kinds == {"commit", "identity", "account"} and "app.bsky.feed.like" in collections
    for line in lines:
        listening._on_event(line)
    assert recorder.problems == [] and listening.pending == []  # the one post, a reply about RSV, is not ours
    assert listening.time_us == max(orjson.loads(line)["time_us"] for line in lines)

    tracked_term_add(store=tracked, term="RSV", kind="keyword")
    matchers_forget()
    listening._on_event(lines[1])
    [post] = listening.pending
    assert post.external_id == "at://did:plc:q235v55g5unth4zjjdpacfdr/app.bsky.feed.post/3mmoojp4cd223"
    assert post.in_reply_to == post.thread_root == "at://did:plc:j76trmiofvaxxpvx2vnb2vwf/app.bsky.feed.post/3mmojbrjwbs26"
    assert post.reply_ref["root"] == {"uri": post.thread_root,
                                      "cid": "bafyreiainko5un5pbcdosvxpbisjnjzemojnry6nsgtdftdgslbu37kxai"}
    assert post.language == "en" and post.author_handle == "did:plc:q235v55g5unth4zjjdpacfdr"
    assert post.posted_at == datetime(2026, 5, 25, 14, 23, 28, 757000, tzinfo=UTC)


class Recorder:
    """The session side the firehose parser talks to, keeping what it is told is unreadable."""

    def __init__(self, store_id: int) -> None:
        self.store_id, self.source_id, self.cursor, self.problems = store_id, 1, {}, []

    def malformed(self, raw, *, error, code="unexpected_shape") -> None:
        self.problems.append((code, error))


def test_a_restart_resumes_from_the_cursor_with_no_gap_and_no_duplicate(tracked, bsky):
    source = bluesky_source(tracked, bsky, firehose=True, profiles=False)
    heard = {}
    stream_session(bsky, lambda: heard.setdefault("first", bsky.add_post(text="La Tertulia, qué buen café")))
    source.refresh_from_db()
    first_cursor = source.cursor["jetstream_time_us"]
    assert first_cursor == heard["first"]["time_us"]

    # While nobody listens, the network goes on.
    second = bsky.add_post(text="Vuelvo a La Tertulia mañana")
    bsky.add_post(text="nada que ver")
    make_due(source)
    stream_session(bsky)

    assert bsky.subscriptions[1]["cursor"] == first_cursor - CURSOR_REWIND_US
    assert sorted(Mention.objects.for_store(tracked).values_list("external_id", flat=True)) == sorted(
        [heard["first"]["uri"], second["uri"]])
    source.refresh_from_db()
    assert source.duplicates_seen == 1  # the first post came again in the rewind, and was not stored again
    assert source.cursor["jetstream_time_us"] > second["time_us"]


def test_a_broken_stream_keeps_what_was_read_and_fails_transiently(tracked, bsky):
    source = bluesky_source(tracked, bsky, firehose=True, profiles=False)
    heard = {}
    stream_session(bsky, lambda: heard.setdefault("post", bsky.add_post(text="La Tertulia cierra tarde")), code=1011)
    source.refresh_from_db()
    assert (source.last_error_code, source.consecutive_failures) == ("stream_closed", 1)
    assert source.cursor["jetstream_time_us"] == heard["post"]["time_us"]
    assert Mention.objects.for_store(tracked).get().external_id == heard["post"]["uri"]


def test_the_firehose_and_the_notifications_together_store_a_mention_once(tracked, bsky):
    early = bsky.add_post(text="@latertulia.bsky.social ¿hacéis envíos a Canarias?", handle="eva.bsky.social")
    source = bluesky_source(tracked, bsky, firehose=True, mentions=True)
    # Polled at the start of the session, then heard again on the stream (a replay from an old cursor).
    Source.objects.filter(pk=source.pk).update(cursor={"jetstream_time_us": early["time_us"] + CURSOR_REWIND_US})
    later = {}
    stream_session(bsky, lambda: later.setdefault("post", bsky.add_post(
        text="Respondiendo a @latertulia.bsky.social: gracias", handle="luis.bsky.social")))
    source.refresh_from_db()
    assert bsky.subscriptions[0]["cursor"] == early["time_us"]
    kinds = dict(Mention.objects.for_store(tracked).values_list("external_id", "kind"))
    assert kinds == {early["uri"]: "mention", later["post"]["uri"]: "mention"}
    assert source.duplicates_seen == 1 and source.cursor["polled_at"]
    assert len(calls(bsky, "app.bsky.notification.listNotifications")) == 1


def test_jetstream_refusing_the_subscription_is_a_transient_failure(tracked, bsky):
    source = bluesky_source(tracked, bsky, firehose=True, profiles=False)
    bsky.refuse_subscriptions = 1
    listen_once(worker="w")
    source.refresh_from_db()
    assert (source.last_error_code, source.consecutive_failures) == ("stream_unavailable", 1)
    assert "503" in source.last_error


# --- search and notifications ------------------------------------------------------------------


def test_search_and_mentions_through_xrpc(tracked, bsky):
    bsky.add_account(handle="ana.bsky.social", display_name="Ana García", followers=52)
    announcement = bsky.add_post(text="Nueva colección de otoño", did=bsky.did)
    found = bsky.add_post(text="¿Alguien ha comprado en La Tertulia?", handle="ana.bsky.social", likes=4)
    bsky.add_post(text="La Tertulia de hace dos días", handle="luis.bsky.social",
                  at=timezone.now() - timedelta(days=2))
    answer = bsky.add_post(text="¡Me encanta! ¿Hay talla M?", handle="ana.bsky.social", reply=announcement)
    mention = bsky.add_post(text="Gracias @latertulia.bsky.social por el envío", handle="eva.bsky.social")
    bsky.add_post(text="Leyendo en casa", handle="luis.bsky.social")
    source = bluesky_source(tracked, bsky, search_terms=["La Tertulia"], mentions=True, firehose=False)

    listen_once(worker="w")

    source.refresh_from_db()
    assert source.last_error_code == "" and source.next_run_at > timezone.now() + timedelta(seconds=50)
    mentions = {m.external_id: m for m in Mention.objects.for_store(tracked)}
    assert set(mentions) == {found["uri"], answer["uri"], mention["uri"]}
    assert mentions[found["uri"]].kind == "post" and mentions[found["uri"]].metrics["likes"] == 4
    assert mentions[found["uri"]].author_name == "Ana García" and mentions[found["uri"]].author_followers == 52
    reply = mentions[answer["uri"]]
    assert (reply.kind, reply.in_reply_to, reply.thread_root) == ("mention", announcement["uri"], announcement["uri"])
    assert reply.reply_ref["root"] == {"uri": announcement["uri"], "cid": announcement["cid"]}
    assert mentions[mention["uri"]].kind == "mention"
    [search] = calls(bsky, "app.bsky.feed.searchPosts")
    assert search["params"]["q"] == ["La Tertulia"] and search["params"]["sort"] == ["latest"]
    assert search["params"]["limit"] == ["100"] and search["auth"] == "Bearer "
    [notifications] = calls(bsky, "app.bsky.notification.listNotifications")
    assert notifications["params"]["reasons"] == ["mention", "reply", "quote"]
    assert calls(bsky, "com.atproto.server.createSession")[0]["body"]["identifier"] == bsky.handle

    # The next poll reads from where this one stopped, with the same session.
    newer = bsky.add_post(text="Otra vez en La Tertulia", handle="luis.bsky.social")
    make_due(source)
    listen_once(worker="w")
    assert Mention.objects.for_store(tracked).filter(external_id=newer["uri"]).exists()
    assert Mention.objects.for_store(tracked).count() == 4
    assert len(calls(bsky, "com.atproto.server.createSession")) == 1
    since = datetime.fromisoformat(calls(bsky, "app.bsky.feed.searchPosts")[1]["params"]["since"][0])
    assert since == datetime.fromisoformat(source.cursor["search"]["La Tertulia"]) - timedelta(minutes=5)


def test_a_broken_notification_is_kept_aside_and_the_others_arrive(tracked, bsky):
    good = bsky.add_post(text="@latertulia.bsky.social hola", handle="eva.bsky.social")
    bsky.add_notification_raw({"uri": "at://did:plc:x/app.bsky.feed.post/3abc", "reason": "mention",
                               "indexedAt": good["record"]["createdAt"], "author": {"did": "did:plc:x"},
                               "record": {"createdAt": good["record"]["createdAt"]}})
    source = bluesky_source(tracked, bsky, mentions=True)
    listen_once(worker="w")
    source.refresh_from_db()
    assert list(Mention.objects.for_store(tracked).values_list("external_id", flat=True)) == [good["uri"]]
    assert source.malformed_count == 1 and source.last_error_code == ""
    assert "cid missing" in MalformedPayload.objects.get().error


def test_a_429_waits_until_the_reset_bluesky_gives(tracked, bsky):
    reset = int((timezone.now() + timedelta(minutes=3)).timestamp())
    bsky.fail_next("app.bsky.feed.searchPosts", status=429, error="RateLimitExceeded", message="Rate Limit Exceeded",
                   headers={"RateLimit-Remaining": "0", "RateLimit-Reset": str(reset)})
    source = bluesky_source(tracked, bsky, search_terms=["La Tertulia"])
    listen_once(worker="w")
    source.refresh_from_db()
    assert source.last_error_code == "rate_limited" and source.consecutive_failures == 0
    assert source.next_run_at >= datetime.fromtimestamp(reset, UTC) - timedelta(seconds=5)


def test_remaining_zero_on_a_success_stops_until_the_window_resets(tracked):
    with BlueskySandbox(rate_limit=2) as bsky:  # createSession, then one search: nothing left
        source = bluesky_source(tracked, bsky, search_terms=["La Tertulia"], mentions=True)
        listen_once(worker="w")
        source.refresh_from_db()
        assert source.last_error_code == "rate_limited"
        assert source.next_run_at > timezone.now() + timedelta(seconds=200)
        assert calls(bsky, "app.bsky.feed.searchPosts") == []


def test_a_wrong_app_password_is_an_auth_failure_alerted_at_once(tracked, bsky):
    source = bluesky_source(tracked, bsky, mentions=True, password="wrong-pass-word-here")
    listen_once(worker="w")
    source.refresh_from_db()
    assert source.last_error_code == "auth_failed"
    assert "Invalid identifier or password" in source.last_error
    assert Alert.objects.for_store(tracked).filter(kind="connector_down", closed_at__isnull=True).exists()


def test_an_expired_session_logs_in_again_once(tracked, bsky):
    mention = bsky.add_post(text="@latertulia.bsky.social ¿abrís hoy?", handle="eva.bsky.social")
    source = bluesky_source(tracked, bsky, mentions=True)
    listen_once(worker="w")
    bsky.expire_access_tokens()
    newer = bsky.add_post(text="@latertulia.bsky.social ¿y mañana?", handle="eva.bsky.social")
    make_due(source)
    listen_once(worker="w")
    source.refresh_from_db()
    assert source.last_error_code == ""
    assert set(Mention.objects.for_store(tracked).values_list("external_id", flat=True)) == {mention["uri"], newer["uri"]}
    assert len(calls(bsky, "com.atproto.server.createSession")) == 2


def test_short_lived_tokens_are_refreshed_by_the_sdk(tracked):
    with BlueskySandbox(access_lifetime=600) as bsky:  # the SDK refreshes when less than 15 minutes are left
        mention = bsky.add_post(text="@latertulia.bsky.social hola", handle="eva.bsky.social")
        bluesky_source(tracked, bsky, mentions=True)
        listen_once(worker="w")
        assert calls(bsky, "com.atproto.server.refreshSession")
        assert Mention.objects.for_store(tracked).filter(external_id=mention["uri"]).exists()


def test_settings_are_checked(store, bsky):
    from tertulia.core.errors import ApiError

    with pytest.raises(ApiError) as caught:
        source_set(store=store, network="bluesky", key="b", settings={"search_terms": ["café"], "jetstream_url": "http://x"})
    fields = {d.field for d in caught.value.details}
    assert fields == {"settings.handle", "settings.jetstream_url"}
    with pytest.raises(ApiError):
        source_set(store=store, network="bluesky", key="b", settings={})
    assert source_set(store=store, network="bluesky", key="b", settings={"firehose": True}).settings == {"firehose": True}
    # Without the app password, search cannot log in: the source is misconfigured, and says so at once.
    source = source_set(store=store, network="bluesky", key="b", settings={"search_terms": ["café"],
                                                                         "handle": bsky.handle})
    listen_once(worker="w")
    source.refresh_from_db()
    assert source.last_error_code == "misconfigured" and "app_password" in source.last_error
    # Changing a setting keeps the stored app password.
    configured = bluesky_source(store, bsky, search_terms=["café"])
    changed = source_set(store=store, network="bluesky", key="bsky", settings={**configured.settings,
                                                                            "search_terms": ["té"]})
    assert source_config(changed).secrets == {"app_password": DEFAULT_APP_PASSWORD}


# --- replies -------------------------------------------------------------------------------------


@pytest.fixture
def agent(store):
    user = get_user_model().objects.create_user("marta", "marta@example.com", "x")
    membership_grant(store=store, user=user, role="agent")
    return user


def test_a_reply_goes_out_through_the_dispatcher_and_the_answer_joins_the_conversation(tracked, bsky, agent):
    bsky.add_account(handle="ana.bsky.social", display_name="Ana")
    question = bsky.add_post(text="@latertulia.bsky.social ¿tenéis la talla M del abrigo?", handle="ana.bsky.social")
    source = bluesky_source(tracked, bsky, mentions=True)
    listen_once(worker="w")
    conversation = Conversation.objects.for_store(tracked).get()
    assert (conversation.network, conversation.contact_handle) == ("bluesky", "ana.bsky.social")

    reply_send(store=tracked, conversation_id=conversation.pk, user=agent,
               text="¡Hola @ana.bsky.social! Sí, nos queda la M.")
    assert dispatch_run(worker="t") == 1

    delivery = Delivery.objects.get()
    [posted] = bsky.posted
    assert delivery.status == "sent" and delivery.provider_message_id == posted["uri"]
    reply = posted["record"]["reply"]
    assert {part: (reply[part]["uri"], reply[part]["cid"]) for part in ("root", "parent")} == {
        "root": (question["uri"], question["cid"]), "parent": (question["uri"], question["cid"])}
    assert posted["record"]["text"] == "¡Hola @ana.bsky.social! Sí, nos queda la M."
    assert posted["record"]["facets"][0]["features"][0]["did"] == question["did"]
    assert posted["rkey"] == delivery_rkey(store_id=tracked.pk, delivery_id=delivery.pk,
                                           created_at=delivery.created_at) and is_tid(posted["rkey"])

    inbox_sweep()  # our reply lends its at:// URI to the conversation
    assert Message.objects.get(conversation=conversation, direction="outbound").external_id == posted["uri"]
    thanks = bsky.add_post(text="¡Genial, gracias!", handle="ana.bsky.social", reply=posted)
    make_due(source)
    listen_once(worker="w")

    assert Conversation.objects.for_store(tracked).count() == 1
    assert list(Message.objects.filter(conversation=conversation).order_by("id").values_list("direction", "external_id")) \
        == [("inbound", question["uri"]), ("outbound", posted["uri"]), ("inbound", thanks["uri"])]
    answer = Mention.objects.get(external_id=thanks["uri"])
    assert (answer.in_reply_to, answer.thread_root) == (posted["uri"], question["uri"])


def outbound(store, question, *, delivery_id=7, text="Sí, la tenemos", created_at=None) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, store_id=store.pk, channel="bluesky", to="ana.bsky.social",
                           text=text, language="es", in_reply_to=question["uri"],
                           reply_context={"uri": question["uri"], "cid": question["cid"],
                                          "root": {"uri": question["uri"], "cid": question["cid"]}, "direct": False},
                           sender="source:1", created_at=created_at or timezone.now())


def adapter_for_sandbox(bsky, password=DEFAULT_APP_PASSWORD) -> BlueskyReplyAdapter:
    return BlueskyReplyAdapter(service_url=bsky.base_url, handle=bsky.handle, app_password=password, timeout=5)


def test_a_retried_delivery_is_not_posted_twice(store, bsky):
    question = bsky.add_post(text="¿Abrís hoy?", handle="ana.bsky.social")
    adapter = adapter_for_sandbox(bsky)
    message = outbound(store, question)
    # The PDS creates the post but the answer is lost on the way back.
    bsky.fail_next("com.atproto.repo.createRecord", status=502, error="UpstreamFailure", message="Bad Gateway",
                   after=True)
    first = adapter.send(message)
    again = adapter.send(message)  # a dispatcher that died before recording the send tries again
    assert len(bsky.posted) == 1
    assert first.provider_message_id == again.provider_message_id == bsky.posted[0]["uri"]
    assert first.response["already_posted"] and again.response["already_posted"]
    other = adapter.send(outbound(store, question, delivery_id=8, created_at=message.created_at))
    assert len(bsky.posted) == 2 and other.provider_message_id != first.provider_message_id


@pytest.mark.parametrize(("status", "error", "kind", "code"), [
    (500, "InternalServerError", TransientSendError, "provider_unavailable"),
    (503, "NotEnoughResources", TransientSendError, "provider_unavailable"),
    (429, "RateLimitExceeded", TransientSendError, "rate_limited"),
    (400, "InvalidRequest", PermanentSendError, "provider_rejected"),
    (401, "AuthenticationRequired", PermanentSendError, "auth_failed"),
])
def test_errors_map_to_transient_or_permanent(store, bsky, status, error, kind, code):
    question = bsky.add_post(text="¿Abrís hoy?", handle="ana.bsky.social")
    adapter = adapter_for_sandbox(bsky)
    bsky.fail_next("com.atproto.repo.createRecord", status=status, error=error, message="scripted")
    with pytest.raises(kind) as caught:
        adapter.send(outbound(store, question))
    assert caught.value.code == code and caught.value.response["http_status"] == status
    assert bsky.posted == []
    assert adapter.send(outbound(store, question, delivery_id=9)).provider_status == "posted"


def test_a_wrong_password_or_a_missing_target_is_permanent(store, bsky):
    question = bsky.add_post(text="¿Abrís hoy?", handle="ana.bsky.social")
    with pytest.raises(PermanentSendError) as caught:
        adapter_for_sandbox(bsky, password="nope-nope-nope-nope").send(outbound(store, question))
    assert caught.value.code == "auth_failed"
    message = outbound(store, question)
    message.reply_context = {}
    with pytest.raises(PermanentSendError) as caught:
        adapter_for_sandbox(bsky).send(message)
    assert caught.value.code == "invalid_reply_target"
    assert not calls(bsky, "com.atproto.repo.createRecord")
