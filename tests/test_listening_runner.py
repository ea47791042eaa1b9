"""The listening runner: sessions, cursors, health, backoff, alerts, rate budgets and leases."""

from datetime import timedelta

import listening_fake_connector as fake
import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from tertulia.core.services import membership_grant
from tertulia.core.worker import run_worker
from tertulia.listening.connectors import AuthFailed, ConnectorError, Post
from tertulia.listening.models import Alert, MalformedPayload, Mention, Source
from tertulia.listening.runner import LeaseLost, listen_once, source_claim, source_session_run
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import tracked_term_add
from tertulia.listening.sources import source_describe, source_set

pytestmark = pytest.mark.django_db
FAKE = override_settings(TERTULIA_LISTENING_CONNECTORS={"mastodon": "listening_fake_connector"})


@pytest.fixture(autouse=True)
def _fake():
    fake.SCRIPT.clear()
    fake.SESSIONS.clear()
    matchers_forget()
    with FAKE:
        yield


@pytest.fixture
def source(store):
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    return source_set(store=store, network="mastodon", key="social", settings={"tag": "tertulia"},
                      secrets={"token": "s3cret"})


def post(external_id: str, text: str = "Me encanta Tertulia") -> Post:
    return Post(network="mastodon", external_id=external_id, text=text, posted_at=timezone.now() - timedelta(minutes=1))


def make_due(source: Source) -> None:
    Source.objects.filter(pk=source.pk).update(next_run_at=timezone.now())


def test_a_session_stores_posts_and_its_cursor_and_the_next_resumes_from_it(source):
    fake.SCRIPT.append(lambda s: s.emit([post("1"), post("2", "nada que ver")], {"since_id": "2"}))
    fake.SCRIPT.append(lambda s: s.emit([post("2", "nada que ver"), post("3")], {"since_id": "3"}))
    assert listen_once(worker="w1") == 1
    source.refresh_from_db()
    assert source.cursor == {"since_id": "2"} and fake.SESSIONS[0]["secrets"] == {"token": "s3cret"}
    assert (source.posts_seen, source.mentions_stored, source.last_error_code) == (2, 1, "")
    assert source.next_run_at > timezone.now() + timedelta(seconds=50)  # the poll interval
    assert source_describe(source)["health"]["status"] == "ok"

    make_due(source)
    listen_once(worker="w2")
    assert fake.SESSIONS[1]["cursor"] == {"since_id": "2"}
    source.refresh_from_db()
    assert source.cursor == {"since_id": "3"}
    assert sorted(Mention.objects.values_list("external_id", flat=True)) == ["1", "3"]


def test_malformed_payloads_are_kept_counted_and_do_not_stop_the_session(source):
    def session(s):
        s.malformed(b'{"id": 5, "content": ', error="truncated JSON", code="invalid_json")
        s.emit([post("6"), Post(network="mastodon", external_id="", text="Tertulia", posted_at=timezone.now())],
               {"since_id": "6"})

    fake.SCRIPT.append(session)
    listen_once(worker="w")
    source.refresh_from_db()
    assert source.malformed_count == 2 and source.consecutive_failures == 0
    assert list(Mention.objects.values_list("external_id", flat=True)) == ["6"]
    kept = MalformedPayload.objects.order_by("id")
    assert [m.code for m in kept] == ["invalid_json", "invalid_post"]
    assert kept[0].raw == '{"id": 5, "content": '


def _fail(session):
    raise ConnectorError("connection refused", code="connection_error")


def test_failures_back_off_and_alert_the_team_after_three_then_recovery_closes_it(store, source, django_user_model):
    owner = django_user_model.objects.create_user("owner", email="owner@example.com", password="x")
    membership_grant(store=store, user=owner, role="owner")
    delays = []
    for attempt in range(3):
        fake.SCRIPT.append(_fail)
        before = timezone.now()
        make_due(source)
        listen_once(worker="w")
        source.refresh_from_db()
        delays.append((source.next_run_at - before).total_seconds())
        assert source.consecutive_failures == attempt + 1 and source.last_error_code == "connection_error"
        assert Alert.objects.filter(kind="connector_down").exists() == (attempt == 2)
    assert delays[0] < delays[2]  # exponential: 7.5-15 s, then 30-60 s
    assert source_describe(source)["health"]["status"] == "down"
    alert = Alert.objects.get(kind="connector_down")
    assert alert.details["failures"] == 3 and "connection refused" in alert.details["error"]

    run_worker(once=True, name="t", housekeeping=False, dispatch=False, listen=False)
    assert [m.to for m in mail.outbox] == [["owner@example.com"]]
    assert "stopped working" in mail.outbox[0].subject or "dejado de funcionar" in mail.outbox[0].subject
    alert.refresh_from_db()
    assert alert.notified_at is not None

    fake.SCRIPT.append(lambda s: s.emit([post("9")], {"since_id": "9"}))
    make_due(source)
    listen_once(worker="w")
    source.refresh_from_db()
    alert.refresh_from_db()
    assert source.consecutive_failures == 0 and source.failing_since is None and alert.closed_at is not None


def test_bad_credentials_alert_at_once_and_wait_long(source):
    def session(s):
        raise AuthFailed("The access token is invalid")

    fake.SCRIPT.append(session)
    listen_once(worker="w")
    source.refresh_from_db()
    assert source.last_error_code == "auth_failed"
    assert source.next_run_at > timezone.now() + timedelta(minutes=25)
    assert Alert.objects.filter(kind="connector_down", closed_at__isnull=True).count() == 1


def test_a_crashing_connector_is_a_failed_session_not_a_dead_runner(source):
    fake.SCRIPT.append(lambda s: 1 / 0)
    assert source_session_run(source=source_claim(worker="w", lease=60), worker="w") == "failed"
    source.refresh_from_db()
    assert source.last_error_code == "connector_crashed" and "ZeroDivisionError" in source.last_error


def test_the_request_budget_holds_across_sessions_and_a_spent_one_is_not_a_failure(source):
    def five_requests(s):
        for _ in range(5):
            s.throttle()

    fake.SCRIPT.append(five_requests)
    fake.SCRIPT.append(lambda s: s.throttle())  # the sixth request in the same 5-minute window
    listen_once(worker="w")
    make_due(source)
    listen_once(worker="w")
    source.refresh_from_db()
    assert source.last_error_code == "rate_limited" and source.consecutive_failures == 0
    assert timedelta(minutes=4) < source.next_run_at - timezone.now() <= timedelta(minutes=5)

    def headers_say_spent(s):
        s.rate_limit_seen(remaining=0, reset_at=timezone.now() + timedelta(seconds=90))

    Source.objects.filter(pk=source.pk).update(rate_window_requests=0, next_run_at=timezone.now())
    fake.SCRIPT.append(headers_say_spent)
    listen_once(worker="w")
    source.refresh_from_db()
    assert timedelta(seconds=80) < source.next_run_at - timezone.now() <= timedelta(seconds=90)


def test_an_expired_claim_is_taken_over_and_the_old_holder_writes_nothing(source):
    first = source_claim(worker="dead", lease=60)
    assert first is not None and source_claim(worker="other", lease=60) is None  # held
    Source.objects.filter(pk=source.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    taken = source_claim(worker="other", lease=60)
    assert taken is not None and taken.pk == source.pk

    def late(s):
        with pytest.raises(LeaseLost):
            s.emit([post("late")], {"since_id": "late"})
        raise LeaseLost("gone")

    fake.SCRIPT.append(late)
    assert source_session_run(source=first, worker="dead") == "lost"
    source.refresh_from_db()
    assert source.claimed_by == "other" and source.cursor == {} and not Mention.objects.exists()


def test_disabled_sources_are_never_claimed(source):
    Source.objects.filter(pk=source.pk).update(enabled=False)
    assert listen_once(worker="w") == 0


def test_health_reaches_metrics(client, source):
    for _ in range(3):
        fake.SCRIPT.append(_fail)
        make_due(source)
        listen_once(worker="w")
    text = client.get("/metrics").content.decode()
    labels = 'network="mastodon",source="social",store="tienda"'
    assert f"tertulia_listening_source_up{{{labels}}} 0.0" in text
    assert f"tertulia_listening_source_down{{{labels}}} 1.0" in text
    assert f"tertulia_listening_source_consecutive_failures{{{labels}}} 3.0" in text
    assert 'tertulia_listening_alerts_open{kind="connector_down",store="tienda"} 1.0' in text


def test_the_newest_post_heard_only_moves_forward(source):
    old, new = timezone.now() - timedelta(hours=3), timezone.now() - timedelta(minutes=2)
    fake.SCRIPT.append(lambda s: s.emit([Post(network="mastodon", external_id="n1", text="Tertulia", posted_at=new)]))
    fake.SCRIPT.append(lambda s: s.emit([Post(network="mastodon", external_id="n0", text="Tertulia", posted_at=old)]))
    listen_once(worker="w")
    source.refresh_from_db()
    assert source.newest_post_at == new
    make_due(source)
    listen_once(worker="w")
    source.refresh_from_db()
    assert source.newest_post_at == new and source.posts_seen == 2 and source.mentions_stored == 2
