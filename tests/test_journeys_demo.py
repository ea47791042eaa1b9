"""The demo store runs every journey: its seed sets them going, and recovery e-mails reach the outbox at once."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tertulia.channels.dispatch import dispatch_run
from tertulia.channels.models import DeliveryStatus, OutboxMessage
from tertulia.journeys.models import Journey
from tertulia.journeys.triggers import triggers_sweep
from tertulia.ops.demo_data import demo_store_seed
from tests.test_journeys_support import deliveries, enrollments, fresh

# 11:00 in Madrid, and 23:00: the demo store has no quiet hours, so a newcomer at night sees mail too.
SEEDED = datetime(2025, 3, 11, 10, 0, tzinfo=UTC)


@pytest.fixture(params=[SEEDED, SEEDED + timedelta(hours=12)], ids=["morning", "night"])
def seeded(request):
    return request.param


def test_the_demo_sets_every_journey_going_and_mails_abandoned_carts_within_a_minute(db, settings, seeded):
    SEEDED = seeded  # noqa: N806 - the moment of seeding, as in the rest of this test
    settings.EMAIL_BACKEND = "tertulia.channels.outbox.OutboxEmailBackend"
    settings.TERTULIA_CHANNELS_SANDBOX = True
    settings.TERTULIA_CHANNEL_ADAPTERS = {}
    fresh()
    store = demo_store_seed(now=SEEDED).store
    assert Journey.objects.for_store(store).filter(enabled=True).count() == 7

    triggers_sweep(now=SEEDED + timedelta(seconds=5), store=store)
    by_journey = Counter(enrollments(store).values_list("journey_key", flat=True))
    assert set(by_journey) == {"abandoned_cart", "thank_you", "review_request", "referral_request", "welcome",
                               "winback"}, by_journey
    due_now = deliveries(store, "abandoned_cart").filter(step_key="email_1", due_at__lte=SEEDED + timedelta(seconds=5))
    assert due_now.count() >= 5

    dispatch_run(worker="test", now=SEEDED + timedelta(seconds=10))
    sent = deliveries(store, "abandoned_cart").filter(step_key="email_1", status=DeliveryStatus.SENT).count()
    assert sent >= 5
    outbox = OutboxMessage.objects.filter(store=store)
    assert outbox.filter(delivery__journey_key="abandoned_cart").count() == sent
    assert "List-Unsubscribe" in outbox.first().headers

    # The carts left moments before seeding get theirs about a minute later.
    later = SEEDED + timedelta(minutes=1, seconds=30)
    triggers_sweep(now=later, store=store)
    dispatch_run(worker="test", now=later)
    assert deliveries(store, "abandoned_cart").filter(status=DeliveryStatus.SENT).count() > sent

