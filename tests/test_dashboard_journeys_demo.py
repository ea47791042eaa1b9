"""From the demo seed to the dashboard: the outbox shows the recovery e-mails as sent, the journeys list
counts them, and each shopper's messages are on their timeline."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model

from tertulia.channels.dispatch import dispatch_run
from tertulia.channels.models import Delivery, DeliveryStatus, OutboxMessage
from tertulia.core.services import membership_grant
from tertulia.journeys.attribution import attribution_run, watermarks_forget
from tertulia.journeys.triggers import triggers_sweep
from tertulia.ops.demo_data import demo_store_seed
from tests.test_journeys_support import fresh

SEEDED = datetime(2025, 3, 11, 10, 0, tzinfo=UTC)  # 11:00 in Madrid, outside quiet hours


@pytest.fixture
def demo(db, settings, client):
    settings.EMAIL_BACKEND = "tertulia.channels.outbox.OutboxEmailBackend"
    settings.TERTULIA_CHANNELS_SANDBOX = True
    settings.TERTULIA_CHANNEL_ADAPTERS = {}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    fresh()
    watermarks_forget()
    store = demo_store_seed(now=SEEDED).store
    triggers_sweep(now=SEEDED + timedelta(seconds=5), store=store)
    dispatch_run(worker="test", now=SEEDED + timedelta(seconds=10))
    attribution_run(store=store, now=SEEDED + timedelta(seconds=15))
    user = get_user_model().objects.create_user("demo-manager", password="a-long-staff-password")
    membership_grant(store=store, user=user, role="manager")
    client.force_login(user)
    yield store, client
    watermarks_forget()


def test_outbox_and_figures_after_the_demo_starts(demo):
    store, client = demo
    sent = Delivery.objects.for_store(store).filter(journey_key="abandoned_cart", status=DeliveryStatus.SENT)
    assert sent.count() >= 5
    listing = client.get("/app/outbox/").content.decode()
    mail = OutboxMessage.objects.filter(store=store, delivery__journey_key="abandoned_cart").first()
    assert f'href="/app/outbox/{mail.pk}/"' in listing

    page = client.get(f"/app/outbox/{mail.pk}/").content.decode()
    frame = re.search(r'<iframe class="shopper-view"[^>]*>', page).group(0)
    assert 'sandbox=""' in frame and "Content-Security-Policy" in frame
    assert "/o/" not in re.search(r'srcdoc="([^"]*)"', frame).group(1)  # no open counted by looking
    assert "List-Unsubscribe-Post" in page

    journeys = client.get("/app/journeys/").content.decode()
    row = journeys[journeys.index('data-journey="abandoned_cart"'):]
    cells = re.findall(r'class="num">([^<]*)<', row[: row.index("</tr>")])
    assert int(cells[1].replace(".", "")) == sent.count()  # the "sent" column

    person = sent.first().customer_id
    timeline = client.get(f"/app/customers/{person}/").content.decode()
    assert "kind-message" in timeline and "Carrito abandonado" in timeline
