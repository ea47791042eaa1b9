"""The RSS/Atom connector against the feed sandbox over real HTTP: conditional GETs, dedupe, errors, garbage."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from tertulia.core.errors import ApiError
from tertulia.listening.classify import classify
from tertulia.listening.connectors import rss
from tertulia.listening.models import Alert, MalformedPayload, Mention, Source
from tertulia.listening.runner import listen_once
from tertulia.listening.sandbox.feeds import FeedSandbox
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import tracked_term_add
from tertulia.listening.sources import source_set

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
RSS_SAMPLE = (FIXTURES / "rss2sample.xml").read_bytes()
ATOM_SAMPLE = (FIXTURES / "rfc4287_example.atom").read_bytes()


@pytest.fixture(autouse=True)
def _fresh_matchers():
    matchers_forget()
    yield
    matchers_forget()


@pytest.fixture
def feeds():
    with FeedSandbox() as sandbox:
        yield sandbox


def feed_source(store, url: str, key: str = "blog", **settings) -> Source:
    return source_set(store=store, network="rss", key=key, settings={"url": url, **settings})


def poll(source: Source) -> Source:
    Source.objects.filter(pk=source.pk).update(next_run_at=timezone.now())
    assert listen_once(worker="t", sweep=False) == 1
    source.refresh_from_db()
    return source


def test_the_rss_specification_sample_becomes_mentions_and_a_second_poll_is_a_304(store, feeds):
    tracked_term_add(store=store, term="Space Station", kind="keyword")
    url = feeds.serve("/rss.xml", RSS_SAMPLE)
    source = poll(feed_source(store, url))
    stored = {m.external_id: m for m in Mention.objects.for_store(store)}
    # Two of the four items name the Space Station; the others are heard and ignored.
    assert set(stored) == {"http://liftoff.msfc.nasa.gov/2003/06/03.html#item573",
                           "http://liftoff.msfc.nasa.gov/2003/05/20.html#item570"}
    star = stored["http://liftoff.msfc.nasa.gov/2003/06/03.html#item573"]
    assert (star.network, star.kind, star.title) == ("rss", "post", "Star City")
    assert star.url == "http://liftoff.msfc.nasa.gov/news/2003/news-starcity.asp"
    assert star.text.endswith("protocol at Russia's Star City.")  # the description's HTML turned into text
    assert star.posted_at == datetime(2003, 6, 3, 9, 39, 21, tzinfo=UTC)
    assert star.platform_language == "en-us"
    assert (source.posts_seen, source.mentions_stored, source.last_error_code) == (4, 2, "")
    assert source.cursor["etag"] and source.cursor["modified"] and len(source.cursor["seen"]) == 4

    source = poll(source)
    second = feeds.requests[-1]
    assert second["headers"]["If-None-Match"] == source.cursor["etag"]
    assert second["headers"]["If-Modified-Since"] == source.cursor["modified"]
    assert second["status"] == 304
    assert (source.posts_seen, source.mentions_stored, source.duplicates_seen) == (4, 2, 0)
    assert source.lag_seconds is not None and source.last_success_at is not None


def test_only_new_entries_are_handed_over_when_the_feed_changes(store, feeds):
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    url = feeds.add_feed("/blog.rss", kind="rss", title="Blog de cocina", language="es")
    feeds.add_entry("/blog.rss", entry_id="https://cocina.example/1", link="https://cocina.example/1",
                    title="Lentejas", html="<p>Con el aceite de <b>Tertulia</b> quedan mejor</p>", author="Marta")
    source = poll(feed_source(store, url))
    assert source.posts_seen == 1
    feeds.add_entry("/blog.rss", entry_id="https://cocina.example/2", link="https://cocina.example/2",
                    title="Garbanzos", html="<p>¿Dónde compro el queso de Tertulia?</p>")
    source = poll(source)
    assert feeds.requests[-1]["status"] == 200  # the feed changed: its validators no longer match
    assert (source.posts_seen, source.mentions_stored, source.duplicates_seen) == (2, 2, 0)
    second = Mention.objects.for_store(store).get(external_id="https://cocina.example/2")
    assert second.text == "¿Dónde compro el queso de Tertulia?"
    assert (second.intent, second.sentiment) == (classify(second.text).intent, classify(second.text).sentiment)
    first = Mention.objects.for_store(store).get(external_id="https://cocina.example/1")
    assert (first.author_name, first.platform_language) == ("Marta", "es")

    # A reset cursor forgets the ids: the feed is handed over again and the unique key stores nothing twice.
    Source.objects.filter(pk=source.pk).update(cursor={})
    source = poll(source)
    assert (source.mentions_stored, source.duplicates_seen) == (2, 2)


def test_atom_feeds_the_rfc_example_and_a_generated_one(store, feeds):
    tracked_term_add(store=store, term="Atom draft", kind="keyword")
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    example = poll(feed_source(store, feeds.serve("/rfc.atom", ATOM_SAMPLE, content_type="application/atom+xml"),
                               key="rfc"))
    mention = Mention.objects.for_store(store).get(external_id="tag:example.org,2003:3.2397")
    assert (mention.title, mention.author_name, mention.platform_language) == ("Atom draft-07 snapshot",
                                                                              "Mark Pilgrim", "en")
    assert mention.text == "[Update: The Atom draft is finished.]"
    assert mention.posted_at == datetime(2003, 12, 13, 12, 29, 29, tzinfo=UTC)  # published, not updated
    assert mention.url == "http://example.org/2005/04/02/atom"
    assert example.mentions_stored == 1

    url = feeds.add_feed("/foro.atom", kind="atom", title="Foro", language="es")
    feeds.add_entry("/foro.atom", entry_id="tag:foro.example,2026:hilo-7", title="Opiniones de Tertulia",
                    html="<p>Llegó roto el pedido</p><p>y nadie contesta</p>", author="Luis",
                    published=timezone.now() - timedelta(hours=2))
    forum = poll(feed_source(store, url, key="foro"))
    post = Mention.objects.for_store(store).get(external_id="tag:foro.example,2026:hilo-7")
    assert post.text == "Llegó roto el pedido\n\ny nadie contesta"
    assert (post.author_name, post.url, post.platform_language) == ("Luis", "", "es")  # no link: no url
    assert forum.mentions_stored == 1
    forum = poll(forum)
    assert feeds.requests[-1]["status"] == 304 and forum.posts_seen == 1


def test_feeds_without_validators_are_fetched_whole_and_nothing_is_handed_over_twice(store, feeds):
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    url = feeds.add_feed("/plain.xml", validators=False)
    feeds.add_entry("/plain.xml", entry_id="42", title="Tertulia abre tienda")  # not a URI: made unique
    source = poll(feed_source(store, url))
    assert Mention.objects.for_store(store).get().external_id == f"{url}#42"
    source = poll(source)
    assert "If-None-Match" not in feeds.requests[-1]["headers"] and feeds.requests[-1]["status"] == 200
    assert (source.posts_seen, source.duplicates_seen) == (1, 0)


@pytest.mark.parametrize(("status", "headers", "code"), [
    (429, {"Retry-After": "120"}, "rate_limited"),
    (503, {"Retry-After": "300"}, "rate_limited"),
    (503, {}, "http_503"),
    (410, {}, "feed_gone"),
    (404, {}, "feed_not_found"),
    (401, {}, "auth_failed"),
])
def test_error_statuses_say_what_happened_and_when_to_look_again(store, feeds, status, headers, code):
    url = feeds.add_feed("/f.xml")
    feeds.fail("/f.xml", status, headers=headers)
    before = timezone.now()
    source = poll(feed_source(store, url))
    assert source.last_error_code == code
    wait = (source.next_run_at - before).total_seconds()
    if code == "rate_limited":
        assert int(headers["Retry-After"]) - 5 <= wait <= int(headers["Retry-After"]) + 5
        assert source.consecutive_failures == 0  # being told to slow down is not a failure
    elif code in ("feed_gone", "auth_failed"):
        assert wait >= 1700  # permanent: nothing is retried soon
        assert source.consecutive_failures == 1
    else:
        assert source.consecutive_failures == 1 and wait < 60  # retried with backoff
    if code == "auth_failed":
        assert Alert.objects.for_store(store).filter(kind="connector_down", source=source).exists()


def test_a_retry_after_date_is_read_as_a_moment():
    moment = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert rss.retry_after_seconds("Tue, 01 Dec 2026 10:05:00 GMT", now=moment) == 300
    assert rss.retry_after_seconds("soon", now=moment) == rss.DEFAULT_RETRY_AFTER


def test_a_hosts_spent_rate_limit_keeps_what_was_read_and_waits_for_the_reset(store, feeds):
    tracked_term_add(store=store, term="Space Station", kind="keyword")
    url = feeds.serve("/limited.xml", RSS_SAMPLE, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "240"})
    before = timezone.now()
    source = poll(feed_source(store, url))
    assert source.mentions_stored == 2 and source.last_error_code == "rate_limited"
    assert 230 <= (source.next_run_at - before).total_seconds() <= 250


def test_a_private_feed_gets_the_authorization_secret(store, feeds):
    url = feeds.add_feed("/private.xml")
    source = source_set(store=store, network="rss", key="privado", settings={"url": url},
                        secrets={"authorization": "Bearer foro-token"})
    poll(source)
    assert feeds.requests[-1]["headers"]["Authorization"] == "Bearer foro-token"


def test_garbage_is_kept_and_only_repeated_garbage_fails_the_source(store, feeds):
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    url = feeds.serve("/broken.xml", b"<html><body><h1>Mantenimiento</h1></body></html>", content_type="text/html")
    source = feed_source(store, url)
    for number in range(1, rss.UNREADABLE_LIMIT):
        source = poll(source)
        assert (source.malformed_count, source.consecutive_failures, source.cursor["unreadable"]) == (number, 0, number)
    kept = MalformedPayload.objects.for_store(store).first()
    assert kept.code == "unreadable_feed" and "Mantenimiento" in kept.raw
    assert "If-None-Match" not in feeds.requests[-1]["headers"]  # garbage is read again, never trusted to a 304
    source = poll(source)
    assert (source.consecutive_failures, source.last_error_code) == (1, "feed_unreadable")

    feeds.add_feed("/broken.xml")
    feeds.add_entry("/broken.xml", entry_id="https://x.example/1", title="Vuelve Tertulia")
    source = poll(source)
    assert (source.consecutive_failures, source.cursor["unreadable"], source.mentions_stored) == (0, 0, 1)


def test_a_feed_cut_short_stores_its_whole_entries_with_a_warning(store, feeds):
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    # Cut in the middle of the second item's description: not well-formed, but the first item is whole.
    truncated = RSS_SAMPLE.replace(b"Star City</title>", b"Star City en Tertulia</title>")[:1200]
    source = poll(feed_source(store, feeds.serve("/cut.xml", truncated)))
    assert source.mentions_stored == 1 and source.last_error_code == ""
    assert "SAXParseException" in source.cursor["warning"]
    # The half item has nothing to know it by (no guid, no link, no whole text): kept as malformed.
    assert source.malformed_count == 1
    assert MalformedPayload.objects.for_store(store).get().code == "unexpected_shape"


def test_nul_characters_from_a_broken_feed_are_dropped(store, feeds):
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    body = RSS_SAMPLE.replace(b"<title>Star City</title>", b"<title>Star&#0; City de Tertulia\x00</title>")
    source = poll(feed_source(store, feeds.serve("/nul.xml", body)))
    assert Mention.objects.for_store(store).get().title == "Star City de Tertulia" and source.last_error_code == ""


def test_a_feed_larger_than_the_cap_is_refused(store, feeds, monkeypatch):
    monkeypatch.setattr(rss, "MAX_BYTES", 2000)
    source = poll(feed_source(store, feeds.serve("/big.xml", RSS_SAMPLE)))  # gzip-encoded, counted decoded
    assert source.last_error_code == "feed_too_large"
    assert not Mention.objects.exists()


def test_an_unreachable_host_is_a_transient_failure(store):
    source = poll(feed_source(store, "http://127.0.0.1:9/feed.xml"))
    assert source.last_error_code == "connection_error" and source.consecutive_failures == 1


def test_a_changed_url_forgets_the_old_feeds_validators(store, feeds):
    first = feeds.serve("/a.xml", RSS_SAMPLE)
    source = poll(feed_source(store, first))
    assert source.cursor["etag"]
    source = poll(feed_source(store, feeds.serve("/b.xml", RSS_SAMPLE)))
    assert "If-None-Match" not in feeds.requests[-1]["headers"] and source.cursor["url"].endswith("/b.xml")


@pytest.mark.parametrize(("settings", "field"), [
    ({"url": "ftp://feeds.example/x"}, "settings.url"),
    ({"url": "https://feeds.example/x", "poll_seconds": 30}, "settings.poll_seconds"),
    ({"url": "https://feeds.example/x", "timeout": 0}, "settings.timeout"),
    ({}, "settings.url"),
])
def test_settings_are_checked(store, settings, field):
    with pytest.raises(ApiError) as caught:
        source_set(store=store, network="rss", key="mal", settings=settings)
    assert field in [detail.field for detail in caught.value.details]
