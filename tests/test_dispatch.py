"""The dispatcher: consent, frequency cap, quiet hours (time zones, DST), retries, permanent errors, leases."""

import os
import smtplib
import threading
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

import pytest
from dispatch_doubles import RecordingAdapter
from django.db import connection
from django.utils import timezone

from tertulia.channels.base import PermanentSendError, TransientSendError
from tertulia.channels.dispatch import (
    deliveries_reclaim_expired,
    delivery_retry_delay,
    dispatch_batch,
    dispatch_run,
)
from tertulia.channels.models import Delivery, DeliveryAttempt, DeliveryStatus
from tertulia.channels.rules import delivery_settings_update, quiet_hours_until
from tertulia.customers.services import consent_record, customer_resolve
from tertulia.journeys.models import Journey

postgres_only = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL (DATABASE_URL)"
)

# 10:00 in Madrid (UTC+1 in winter): outside the default quiet hours.
NOON = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
RECORDER = "dispatch_doubles.RecordingAdapter"


@pytest.fixture(autouse=True)
def recorder(settings):
    settings.TERTULIA_CHANNEL_ADAPTERS = {"email": RECORDER, "sms": RECORDER, "social_dm": RECORDER}
    settings.TERTULIA_DELIVERY_MAX_ATTEMPTS = 3
    RecordingAdapter.reset()
    yield RecordingAdapter
    RecordingAdapter.reset()


def person(store, email="ana@example.com", *, consent=("email",), tz="", phone=None):
    identities = [("email", email)] + ([("phone", phone)] if phone else [])
    customer = customer_resolve(store=store, identities=identities, fields={"timezone": tz} if tz else {})
    for channel in consent:
        consent_record(store=store, customer_id=customer.pk, channel=channel, status="subscribed", source="test",
                       occurred_at=NOON - timedelta(days=30))
    return customer


def delivery(store, customer, *, channel="email", due=NOON, journey="abandoned_cart", to=None, **fields):
    return Delivery.objects.create(
        store=store, customer=customer, channel=channel, journey_key=journey, step_key=fields.pop("step_key", "s1"),
        due_at=due, to_address=to if to is not None else customer.identities.get(kind="email").value,
        subject="¿Te olvidaste algo?", body_text="Tu carrito te espera.", **fields,
    )


def journeys_off(store):
    from tertulia.journeys.definitions import journeys_ensure_defaults

    journeys_ensure_defaults(store=store)
    Journey.objects.for_store(store).update(enabled=False)


def run(now=NOON, worker="w1"):
    return dispatch_run(worker=worker, now=now)


def fresh(row):
    row.refresh_from_db()
    return row


# --- sending -------------------------------------------------------------------------------------


def test_due_delivery_is_sent_once_and_its_attempt_recorded(store, recorder):
    ana = person(store)
    due = delivery(store, ana)
    later = delivery(store, ana, due=NOON + timedelta(hours=20), journey="welcome")

    assert run() == 1
    assert [m.delivery_id for m in recorder.sent] == [due.pk]
    message = recorder.sent[0]
    assert (message.to, message.subject, message.text, message.channel) == (
        "ana@example.com", "¿Te olvidaste algo?", "Tu carrito te espera.", "email")

    due = fresh(due)
    assert due.status == DeliveryStatus.SENT
    assert due.sent_at == NOON
    assert due.attempts == 1
    assert (due.provider, due.provider_message_id, due.provider_status) == ("recorder", f"rec-{due.pk}", "accepted")
    assert due.lease_expires_at is None
    (attempt,) = DeliveryAttempt.objects.filter(delivery=due)
    assert (attempt.number, attempt.outcome, attempt.provider) == (1, "sent", "recorder")
    assert attempt.provider_response == {"status": 250, "id": due.pk}
    assert fresh(later).status == DeliveryStatus.SCHEDULED

    assert run() == 0  # nothing twice
    assert len(recorder.sent) == 1


def test_delivery_without_an_address_is_skipped(store, recorder):
    ana = person(store)
    row = delivery(store, ana, to="")
    run()
    row = fresh(row)
    assert (row.status, row.reason) == (DeliveryStatus.SKIPPED, "no_address")
    assert recorder.sent == []


def test_channel_without_an_account_fails_permanently_with_the_reason(store, settings, recorder):
    settings.TERTULIA_CHANNEL_ADAPTERS = {}
    settings.TERTULIA_CHANNELS_SANDBOX = False
    ana = person(store, consent=("sms",), phone="+34600111222")
    row = delivery(store, ana, channel="sms", to="+34600111222")
    run()
    row = fresh(row)
    assert (row.status, row.reason) == (DeliveryStatus.FAILED, "channel_not_configured")
    assert DeliveryAttempt.objects.get(delivery=row).outcome == "permanent_error"


# --- consent ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [None, "unsubscribed", "pending_confirmation", "sms-only"])
def test_no_consent_on_the_channel_means_skipped(store, recorder, state):
    ana = person(store, consent=())
    if state == "sms-only":
        consent_record(store=store, customer_id=ana.pk, channel="sms", status="subscribed", source="test")
    elif state:
        consent_record(store=store, customer_id=ana.pk, channel="email", status=state, source="test")
    row = delivery(store, ana)
    run()
    row = fresh(row)
    assert (row.status, row.reason) == (DeliveryStatus.SKIPPED, "no_consent")
    assert recorder.sent == []
    assert not DeliveryAttempt.objects.exists()


def test_unsubscribing_after_scheduling_stops_the_message_also_outside_journeys(store, recorder):
    ana = person(store)
    journey_step = delivery(store, ana)
    reply = delivery(store, ana, journey="", step_key="")
    consent_record(store=store, customer_id=ana.pk, channel="email", status="unsubscribed",
                   source="unsubscribe_link", occurred_at=NOON - timedelta(minutes=1))
    run()
    assert recorder.sent == []
    assert {fresh(journey_step).reason, fresh(reply).reason} == {"no_consent"}


def test_erased_customer_gets_nothing(store, recorder):
    ana = person(store)
    row = delivery(store, ana)
    type(ana).objects.filter(pk=ana.pk).update(erased_at=NOON - timedelta(days=1))
    run()
    assert fresh(row).status == DeliveryStatus.SKIPPED
    assert recorder.sent == []


# --- frequency cap ---------------------------------------------------------------------------------


def test_one_message_per_person_and_channel_in_16_hours_across_journeys(store, recorder):
    delivery_settings_update(store=store, quiet_hours_start=clock(0), quiet_hours_end=clock(0))  # cap alone
    ana = person(store, consent=("email", "sms"), phone="+34600111222")
    first = delivery(store, ana, journey="abandoned_cart")
    second = delivery(store, ana, journey="winback")
    sms = delivery(store, ana, channel="sms", to="+34600111222", journey="winback")

    run()
    assert fresh(first).status == DeliveryStatus.SENT
    assert fresh(sms).status == DeliveryStatus.SENT  # another channel has its own cap
    second = fresh(second)
    assert (second.status, second.reason) == (DeliveryStatus.SCHEDULED, "frequency_cap")
    # Same batch: it looks again shortly (the first might still have failed), then waits the window out.
    assert second.due_at == NOON + timedelta(seconds=60)
    run(NOON + timedelta(minutes=1))
    second = fresh(second)
    assert (second.status, second.due_at) == (DeliveryStatus.SCHEDULED, NOON + timedelta(hours=16))

    run(NOON + timedelta(hours=15, minutes=59))
    assert fresh(second).status == DeliveryStatus.SCHEDULED
    run(NOON + timedelta(hours=16))
    assert fresh(second).status == DeliveryStatus.SENT  # postponed, never dropped
    assert [m.delivery_id for m in recorder.sent] == [first.pk, sms.pk, second.pk]


def test_cap_counts_messages_sent_in_earlier_runs_and_is_set_per_store(store, recorder):
    delivery_settings_update(store=store, frequency_cap_seconds=3600)
    ana = person(store)
    delivery(store, ana)
    run()
    later = delivery(store, ana, journey="winback", due=NOON + timedelta(minutes=10))
    run(NOON + timedelta(minutes=10))
    later = fresh(later)
    assert (later.status, later.reason, later.due_at) == (DeliveryStatus.SCHEDULED, "frequency_cap",
                                                          NOON + timedelta(hours=1))
    run(NOON + timedelta(hours=1))
    assert fresh(later).status == DeliveryStatus.SENT


def test_cap_off_and_exempt_journeys(store, recorder):
    ana = person(store)
    Journey.objects.create(store=store, key="welcome", definition={"frequency_exempt": True, "steps": []})
    delivery(store, ana, journey="abandoned_cart")
    exempt = delivery(store, ana, journey="welcome")
    run()
    assert fresh(exempt).status == DeliveryStatus.SENT

    other = person(store, "luis@example.com")
    delivery_settings_update(store=store, frequency_cap_seconds=0)
    rows = [delivery(store, other, journey=key, due=NOON + timedelta(hours=1)) for key in ("thank_you", "winback")]
    run(NOON + timedelta(hours=1))
    assert {fresh(row).status for row in rows} == {DeliveryStatus.SENT}


# --- quiet hours -----------------------------------------------------------------------------------


def test_quiet_hours_postpone_to_their_end_in_the_persons_time_zone(store, recorder):
    night = datetime(2025, 1, 15, 21, 30, tzinfo=UTC)  # 22:30 in Madrid, 16:30 in New York
    madrid = person(store, "ana@example.com")  # no time zone of their own: the store's (Europe/Madrid)
    new_york = person(store, "joe@example.com", tz="America/New_York")
    bogus = person(store, "eve@example.com", tz="Mars/Olympus")  # unknown: the store's
    rows = {name: delivery(store, who, due=night) for name, who in
            (("madrid", madrid), ("new_york", new_york), ("bogus", bogus))}
    run(night)
    assert fresh(rows["new_york"]).status == DeliveryStatus.SENT
    for name in ("madrid", "bogus"):
        row = fresh(rows[name])
        assert (row.status, row.reason) == (DeliveryStatus.SCHEDULED, "quiet_hours")
        assert row.due_at == datetime(2025, 1, 16, 7, 0, tzinfo=UTC)  # 08:00 in Madrid
    run(datetime(2025, 1, 16, 7, 0, tzinfo=UTC))
    assert {fresh(row).status for row in rows.values()} == {DeliveryStatus.SENT}


def test_inbox_replies_ignore_quiet_hours_but_not_consent(store, recorder):
    night = datetime(2025, 1, 15, 23, 0, tzinfo=UTC)
    ana = person(store)
    reply = delivery(store, ana, journey="", step_key="", due=night)
    run(night)
    assert fresh(reply).status == DeliveryStatus.SENT


def test_store_quiet_hours_setting_and_cap_then_quiet_hours(store, recorder):
    delivery_settings_update(store=store, quiet_hours_start=clock(13, 0), quiet_hours_end=clock(15, 0))
    ana = person(store)
    at_lunch = datetime(2025, 1, 15, 12, 30, tzinfo=UTC)  # 13:30 in Madrid
    row = delivery(store, ana, due=at_lunch)
    run(at_lunch)
    assert fresh(row).due_at == datetime(2025, 1, 15, 14, 0, tzinfo=UTC)
    # Cap end falling in the quiet hours: waits for both.
    delivery_settings_update(store=store, frequency_cap_seconds=3600)
    run(datetime(2025, 1, 15, 14, 0, tzinfo=UTC))
    later = delivery(store, ana, journey="winback", due=datetime(2025, 1, 15, 23, 30, tzinfo=UTC))
    delivery_settings_update(store=store, frequency_cap_seconds=24 * 3600)
    run(datetime(2025, 1, 15, 23, 30, tzinfo=UTC))
    # 14:00Z + 24 h = 16th 14:00Z = 15:00 Madrid: the end of the window, so it may go then.
    assert fresh(later).due_at == datetime(2025, 1, 16, 14, 0, tzinfo=UTC)


MADRID = ZoneInfo("Europe/Madrid")


@pytest.mark.parametrize(
    ("moment", "zone", "start", "end", "expected"),
    [
        # The night the clocks go forward in Madrid (30 March 2025, 02:00 -> 03:00): 08:00 is already UTC+2.
        (datetime(2025, 3, 29, 22, 0, tzinfo=UTC), MADRID, clock(21), clock(8), datetime(2025, 3, 30, 6, 0, tzinfo=UTC)),
        # The night they go back (26 October 2025): 08:00 is UTC+1 again.
        (datetime(2025, 10, 25, 20, 0, tzinfo=UTC), MADRID, clock(21), clock(8), datetime(2025, 10, 26, 7, 0, tzinfo=UTC)),
        # After midnight, before the end: the same local day.
        (datetime(2025, 10, 26, 1, 30, tzinfo=UTC), MADRID, clock(21), clock(8), datetime(2025, 10, 26, 7, 0, tzinfo=UTC)),
        # New York moves a different weekend (9 March 2025).
        (datetime(2025, 3, 9, 4, 0, tzinfo=UTC), ZoneInfo("America/New_York"), clock(21), clock(8),
         datetime(2025, 3, 9, 12, 0, tzinfo=UTC)),
        # An end that does not exist that night (02:30 skipped): never earlier than the gap, at 03:30 local.
        (datetime(2025, 3, 29, 23, 0, tzinfo=UTC), MADRID, clock(23), clock(2, 30), datetime(2025, 3, 30, 1, 30, tzinfo=UTC)),
        # Outside the window, or no window at all.
        (datetime(2025, 3, 30, 10, 0, tzinfo=UTC), MADRID, clock(21), clock(8), None),
        (datetime(2025, 3, 30, 22, 0, tzinfo=UTC), MADRID, clock(0), clock(0), None),
    ],
)
def test_quiet_hours_across_daylight_saving_changes(moment, zone, start, end, expected):
    assert quiet_hours_until(moment=moment, zone=zone, start=start, end=end) == expected
    if expected is not None:
        assert quiet_hours_until(moment=expected, zone=zone, start=start, end=end) is None


# --- failures --------------------------------------------------------------------------------------


def test_transient_errors_are_retried_with_backoff_then_fail(store, recorder, settings):
    settings.TERTULIA_DELIVERY_RETRY_BASE_SECONDS = 60
    ana = person(store)
    row = delivery(store, ana)
    recorder.plan["ana@example.com"] = [
        TransientSendError("421 try later", provider="recorder", response={"code": 421, "message": "try later"}),
        TimeoutError("timed out"),
        TransientSendError("451 still busy", provider="recorder", code="smtp_busy"),
    ]
    now = NOON
    for attempt in (1, 2):
        run(now)
        row = fresh(row)
        assert (row.status, row.attempts, row.reason) == (DeliveryStatus.SCHEDULED, attempt, "provider_error")
        delay = row.due_at - now
        assert timedelta(seconds=30 * 2 ** (attempt - 1)) <= delay <= timedelta(seconds=60 * 2 ** (attempt - 1))
        assert run(row.due_at - timedelta(seconds=1)) == 0  # not before its time
        now = row.due_at
    run(now)
    row = fresh(row)
    assert (row.status, row.attempts, row.reason) == (DeliveryStatus.FAILED, 3, "smtp_busy")
    attempts = list(DeliveryAttempt.objects.filter(delivery=row).order_by("number"))
    assert [a.outcome for a in attempts] == ["transient_error"] * 3
    assert attempts[0].provider_response == {"code": 421, "message": "try later"}
    assert "timed out" in attempts[1].error
    assert recorder.sent == []


@pytest.mark.parametrize("response", [
    {"retry_after": 900},
    {"rate_limit_reset": (NOON + timedelta(minutes=15)).isoformat()},
    {"ratelimit_reset": (NOON + timedelta(minutes=15)).timestamp()},
])
def test_a_rate_limited_send_waits_for_the_providers_reset(store, recorder, response):
    ana = person(store)
    row = delivery(store, ana)
    recorder.plan["ana@example.com"] = [TransientSendError("429", provider="recorder", code="rate_limited",
                                                           response=response)]
    run(NOON)
    row = fresh(row)
    assert (row.status, row.reason) == (DeliveryStatus.SCHEDULED, "rate_limited")
    assert NOON + timedelta(minutes=15) <= row.due_at <= NOON + timedelta(minutes=15, seconds=1)
    assert run(NOON + timedelta(minutes=14)) == 0
    run(row.due_at)
    assert fresh(row).status == DeliveryStatus.SENT


def test_permanent_error_fails_at_once_and_the_batch_goes_on(store, recorder):
    ana, luis = person(store), person(store, "luis@example.com")
    bad = delivery(store, ana)
    good = delivery(store, luis)
    recorder.plan["ana@example.com"] = [
        PermanentSendError("550 no such user", provider="recorder", response={"code": 550}, code="rejected")]
    run()
    bad, good = fresh(bad), fresh(good)
    assert (bad.status, bad.reason, bad.attempts) == (DeliveryStatus.FAILED, "rejected", 1)
    assert "550 no such user" in bad.detail
    assert DeliveryAttempt.objects.get(delivery=bad).provider_response == {"code": 550}
    assert good.status == DeliveryStatus.SENT


def test_any_exception_from_an_adapter_is_a_failed_try_not_a_crash(store, recorder):
    ana, luis = person(store), person(store, "luis@example.com")
    broken = delivery(store, ana)
    good = delivery(store, luis)
    recorder.plan["ana@example.com"] = [ZeroDivisionError("adapter bug"), smtplib.SMTPServerDisconnected("gone")]
    run()
    assert fresh(broken).status == DeliveryStatus.SCHEDULED
    assert "ZeroDivisionError: adapter bug" in DeliveryAttempt.objects.get(delivery=broken).error
    assert fresh(good).status == DeliveryStatus.SENT


def test_retry_delay_grows_with_jitter(settings):
    settings.TERTULIA_DELIVERY_RETRY_BASE_SECONDS = 10
    settings.TERTULIA_DELIVERY_RETRY_MAX_SECONDS = 60
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        delays = {delivery_retry_delay(attempt).total_seconds() for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1


# --- leases ----------------------------------------------------------------------------------------


def killed_mid_send(row, *, attempts=1, lease_until=NOON - timedelta(seconds=1)):
    """What a dispatcher killed while sending leaves behind."""
    Delivery.objects.filter(pk=row.pk).update(status=DeliveryStatus.SENDING, claimed_by="dead", attempts=attempts,
                                              lease_expires_at=lease_until, sent_at=NOON - timedelta(minutes=1))


def test_expired_claim_comes_back_and_is_sent(store, recorder):
    ana = person(store)
    row = delivery(store, ana)
    killed_mid_send(row, lease_until=NOON + timedelta(seconds=30))
    assert run() == 0  # the lease still holds: nobody else touches it
    assert fresh(row).status == DeliveryStatus.SENDING

    assert run(NOON + timedelta(seconds=31)) == 1
    row = fresh(row)
    assert (row.status, row.attempts, row.claimed_by) == (DeliveryStatus.SENT, 2, "w1")
    assert DeliveryAttempt.objects.get(delivery=row).number == 2
    assert [m.delivery_id for m in recorder.sent] == [row.pk]


def test_expired_claim_without_tries_left_fails(store, recorder):
    ana = person(store)
    row = delivery(store, ana)
    killed_mid_send(row, attempts=3)
    assert deliveries_reclaim_expired(now=NOON) == 1
    row = fresh(row)
    assert (row.status, row.reason) == (DeliveryStatus.FAILED, "lease_expired")
    assert recorder.sent == []


def test_a_lost_lease_does_not_overwrite_the_new_owner(store, recorder):
    ana = person(store)
    row = delivery(store, ana)

    def steal(message):
        # While we send, our lease "expires" and another dispatcher takes the row.
        Delivery.objects.filter(pk=message.delivery_id).update(claimed_by="thief")

    recorder.on_send = steal
    dispatch_batch(worker="slow", now=NOON)
    row = fresh(row)
    assert (row.status, row.claimed_by) == (DeliveryStatus.SENDING, "thief")
    assert DeliveryAttempt.objects.get(delivery=row).outcome == "sent"  # the try is history all the same


# --- metrics, the worker ---------------------------------------------------------------------------


def test_metrics_count_deliveries(store, recorder, client):
    ana = person(store)
    delivery(store, ana)
    delivery(store, person(store, "luis@example.com", consent=()))
    run()
    body = client.get("/metrics").content.decode()
    assert 'tertulia_deliveries_total{channel="email",outcome="sent"}' in body
    assert 'tertulia_deliveries_total{channel="email",outcome="skipped"}' in body
    assert "tertulia_delivery_lag_seconds_bucket" in body


def test_the_worker_runs_the_dispatcher(transactional_db, store, recorder):
    from tertulia.core.worker import run_worker

    journeys_off(store)  # the worker's trigger sweep would otherwise welcome the new subscriber
    ana = person(store)
    row = delivery(store, ana, due=timezone.now())
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, kwargs={"stop": stop, "poll_interval": 0.05, "housekeeping": False})
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while fresh(row).status != DeliveryStatus.SENT:
            assert time.monotonic() < deadline, "the worker did not send the delivery"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert [m.delivery_id for m in recorder.sent] == [row.pk]


def test_worker_once_dispatches_what_is_due(store, recorder):
    from django.core.management import call_command

    journeys_off(store)
    ana = person(store)
    row = delivery(store, ana, due=timezone.now() - timedelta(seconds=1))
    call_command("worker", "--once", "--name", "cli")
    assert fresh(row).status == DeliveryStatus.SENT


@postgres_only
def test_two_dispatchers_never_send_one_delivery_twice_and_share_the_cap(transactional_db, store, recorder):
    people = [person(store, f"p{n}@example.com") for n in range(60)]
    rows = [delivery(store, who, journey=journey, due=NOON) for who in people for journey in ("abandoned_cart", "winback")]
    errors = []

    def dispatcher(name):
        try:
            while dispatch_batch(worker=name, batch_size=7, now=NOON):
                pass
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    sent = [m.delivery_id for m in recorder.sent]
    assert len(sent) == len(set(sent)) == len(people)  # one per person: the cap held across both
    statuses = Delivery.objects.filter(pk__in=[r.pk for r in rows]).values_list("status", flat=True)
    assert sorted(set(statuses)) == [DeliveryStatus.SCHEDULED, DeliveryStatus.SENT]
