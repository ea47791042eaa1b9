"""The double opt-in e-mail: the one message that goes on a pending consent, because it is the request for it."""

from datetime import timedelta

import pytest
from test_dispatch import NOON, delivery, fresh, person, recorder, run  # noqa: F401 - recorder is a fixture

from tertulia.channels.models import DeliveryStatus
from tertulia.customers.services import consent_record


def email_consent(store, customer, status, at=NOON - timedelta(minutes=5)):
    consent_record(store=store, customer_id=customer.pk, channel="email", status=status, source="test", occurred_at=at)


def confirmation(store, customer, **fields):
    return delivery(store, customer, journey="welcome", step_key="confirm", **fields)


@pytest.mark.django_db
def test_confirmation_goes_on_a_pending_consent_at_once_even_at_night_and_after_another_message(store, recorder):  # noqa: F811 - the fixture imported above
    ana = person(store, consent=())
    email_consent(store, ana, "pending_confirmation")
    night = NOON + timedelta(hours=13)  # 23:00 in Madrid: inside the default quiet hours
    earlier = delivery(store, ana, journey="winback", due=night - timedelta(hours=1))
    earlier.status, earlier.sent_at = DeliveryStatus.SENT, night - timedelta(hours=1)
    earlier.save()
    row = confirmation(store, ana, due=night)
    run(now=night)
    assert fresh(row).status == DeliveryStatus.SENT
    assert [m.delivery_id for m in recorder.sent] == [row.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["unsubscribed", "subscribed", None])
def test_confirmation_never_goes_without_a_pending_request(store, recorder, status):  # noqa: F811 - the fixture imported above
    ana = person(store, consent=())
    if status:
        email_consent(store, ana, status)
    row = confirmation(store, ana)
    run()
    assert (fresh(row).status, row.reason) == (DeliveryStatus.SKIPPED, "no_consent")
    assert recorder.sent == []


@pytest.mark.django_db
def test_a_pending_consent_lets_nothing_else_through(store, recorder):  # noqa: F811 - the fixture imported above
    ana = person(store, consent=())
    email_consent(store, ana, "pending_confirmation")
    welcome = delivery(store, ana, journey="welcome", step_key="email_1")
    other = delivery(store, ana, journey="abandoned_cart", step_key="confirm")
    run()
    assert {fresh(welcome).status, fresh(other).status} == {DeliveryStatus.SKIPPED}
    assert recorder.sent == []


@pytest.mark.django_db
def test_the_welcome_journey_sends_its_confirmation_with_the_link(store, settings):
    """Through the engine: double opt-in on, a pending subscriber gets the confirmation e-mail, rendered."""
    from test_journeys_support import NOW, deliveries, subscribe
    from test_journeys_support import fresh as journeys_fresh

    from tertulia.channels.dispatch import dispatch_run
    from tertulia.channels.rules import delivery_settings_update
    from tertulia.journeys.definitions import journey_update, journeys_ensure_defaults
    from tertulia.journeys.triggers import triggers_sweep

    settings.TERTULIA_CHANNEL_ADAPTERS = {"email": "dispatch_doubles.RecordingAdapter"}
    journeys_fresh()
    journeys_ensure_defaults(store=store)
    delivery_settings_update(store=store, quiet_hours_start=NOON.time(), quiet_hours_end=NOON.time())
    journey_update(store=store, key="welcome", changes={"trigger": {"double_opt_in": True}})
    subscribe(store, "ana@example.com", at=NOW, status="pending_confirmation")
    triggers_sweep(now=NOW + timedelta(seconds=3), store=store)
    dispatch_run(worker="t", now=NOW + timedelta(seconds=5))
    row = deliveries(store, "welcome").get()
    assert (row.step_key, row.status) == ("confirm", DeliveryStatus.SENT)
    assert "/c/" in row.body_text
